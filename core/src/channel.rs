//! One direction of a link's messages: sequenced, batched, pipelined,
//! acknowledged, retried and bounded (ARCHITECTURE.md, "Calls between
//! objects").
//!
//! The sender ([`Outbound`]) numbers each message. Everything queued for the
//! partner leaves in the next call, as one batch; up to [`WINDOW`] calls are
//! in flight at once, so a link carries thousands of frames a second across
//! a 100 ms round trip instead of one frame per round trip. While calls are
//! in flight, the next one leaves no sooner than a [`WINDOW`]th of the
//! measured round trip after the last (pacing): otherwise a busy link sends
//! its whole window within a few milliseconds, then waits a full round trip
//! for the first answer, and a frame that just missed the window waits that
//! long (measured on the simulator: p99 one-way delay 148 ms instead of 75 ms
//! at 100 ms round trips). The pause needs no timer: a call is in flight,
//! and its answer sends what waits. The receiver
//! applies messages in order and once ([`accept`]) and answers with the
//! highest number it has applied; the sender forgets what is acknowledged
//! and sends the rest again, after a back-off, when a call fails.
//!
//! Messages that change link state ([`LinkMsg::is_durable`]) are stored with
//! the session's record until acknowledged, so they survive a reset of the
//! sender; the others (relayed text) live in memory, within a bound. A
//! sender that restarts numbers on from a value above any it used before (a
//! number from the clock), and tells the receiver the lowest number it still
//! holds (`base`): what lies between was lost with the reset.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::calls::{LinkBatch, LinkEntry, LinkId, LinkMsg, CALLS_VERSION};
use crate::retry::Backoff;

/// Calls of one link in flight at once.
pub const WINDOW: usize = 4;
/// Bytes of relayed text one link may hold unacknowledged. Past it the link
/// ends (PROTOCOL.md section 5: a message that does not fit ends the link).
pub const MAX_BUFFERED_BYTES: usize = 1024 * 1024;
/// Messages one link may hold unacknowledged (as the queue: 4,096).
pub const MAX_BUFFERED_MESSAGES: usize = 4096;
/// First retry after a failed call; doubled up to [`MAX_BACKOFF_MS`].
pub const FIRST_BACKOFF_MS: f64 = 50.0;
/// Relayed text lives in memory only, and an idle object may be evicted
/// after about 10 s: retries stay well inside that.
pub const MAX_BACKOFF_MS: f64 = 2_000.0;
/// The round trip a link's pacing assumes until its first call is answered:
/// the middle of what calls between colos take (50–150 ms). On loopback the
/// first answer comes within a millisecond and corrects it.
pub const FIRST_ROUND_TRIP_MS: f64 = 100.0;
/// A link whose partner answers nothing for this long ends.
pub const LINK_TIMEOUT_MS: f64 = 30_000.0;
/// Once a link has ended, its last message (`Left`) is retried with a longer
/// back-off (it is stored, so eviction does not lose it) ...
pub const CLOSING_MAX_BACKOFF_MS: f64 = 60_000.0;
/// ... until it is answered, or for this long.
pub const CLOSING_TIMEOUT_MS: f64 = 3_600_000.0;

/// A message as the sender keeps it until acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    pub seq: u64,
    pub msg: LinkMsg,
}

/// Why a message could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    Bytes,
    Messages,
}

/// The sending side of one link.
#[derive(Debug, Clone, PartialEq)]
pub struct Outbound {
    pub peer: String,
    pub link: LinkId,
    next_seq: u64,
    /// Unacknowledged messages, ascending by `seq`.
    pending: VecDeque<Pending>,
    /// Messages up to this number are in a call (or were, and wait for its answer).
    sent_through: u64,
    /// The highest number the receiver acknowledged.
    acked: u64,
    in_flight: usize,
    /// When each call in flight left (oldest first), and when the last left.
    sent_at: VecDeque<f64>,
    last_sent: f64,
    /// Smoothed round trip of this link's calls (ms), [`FIRST_ROUND_TRIP_MS`]
    /// until measured.
    srtt: f64,
    measured: bool,
    /// Bytes and count of the non-durable messages held.
    bytes: usize,
    relayed: usize,
    /// While set, nothing is sent (a slave's link the master has not confirmed).
    paused: bool,
    /// The link has ended here; only its last messages remain to deliver.
    closing: bool,
    retry: Backoff,
}

