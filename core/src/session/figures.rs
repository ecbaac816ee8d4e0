//! This session's share of the relay-wide figures (`/stats`, PROTOCOL.md
//! section 4): its counts, reported to its aggregator at most once a second
//! when they change, absolute (a lost or repeated report is harmless), and
//! renewed before the aggregator's lease on them ends. Never to the
//! Matchmaker: only matchmaking reaches it.

use crate::calls::{AggregatorCall, Outcome, CALLS_VERSION};
use crate::journal::Event;
use crate::retry::Backoff;
use crate::stats::{leaf_of, SessionCounts, STATS_DELAY_MS, STATS_LEASE_MS, STATS_RENEW_MS};
use crate::wire::say;

use super::effects::Out;
use super::{CallBody, Effect, InFlight, Peer, SessionCore};

pub(super) fn backoff() -> Backoff {
    Backoff::new(500.0, 60_000.0)
}

impl SessionCore {
    /// This session's counts now.
    pub(super) fn counts(&self) -> SessionCounts {
        if self.record.is_none() {
            return SessionCounts::default();
        }
        SessionCounts::new(self.host.is_some(), self.clients.len() as u32)
    }

    /// Figures changed: report them soon, batched. The due time is only
    /// memory: after a wake-up, the stored report is compared again.
    pub(super) fn stats_changed(&mut self, now: f64) {
        if self.record.is_some() && self.stats_due.is_none() {
            self.stats_due = Some(now + STATS_DELAY_MS);
            self.timers_dirty = true;
        }
    }

    /// Sends what the aggregators should hear now, if anything.
    pub(super) fn sync_figures(&mut self, now: f64, out: &mut Out<'_>) {
        if let Some((leaf, at)) = self.owed.unreport {
            if self.unreport_retry.ready(now) && !self.calls.values().any(|c| matches!(c, InFlight::Unreport(_))) {
                let body = AggregatorCall::Report {
                    v: CALLS_VERSION,
                    sid: self.sid().to_string(),
                    counts: SessionCounts::default(),
                    at,
                };
                self.call(Peer::Aggregator(leaf), CallBody::Aggregator(body), InFlight::Unreport(leaf), out);
            }
        }
        let Some(record) = self.record.as_ref() else { return };
        let counts = self.counts();
        let renew = !record.stats_reported.is_zero() && now >= record.stats_reported_at + STATS_RENEW_MS;
        let due = self.stats_due.is_some_and(|due| due <= now) || renew;
        let in_flight = self.calls.values().any(|c| matches!(c, InFlight::Report(..)));
        if !due || in_flight || !self.report_retry.ready(now) {
            return;
        }
        self.stats_due = None;
        let leaf = leaf_of(&record.id, self.settings.aggregators);
        let moved = record.stats_leaf.is_some_and(|old| old != leaf);
        if counts == record.stats_reported && !renew && !moved {
            return;
        }
        if moved && !record.stats_reported.is_zero() && self.owed.unreport.is_none() {
            self.owed.unreport = record.stats_leaf.map(|old| (old, now));
        }
        let body = AggregatorCall::Report { v: CALLS_VERSION, sid: record.id.clone(), counts, at: now };
        self.call(Peer::Aggregator(leaf), CallBody::Aggregator(body), InFlight::Report(counts, leaf, now), out);
    }

    /// When the figures next want sending: a change, a retry, or the lease.
    pub(super) fn figures_deadline(&self) -> Option<f64> {
        let in_flight = |unreport: bool| {
            self.calls
                .values()
                .any(|c| matches!((c, unreport), (InFlight::Unreport(_), true) | (InFlight::Report(..), false)))
        };
        let unreport = self
            .owed
            .unreport
            .filter(|_| !in_flight(true))
            .map(|_| self.unreport_retry.at().unwrap_or(f64::NEG_INFINITY));
        if in_flight(false) {
            return unreport;
        }
        let record = self.record.as_ref();
        let renew = record.filter(|r| !r.stats_reported.is_zero()).map(|r| r.stats_reported_at + STATS_RENEW_MS);
        let report = [self.stats_due, renew].into_iter().flatten().reduce(f64::min);
        // Not before a failed call's back-off.
        let report = report.map(|at| at.max(self.report_retry.at().unwrap_or(at)));
        [unreport, report].into_iter().flatten().reduce(f64::min)
    }

    pub(super) fn report_answered(
        &mut self,
        now: f64,
        (counts, leaf, at): (SessionCounts, u32, f64),
        outcome: Outcome,
        out: &mut Out<'_>,
    ) {
        if outcome.ok_body().is_none() {
            // Tried again after the back-off (figures are absolute: the
            // next report is whatever is true then).
            self.report_retry.failed(now);
            self.stats_changed(now);
            return;
        }
        self.report_retry.succeeded();
        let Some(record) = self.record.as_mut() else { return };
        record.stats_reported = counts;
        record.stats_reported_at = at;
        record.stats_leaf = Some(leaf);
        self.persist(out);
        if counts != self.counts() {
            self.stats_changed(now);
        }
    }

    pub(super) fn unreport_answered(&mut self, now: f64, leaf: u32, outcome: Outcome, out: &mut Out<'_>) {
        if outcome.ok_body().is_some() {
            self.unreport_retry.succeeded();
        } else if self.unreport_retry.failed(now) < STATS_LEASE_MS {
            return;
        }
        // Done, or past the lease: the aggregator has forgotten it by itself.
        if self.owed.unreport.is_some_and(|(l, _)| l == leaf) {
            self.owed.unreport = None;
            self.persist(out);
        }
    }

    /// The session ends: an aggregator that counts it must hear zero.
    pub(super) fn owe_zero_figures(&mut self, now: f64) {
        let Some(record) = self.record.as_ref() else { return };
        let reported = !record.stats_reported.is_zero();
        let in_flight = self.calls.values().any(|c| matches!(c, InFlight::Report(..)));
        if reported || in_flight {
            let leaf = record.stats_leaf.unwrap_or_else(|| leaf_of(&record.id, self.settings.aggregators));
            self.owed.unreport = Some((leaf, now));
        }
    }

    /// The answer to the host's `/stats`.
    pub(super) fn stats_answered(&mut self, outcome: Outcome, out: &mut Out<'_>) {
        match outcome.ok_body() {
            Some(json) => {
                let line = say::stats(json);
                self.tell_host(out, line);
            }
            None => out.push(Effect::Log(
                Event::error("stats_unavailable").with("sid", self.sid()).with("outcome", format!("{outcome:?}")),
            )),
        }
    }
}
