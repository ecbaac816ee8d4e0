//! A resume stream (docs/PROTOCOL.md section 7): what outlives a resume
//! socket's connections. The relay numbers the frames it sends on the
//! stream, keeps them until the socket acknowledges them (2 minutes, 256 KiB
//! at most), counts the frames it handled from the socket, and answers a
//! resume with exactly what is missing, or with the gap it can no longer
//! fill.
//!
//! What is kept is stored at most once a second while something is
//! unacknowledged. A stored stream also holds a reservation of numbers past
//! the last one stored: an object that lost its memory without its socket
//! leaving first (a reset) numbers on from there, so it never reuses a
//! number the socket may already have, and reports the numbers it cannot
//! account for as a gap.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// Frames older than this may leave the window ...
pub const WINDOW_MS: f64 = 120_000.0;
/// ... and so may any frame once the window holds more than this.
pub const WINDOW_BYTES: usize = 256 * 1024;
/// Numbers reserved past the last stored one (more than a second of frames
/// at any socket's rate limit: a host's burst is 1,000 frames).
pub const RESERVED: u64 = 4096;

/// A frame kept for a resume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Kept {
    pub seq: u64,
    pub text: String,
    pub at: f64,
}

/// One stream, as memory holds it and storage keeps it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stream {
    /// The number of the last frame sent on the stream.
    pub sent: u64,
    /// The number of the last frame handled from the socket.
    pub received: u64,
    /// Frames sent and not yet acknowledged, ascending.
    #[serde(default)]
    pub window: VecDeque<Kept>,
    /// Frames up to this number left the window unacknowledged (too old or
    /// too many): a resume that needs them gets a gap.
    #[serde(default)]
    pub forgotten: u64,
    /// As stored: numbers up to this may have been used after the last time
    /// the stream was stored. `None` once the stream was stored with nothing
    /// to fear (its socket had left: nothing more is sent or received).
    #[serde(default)]
    pub reserved: Option<u64>,
    /// The object lost its memory since this stream was stored with a
    /// reservation; numbers in this range are unaccounted for, and the
    /// socket has not resumed since. Stored too: a stream stored after a
    /// reset and before its socket's resume (settled, without a reservation)
    /// must still tell that resume of the reset, however many follow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unaccounted: Option<(u64, u64)>,
    /// In memory: `received` as last stored. A `␁ack` answers this, not
    /// `received`: the socket forgets what the relay acknowledges, and a
    /// reset loses what was received since the last store, so a resume
    /// after a reset (`␁resume <m> reset`) must never name a number below
    /// one already acknowledged (the socket could not send those frames
    /// again, and its numbering and the relay's would part for good).
    #[serde(skip)]
    pub durable: u64,
    /// In memory: the bytes of the frames in `window`, kept as frames come
    /// and go (summing the window at every frame made a busy stream's cost
    /// grow with its window: thousands of frames a second, each summing
    /// thousands).
    #[serde(skip)]
    held_bytes: usize,
}

/// What a resume gets.
#[derive(Debug, Clone, PartialEq)]
pub enum Resume {
    /// Every frame after the socket's `have`, as they were.
    Frames(Vec<Kept>),
    /// Frames `from..=to` are lost for good.
    Gap { from: u64, to: u64 },
}

impl Stream {
    /// A stream as stored, for an object that wakes. `socket_alive`: its
    /// socket is still connected, so the object was only evicted (which waits
    /// for the last store) and nothing was lost.
    pub fn restored(mut self, socket_alive: bool) -> Self {
        self.durable = self.received;
        self.held_bytes = self.window.iter().map(|k| k.text.len()).sum();
        if let Some(reserved) = self.reserved.filter(|_| !socket_alive) {
            if reserved > self.sent {
                let from = self.unaccounted.map_or(self.sent + 1, |(from, _)| from);
                self.unaccounted = Some((from, reserved));
                self.sent = reserved;
            }
        }
        self
    }

    /// Numbers a frame sent on the stream and keeps it; returns its number.
    pub fn sent_frame(&mut self, text: &str, now: f64) -> u64 {
        self.sent += 1;
        self.held_bytes += text.len();
        self.window.push_back(Kept { seq: self.sent, text: text.to_string(), at: now });
        self.trim(now);
        self.sent
    }

    /// The socket has every frame up to `n`.
    pub fn acked(&mut self, n: u64) {
        while self.window.front().is_some_and(|k| k.seq <= n) {
            if let Some(k) = self.window.pop_front() {
                self.held_bytes -= k.text.len();
            }
        }
    }

    /// Drops what the window may no longer hold: frames older than
    /// `WINDOW_MS`, and the oldest beyond `WINDOW_BYTES`.
    pub fn trim(&mut self, now: f64) {
        while let Some(front) = self.window.front() {
            if now - front.at <= WINDOW_MS && self.held_bytes <= WINDOW_BYTES {
                break;
            }
            self.held_bytes -= front.text.len();
            self.forgotten = self.forgotten.max(front.seq);
            self.window.pop_front();
        }
    }