/// What the sender learns from an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Acknowledged (perhaps partly; the rest goes again).
    Acked,
    /// No answer, or one to try again: sent again after a back-off.
    Retrying,
    /// The partner has failed for too long: the link is over.
    TimedOut,
}

impl Outbound {
    /// A new link's sender. `now` seeds the numbering (see [`Outbound::restore`]).
    pub fn new(peer: &str, link: LinkId, now: f64) -> Self {
        Outbound {
            peer: peer.to_string(),
            link,
            next_seq: 1,
            pending: VecDeque::new(),
            sent_through: 0,
            acked: 0,
            in_flight: 0,
            sent_at: VecDeque::new(),
            last_sent: f64::NEG_INFINITY,
            srtt: FIRST_ROUND_TRIP_MS,
            measured: false,
            bytes: 0,
            relayed: 0,
            paused: false,
            closing: false,
            retry: Backoff::new(FIRST_BACKOFF_MS, MAX_BACKOFF_MS),
        }
        .numbered_from(0, now)
    }

    /// A sender rebuilt after its object lost its memory, from the durable
    /// messages it had stored. It numbers on past every number it may have
    /// used before: the clock in microseconds outruns any link.
    pub fn restore(peer: &str, link: LinkId, stored: Vec<Pending>, closing: bool, now: f64) -> Self {
        let mut out = Outbound::new(peer, link, now);
        let highest = stored.iter().map(|p| p.seq).max().unwrap_or(0);
        out.pending = stored.into_iter().collect();
        if closing {
            out.closing = true;
            out.retry = Backoff::new(FIRST_BACKOFF_MS, CLOSING_MAX_BACKOFF_MS);
        }
        out.numbered_from(highest, now)
    }

    fn numbered_from(mut self, highest: u64, now: f64) -> Self {
        let clock = (now.max(0.0) * 1000.0) as u64;
        self.next_seq = self.next_seq.max(highest + 1).max(clock);
        self
    }

