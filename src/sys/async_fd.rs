//! Registering a file descriptor with tokio's reactor. `AsyncFd::register`
//! is unsafe because the reactor trusts the fd to stay open and the same
//! while registered; the types below own theirs and never swap it, which
//! is why only they may be registered (the trait is sealed).

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use tokio::io::unix::AsyncFd;

mod sealed {
    pub trait Sealed {}
}

/// A type that owns its fd for its whole life and always returns that fd
/// from `as_raw_fd`.
pub trait OwnsFd: AsRawFd + sealed::Sealed {}

macro_rules! owns_fd {
    ($($t:ty),*) => {$(
        impl sealed::Sealed for $t {}
        impl OwnsFd for $t {}
    )*};
}
owns_fd!(
    OwnedFd,
    socket2::Socket,
    super::tun::TunDevice,
    super::packet::PacketSocket
);

/// Registers `inner` for readiness (readable and writable). Must run in a
/// tokio runtime.
pub fn register<T: OwnsFd>(inner: T) -> io::Result<AsyncFd<T>> {
    // SAFETY: `T: OwnsFd`: the fd stays open and the same until the
    // returned `AsyncFd` (which owns `inner`) is dropped.
    unsafe { AsyncFd::register(inner) }.map_err(io::Error::from)
}