    /// What a socket that has every frame up to `have` is missing. If the
    /// relay cannot give all of it, everything after `have` counts as lost
    /// (the socket's view then starts afresh after the gap).
    pub fn resume(&self, have: u64) -> Resume {
        let unaccounted = self.unaccounted.is_some_and(|(_, to)| have < to);
        // The first frame still held: frames before it left the window,
        // too old, too many, or acknowledged (a socket may come back with
        // less than it acknowledged: a new page, another process); either
        // way the relay no longer has them.
        let first_held = self.window.front().map_or(self.sent + 1, |k| k.seq);
        if (unaccounted || have + 1 < first_held) && have < self.sent {
            return Resume::Gap { from: have + 1, to: self.sent };
        }
        Resume::Frames(self.window.iter().filter(|k| k.seq > have).cloned().collect())
    }

    /// Everything up to `to` counts as lost (a resume was told so): what
    /// follows is numbered after it.
    pub fn forget_through(&mut self, to: u64) {
        self.window.clear();
        self.held_bytes = 0;
        self.forgotten = to;
    }

    /// The bytes of the frames held for a resume.
    pub fn held_bytes(&self) -> usize {
        self.held_bytes
    }

    /// Something sent is not yet acknowledged: the stream must be stored.
    pub fn unacknowledged(&self) -> bool {
        !self.window.is_empty()
    }

    /// The shape to store: with a reservation while frames may still be sent
    /// before the next store (`settled`: its socket left, nothing more will be).
    pub fn to_store(&self, settled: bool) -> Stream {
        let reserved = (!settled).then_some(self.sent + RESERVED);
        Stream { reserved, ..self.clone() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_numbered_kept_until_acknowledged_and_resumed_exactly() {
        let mut s = Stream::default();
        for t in ["a", "b", "c"] {
            s.sent_frame(t, 0.0);
        }
        s.acked(1);
        assert_eq!(s.window.len(), 2);
        match s.resume(1) {
            Resume::Frames(frames) => assert_eq!(frames.iter().map(|k| k.seq).collect::<Vec<_>>(), vec![2, 3]),
            gap => panic!("{gap:?}"),
        }
        assert_eq!(s.resume(3), Resume::Frames(vec![]));
        // Less than it acknowledged: frame 1 is gone.
        assert_eq!(s.resume(0), Resume::Gap { from: 1, to: 3 });
        s.acked(3);
        assert_eq!(s.resume(1), Resume::Gap { from: 2, to: 3 });
        assert_eq!(s.resume(3), Resume::Frames(vec![]));
    }

    #[test]
    fn the_window_keeps_two_minutes_and_256_kib() {
        let mut s = Stream::default();
        s.sent_frame("old", 0.0);
        s.sent_frame("new", WINDOW_MS + 1.0);
        assert_eq!(s.resume(0), Resume::Gap { from: 1, to: 2 });
        assert_eq!(s.resume(1), Resume::Frames(vec![Kept { seq: 2, text: "new".into(), at: WINDOW_MS + 1.0 }]));
        let big = "x".repeat(100 * 1024);
        for _ in 0..3 {
            s.sent_frame(&big, WINDOW_MS + 2.0);
        }
        assert!(s.window.iter().map(|k| k.text.len()).sum::<usize>() <= WINDOW_BYTES);
        assert_eq!(s.held_bytes(), s.window.iter().map(|k| k.text.len()).sum::<usize>());
        s.acked(4);
        assert_eq!(s.held_bytes(), s.window.iter().map(|k| k.text.len()).sum::<usize>());
        assert_eq!(s.clone().to_store(true).restored(false).held_bytes(), s.held_bytes());
        assert_eq!(s.forgotten, 3);
    }

    #[test]
    fn a_reset_reports_the_numbers_it_cannot_account_for() {
        let mut s = Stream::default();
        s.sent_frame("a", 0.0);
        let stored = s.to_store(false);
        // Evicted with its socket connected: nothing lost.
        let evicted = stored.clone().restored(true);
        assert_eq!((evicted.sent, evicted.unaccounted), (1, None));
        // Reset: the socket is gone; numbers go on past the reservation.
        let reset = stored.restored(false);
        assert_eq!(reset.sent, 1 + RESERVED);
        assert_eq!(reset.resume(1), Resume::Gap { from: 2, to: 1 + RESERVED });
        assert_eq!(reset.resume(3), Resume::Gap { from: 4, to: 1 + RESERVED });
        assert_eq!(reset.resume(1 + RESERVED), Resume::Frames(vec![]));
        // A stream stored after its socket left is exact.
        assert_eq!(s.to_store(true).restored(false).sent, 1);
    }
}