    /// Queues a message. Durable ones always fit (they are few: a link has at
    /// most `MAX_CLIENTS` clients to announce and one end); relayed text must
    /// fit the bound.
    pub fn push(&mut self, msg: LinkMsg) -> Result<u64, Overflow> {
        if !msg.is_durable() {
            if self.relayed >= MAX_BUFFERED_MESSAGES {
                return Err(Overflow::Messages);
            }
            if self.bytes + msg.bytes() > MAX_BUFFERED_BYTES {
                return Err(Overflow::Bytes);
            }
            self.bytes += msg.bytes();
            self.relayed += 1;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.pending.push_back(Pending { seq, msg });
        Ok(seq)
    }

    /// The link ended here: relayed text still waiting is dropped (its
    /// receiver is no longer a partner), and `Left` goes last.
    pub fn close(&mut self) {
        if self.closing {
            return;
        }
        self.pending.retain(|p| p.msg.is_durable());
        self.bytes = 0;
        self.relayed = 0;
        self.closing = true;
        self.paused = false;
        self.retry = Backoff::new(FIRST_BACKOFF_MS, CLOSING_MAX_BACKOFF_MS);
        let seq = self.next_seq;
        self.next_seq += 1;
        self.pending.push_back(Pending { seq, msg: LinkMsg::Left });
    }

    pub fn pause(&mut self) {
        self.paused = true;
    }

    pub fn resume(&mut self) {
        self.paused = false;
    }

    pub fn is_paused(&self) -> bool {
        self.paused
    }

    pub fn is_closing(&self) -> bool {
        self.closing
    }

    /// Nothing left to deliver.
    pub fn is_idle(&self) -> bool {
        self.pending.is_empty() && self.in_flight == 0
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    pub fn buffered(&self) -> (usize, usize) {
        (self.relayed, self.bytes)
    }

    /// Whether durable messages wait for their acknowledgement.
    pub fn has_durable(&self) -> bool {
        self.pending.iter().any(|p| p.msg.is_durable())
    }

    /// The durable messages not yet acknowledged, to be stored.
    pub fn durable(&self) -> Vec<Pending> {
        self.pending.iter().filter(|p| p.msg.is_durable()).cloned().collect()
    }

    /// The next call to make, if the window has room and something is due:
    /// everything not yet sent (or to be sent again).
    pub fn next_batch(&mut self, from: &str, now: f64) -> Option<LinkBatch> {
        if self.paused || self.in_flight >= WINDOW || !self.retry.ready(now) || self.pacing(now) {
            return None;
        }
        let entries: Vec<LinkEntry> = self
            .pending
            .iter()
            .filter(|p| p.seq > self.sent_through)
            .map(|p| LinkEntry { seq: p.seq, msg: p.msg.clone() })
            .collect();
        let last = entries.last()?.seq;
        self.sent_through = last;
        self.in_flight += 1;
        self.sent_at.push_back(now);
        self.last_sent = now;
        Some(LinkBatch {
            v: CALLS_VERSION,
            from: from.to_string(),
            link: self.link,
            base: self.pending.front().map_or(last, |p| p.seq),
            entries,
        })
    }

    /// Calls in flight, and the last one left less than a [`WINDOW`]th of a
    /// round trip ago: the next waits for that, or for an answer.
    fn pacing(&self, now: f64) -> bool {
        self.in_flight > 0 && now < self.last_sent + self.srtt / WINDOW as f64
    }

    /// A call's answer came (or its failure): one fewer in flight, and a
    /// round trip measured when it was answered.
    fn answered(&mut self, now: f64, measured: bool) {
        self.in_flight = self.in_flight.saturating_sub(1);
        let Some(sent) = self.sent_at.pop_front() else { return };
        if measured {
            let sample = (now - sent).max(0.0);
            // TCP's smoothing (RFC 6298): an eighth of each new sample.
            self.srtt = if self.measured { self.srtt + (sample - self.srtt) / 8.0 } else { sample };
            self.measured = true;
        }
    }

    /// The receiver applied everything up to `ack`.
    pub fn acked(&mut self, ack: u64, now: f64) -> Delivery {
        self.answered(now, true);
        self.retry.succeeded();
        if ack > self.acked {
            self.acked = ack;
        }
        while self.pending.front().is_some_and(|p| p.seq <= self.acked) {
            let p = self.pending.pop_front().expect("checked");
            if !p.msg.is_durable() {
                self.bytes -= p.msg.bytes();
                self.relayed -= 1;
            }
        }
        // A call that overtook an earlier one was refused at its gap: once
        // nothing is in flight, whatever is still unacknowledged goes again.
        if self.in_flight == 0 && self.sent_through > self.acked {
            self.sent_through = self.acked;
        }
        Delivery::Acked
    }

    /// A call got no usable answer.
    pub fn failed(&mut self, now: f64) -> Delivery {
        self.answered(now, false);
        // Go back: everything unacknowledged goes again, after the back-off.
        self.sent_through = self.acked;
        let failing_for = self.retry.failed(now);
        let timeout = if self.closing { CLOSING_TIMEOUT_MS } else { LINK_TIMEOUT_MS };
        if failing_for >= timeout {
            return Delivery::TimedOut;
        }
        Delivery::Retrying
    }

    /// When this sender next wants to send: now, if something waits and the
    /// window has room; at the retry time, but not before the pacing allows
    /// (an alarm at a time `next_batch` would refuse would fire again at
    /// once, for ever: found by the simulator, seed 352); never while paused
    /// or idle, nor while pacing (an answer to a call in flight sends what
    /// waits).
    pub fn deadline(&self) -> Option<f64> {
        if self.paused || self.in_flight >= WINDOW {
            return None;
        }
        let waiting = self.pending.iter().any(|p| p.seq > self.sent_through);
        let paced_until = (self.in_flight > 0).then(|| self.last_sent + self.srtt / WINDOW as f64);
        match (waiting, self.retry.at()) {
            (true, Some(at)) => Some(paced_until.map_or(at, |p| at.max(p))),
            (true, None) if self.in_flight > 0 => None,
            (true, None) => Some(f64::NEG_INFINITY),
            (false, _) => None,
        }
    }
}

/// What a receiver does with a batch, given the highest number it applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accept {
    /// Apply the entries from this index on (earlier ones were applied before).
    From(usize),
    /// A gap: an earlier call has not arrived yet. Apply nothing.
    Gap,
}

/// The receiver's rule: apply in order and once. Entries at or below
/// `applied` were applied before (a repeated call); a batch that starts past
/// `applied + 1` waits for the one before it, unless the sender no longer
/// holds anything below its `base` (lost in the sender's reset).
pub fn accept(applied: u64, batch: &LinkBatch) -> Accept {
    let next = applied + 1;
    let first = batch.entries.first().map_or(next, |e| e.seq);
    let lost_below_base = batch.base > next && first <= batch.base;
    if first > next && !lost_below_base {
        return Accept::Gap;
    }
    Accept::From(batch.entries.iter().position(|e| e.seq > applied).unwrap_or(batch.entries.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> LinkMsg {
        LinkMsg::Message { id: 1, text: s.into() }
    }

    fn seqs(batch: &LinkBatch) -> Vec<u64> {
        batch.entries.iter().map(|e| e.seq).collect()
    }

    #[test]
    fn everything_queued_goes_in_the_next_call_within_the_window() {
        let pace = FIRST_ROUND_TRIP_MS / WINDOW as f64;
        let mut out = Outbound::new("m", 1, 0.0);
        out.push(text("a")).unwrap();
        let first = out.next_batch("s", 0.0).unwrap();
        assert_eq!(seqs(&first), vec![1]);
        out.push(text("b")).unwrap();
        out.push(text("c")).unwrap();
        let second = out.next_batch("s", pace).unwrap();
        assert_eq!(seqs(&second), vec![2, 3]);
        assert_eq!(second.base, 1);
        for i in 2..4 {
            out.push(text("x")).unwrap();
            assert!(out.next_batch("s", pace * i as f64).is_some());
        }
        out.push(text("y")).unwrap();
        assert!(out.next_batch("s", 5.0 * pace).is_none(), "the window is full");
        out.acked(3, 5.0 * pace);
        assert_eq!(seqs(&out.next_batch("s", 5.0 * pace).unwrap()), vec![6]);
    }

    #[test]
    fn calls_in_flight_are_paced_over_the_measured_round_trip() {
        let mut out = Outbound::new("m", 1, 0.0);
        out.push(text("a")).unwrap();
        out.next_batch("s", 0.0).unwrap();
        // Until a call is answered, the pace assumes a round trip between colos.
        out.push(text("b")).unwrap();
        assert!(out.next_batch("s", 10.0).is_none(), "paced");
        assert_eq!(out.deadline(), None, "the answer of the call in flight sends it: no timer");
        assert!(out.next_batch("s", FIRST_ROUND_TRIP_MS / WINDOW as f64).is_some());
        // Answered after 2 ms (loopback): the pace is half a millisecond.
        let mut fast = Outbound::new("m", 1, 0.0);
        fast.push(text("a")).unwrap();
        fast.next_batch("s", 0.0).unwrap();
        fast.acked(1, 2.0);
        fast.push(text("b")).unwrap();
        fast.next_batch("s", 2.0).unwrap();
        fast.push(text("c")).unwrap();
        assert!(fast.next_batch("s", 2.4).is_none());
        assert!(fast.next_batch("s", 2.5).is_some());
        // Nothing in flight: nothing to wait for.
        let mut idle = Outbound::new("m", 1, 0.0);
        idle.push(text("a")).unwrap();
        idle.next_batch("s", 0.0).unwrap();
        idle.acked(1, 100.0);
        idle.push(text("b")).unwrap();
        assert_eq!(idle.deadline(), Some(f64::NEG_INFINITY));
        assert!(idle.next_batch("s", 100.0).is_some());
    }

    #[test]
    fn a_retry_is_never_due_while_the_pace_would_refuse_it() {
        // A slow partner (a 4 s round trip: a pace of 1 s), two calls in
        // flight, and the later one fails at once: its retry falls due
        // (after the first back-off) while the earlier call is under way
        // and the pace still holds.
        let mut out = Outbound::new("m", 1, 0.0);
        out.push(text("a")).unwrap();
        out.next_batch("s", 0.0).unwrap();
        out.acked(1, 4_000.0);
        out.push(text("b")).unwrap();
        out.next_batch("s", 4_000.0).unwrap();
        out.push(text("c")).unwrap();
        out.next_batch("s", 5_000.0).unwrap();
        out.failed(5_001.0);
        assert!(FIRST_BACKOFF_MS < 1_000.0, "the retry must fall due within the pace for this test");
        let due = out.deadline().expect("something waits");
        assert!(due >= 6_000.0, "due at {due}, before the pace allows a call (6000)");
        assert!(out.next_batch("s", due).is_some(), "the alarm at the deadline sends");
    }

    #[test]
    fn a_failed_call_sends_everything_unacknowledged_again_after_a_back_off() {
        let mut out = Outbound::new("m", 1, 0.0);
        out.push(text("a")).unwrap();
        out.push(text("b")).unwrap();
        out.next_batch("s", 0.0).unwrap();
        assert_eq!(out.failed(10.0), Delivery::Retrying);
        assert!(out.next_batch("s", 10.0).is_none());
        assert_eq!(out.deadline(), Some(10.0 + FIRST_BACKOFF_MS));
        assert_eq!(seqs(&out.next_batch("s", 60.0).unwrap()), vec![1, 2]);
        assert_eq!(out.failed(61.0), Delivery::Retrying);
        assert_eq!(out.deadline(), Some(61.0 + 2.0 * FIRST_BACKOFF_MS));
        assert_eq!(out.failed(LINK_TIMEOUT_MS + 20.0), Delivery::TimedOut);
    }

    #[test]
    fn relayed_text_is_bounded_and_durable_messages_always_fit() {
        let mut out = Outbound::new("m", 1, 0.0);
        let big = "x".repeat(MAX_BUFFERED_BYTES / 2);
        out.push(text(&big)).unwrap();
        assert_eq!(out.push(text(&big)), Err(Overflow::Bytes));
        assert!(out.push(LinkMsg::Connected { id: 3 }).is_ok());
        out.acked(1, 0.0);
        assert_eq!(out.buffered(), (0, 0));
        let mut many = Outbound::new("m", 1, 0.0);
        for _ in 0..MAX_BUFFERED_MESSAGES {
            many.push(text("")).unwrap();
        }
        assert_eq!(many.push(text("")), Err(Overflow::Messages));
    }

    #[test]
    fn closing_drops_relayed_text_and_ends_with_left() {
        let mut out = Outbound::new("m", 1, 0.0);
        out.push(text("a")).unwrap();
        out.push(LinkMsg::Disconnected { id: 2 }).unwrap();
        out.close();
        let batch = out.next_batch("s", 0.0).unwrap();
        let msgs: Vec<LinkMsg> = batch.entries.into_iter().map(|e| e.msg).collect();
        assert_eq!(msgs, vec![LinkMsg::Disconnected { id: 2 }, LinkMsg::Left]);
    }

    #[test]
    fn a_restored_sender_numbers_past_everything_before_and_names_its_base() {
        let mut before = Outbound::new("m", 1, 5.0);
        for i in 0..3 {
            before.push(text(&i.to_string())).unwrap();
        }
        let stored = vec![Pending { seq: before.next_seq - 1, msg: LinkMsg::Connected { id: 2 } }];
        let mut after = Outbound::restore("m", 1, stored, false, 6.0);
        after.push(text("new")).unwrap();
        let batch = after.next_batch("s", 6.0).unwrap();
        assert_eq!(batch.base, batch.entries[0].seq);
        assert!(batch.entries[1].seq > batch.entries[0].seq);
        // The receiver had applied up to the first of the old ones: it skips
        // the lost ones and applies both.
        assert_eq!(accept(before.next_seq - 4, &batch), Accept::From(0));
    }

    #[test]
    fn receivers_apply_in_order_and_once() {
        let batch = |base: u64, seqs: &[u64]| LinkBatch {
            v: CALLS_VERSION,
            from: "s".into(),
            link: 1,
            base,
            entries: seqs.iter().map(|&seq| LinkEntry { seq, msg: text("") }).collect(),
        };
        assert_eq!(accept(0, &batch(1, &[1, 2])), Accept::From(0));
        assert_eq!(accept(1, &batch(1, &[1, 2])), Accept::From(1), "a repeated call applies what is new");
        assert_eq!(accept(2, &batch(1, &[1, 2])), Accept::From(2), "all old");
        assert_eq!(accept(0, &batch(1, &[3, 4])), Accept::Gap, "an earlier call is still on its way");
        assert_eq!(accept(0, &batch(3, &[3, 4])), Accept::From(0), "1 and 2 were lost with the sender");
        assert_eq!(accept(0, &batch(3, &[5])), Accept::Gap, "3 and 4 are still held: wait for them");
    }
}
