//! Retrying a call with exponential back-off: when it may go next, and for
//! how long it has been failing. Pure: the time comes in.

/// One retried call's schedule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    first_ms: f64,
    cap_ms: f64,
    next_ms: f64,
    /// Not before this time (epoch ms); `None`: whenever needed.
    at: Option<f64>,
    failing_since: Option<f64>,
}

impl Backoff {
    pub const fn new(first_ms: f64, cap_ms: f64) -> Self {
        Backoff { first_ms, cap_ms, next_ms: first_ms, at: None, failing_since: None }
    }

    /// The call failed at `now`: it may go again after the back-off, which
    /// doubles up to the cap. Returns how long it has been failing.
    pub fn failed(&mut self, now: f64) -> f64 {
        let since = *self.failing_since.get_or_insert(now);
        self.at = Some(now + self.next_ms);
        self.next_ms = (self.next_ms * 2.0).min(self.cap_ms);
        now - since
    }

    /// The call was answered: the next one may go at once.
    pub fn succeeded(&mut self) {
        *self = Backoff::new(self.first_ms, self.cap_ms);
    }

    /// Whether a call may go at `now`.
    pub fn ready(&self, now: f64) -> bool {
        self.at.is_none_or(|at| at <= now)
    }

    /// When the next call may go, if it has to wait.
    pub fn at(&self) -> Option<f64> {
        self.at
    }

    pub fn is_failing(&self) -> bool {
        self.failing_since.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_cap_and_resets_on_success() {
        let mut b = Backoff::new(100.0, 350.0);
        assert!(b.ready(0.0));
        assert_eq!(b.failed(0.0), 0.0);
        assert_eq!(b.at(), Some(100.0));
        assert!(!b.ready(99.0) && b.ready(100.0));
        b.failed(100.0);
        assert_eq!(b.at(), Some(300.0));
        b.failed(300.0);
        assert_eq!(b.at(), Some(650.0));
        assert_eq!(b.failed(650.0), 650.0);
        assert_eq!(b.at(), Some(1000.0));
        b.succeeded();
        assert!(b.ready(0.0) && !b.is_failing());
    }
}
