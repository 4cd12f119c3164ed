//! Waiting on a condition with a deadline: the lab never sleeps and hopes.

use std::time::{Duration, Instant};

use super::{Error, Result};

/// How often conditions are polled: short enough that measured figures are
/// not dominated by the poll period (a few ms against RTTs of 10s of ms).
pub const POLL: Duration = Duration::from_millis(5);

/// Polls `probe` until it returns `Some`, or fails after `timeout` naming
/// `what`. Returns the value and the instant the condition was first seen.
pub fn until<T>(
    timeout: Duration,
    what: &str,
    mut probe: impl FnMut() -> Option<T>,
) -> Result<(T, Instant)> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe() {
            return Ok((v, Instant::now()));
        }
        if Instant::now() >= deadline {
            return Err(Error::Timeout(timeout, what.to_string()));
        }
        std::thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn until_returns_value_once_condition_holds() {
        let mut n = 0;
        let (v, _) = until(Duration::from_secs(2), "n reaches 3", || {
            n += 1;
            (n >= 3).then_some(n)
        })
        .unwrap();
        assert_eq!(v, 3);
    }

    #[test]
    fn until_times_out_naming_the_condition() {
        let err = until(Duration::from_millis(20), "never", || None::<()>).unwrap_err();
        assert!(err.to_string().contains("never"), "{err}");
    }
}
