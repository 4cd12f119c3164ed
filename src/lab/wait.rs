//! Waiting on a condition with a deadline: the lab never sleeps and hopes.

use std::time::{Duration, Instant};

use super::{Error, Result};

/// How often conditions are polled: short enough that measured figures are
/// not dominated by the poll period (a few ms against RTTs of 10s of ms).
pub const POLL: Duration = Duration::from_millis(5);

/// How much longer than written every timeout is: `MIP4_LAB_TIMEOUT_SCALE`
/// (a number, default 1). The kernel tier's guest runs under software
/// emulation (TCG), several times slower than the host, and sets it; the
/// conditions waited on stay the same.
pub fn scale() -> f64 {
    static SCALE: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *SCALE.get_or_init(|| {
        std::env::var("MIP4_LAB_TIMEOUT_SCALE")
            .ok()
            .and_then(|s| s.parse().ok())
            .filter(|s: &f64| s.is_finite() && *s >= 1.0)
            .unwrap_or(1.0)
    })
}

/// Polls `probe` until it returns `Some`, or fails after `timeout` (times
/// [`scale`]) naming `what`. Returns the value and the instant the
/// condition was first seen.
pub fn until<T>(
    timeout: Duration,
    what: &str,
    mut probe: impl FnMut() -> Option<T>,
) -> Result<(T, Instant)> {
    let timeout = timeout.mul_f64(scale());
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
