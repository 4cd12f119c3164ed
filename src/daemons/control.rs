//! mip4d's side of the control socket ([`crate::ctl`]): request lines are
//! answered by the main loop (which owns the node) through a channel; an
//! `events` request turns the connection into a subscription.

use std::io;
use std::path::Path;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::debug;

use super::mn::events::EventBus;
use crate::ctl::{self, Request, Response, MAX_LINE};

/// A request for the main loop and where its answer goes.
pub type Query = (Request, oneshot::Sender<Response>);

/// Binds the root-only socket and serves it until the task is aborted.
pub fn serve(
    path: &Path,
    queries: mpsc::Sender<Query>,
    bus: EventBus,
) -> io::Result<JoinHandle<()>> {
    let listener = ctl::bind_root_only(path)?;
    Ok(tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (q, b) = (queries.clone(), bus.clone());
            tokio::spawn(async move {
                if let Err(e) = connection(stream, q, b).await {
                    debug!(error = %e, "control connection ended");
                }
            });
        }
    }))
}

async fn connection(
    stream: UnixStream,
    queries: mpsc::Sender<Query>,
    bus: EventBus,
) -> io::Result<()> {
    let (rd, mut wr) = stream.into_split();
    let mut rd = tokio::io::BufReader::new(rd);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = (&mut rd)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
            .await?;
        if n == 0 {
            return Ok(());
        }
        let req = if line.len() > MAX_LINE {
            Err(Response::error("request too long"))
        } else {
            match std::str::from_utf8(&line) {
                Ok(text) => ctl::parse_request(text),
                Err(_) => Err(Response::error("bad request: not UTF-8")),
            }
        };
        let resp = match req {
            Ok(Request::Events) => return stream_events(bus.subscribe(), wr).await,
            Ok(r) => {
                let (tx, rx) = oneshot::channel();
                if queries.send((r, tx)).await.is_err() {
                    Response::error("mip4d is shutting down")
                } else {
                    rx.await
                        .unwrap_or_else(|_| Response::error("mip4d is shutting down"))
                }
            }
            Err(resp) => resp,
        };
        let mut out = serde_json::to_vec(&resp).unwrap_or_default();
        out.push(b'\n');
        wr.write_all(&out).await?;
        if line.len() > MAX_LINE {
            return Ok(());
        }
    }
}

async fn stream_events(
    mut rx: broadcast::Receiver<String>,
    mut wr: tokio::net::unix::OwnedWriteHalf,
) -> io::Result<()> {
    loop {
        let line = match rx.recv().await {
            Ok(l) => l,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                format!(r#"{{"event":"lagged","missed":{n}}}"#)
            }
            Err(broadcast::error::RecvError::Closed) => return Ok(()),
        };
        wr.write_all(line.as_bytes()).await?;
        wr.write_all(b"\n").await?;
    }
}
