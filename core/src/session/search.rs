//! What the Matchmaker must know of this session's search (PROTOCOL.md
//! section 4): its whole state, `(epoch, searching)`, sent until the
//! Matchmaker acknowledges it, and again now and then while it lasts (the
//! Matchmaker's entry is a lease: a session that stops renewing it, whatever
//! the reason, leaves the pool by itself).

use crate::calls::{MatchmakerCall, Outcome, CALLS_VERSION, POOL_FULL_STATUS};
use crate::journal::Event;
use crate::matchmaker::{Search, SEARCH_LEASE_MS, SEARCH_RENEW_MS};
use crate::retry::Backoff;
use crate::wire::say;

use super::effects::Out;
use super::{CallBody, Effect, InFlight, Peer, SessionCore};

/// A search the Matchmaker has not acknowledged within this time is given
/// up: the host hears `invalid`, the protocol's "not done".
pub const SEARCH_GIVE_UP_MS: f64 = 60_000.0;
/// A slave holds a link its master has not confirmed for this long, then
/// drops it and searches again (the Matchmaker's steps take far less).
pub const LINK_CONFIRM_MS: f64 = 90_000.0;

pub(super) fn backoff() -> Backoff {
    Backoff::new(100.0, 30_000.0)
}

impl SessionCore {
    /// The session stops searching (`/close-session`, `/leave-session`, its
    /// host left): a link its master has not confirmed yet is dropped too.
    pub(super) fn stop_search(&mut self, now: f64, out: &mut Out<'_>) {
        let Some(record) = self.record.as_mut() else { return };
        record.group.search = None;
        if record.group.master.as_ref().is_some_and(|m| !m.confirmed) {
            self.end_master_link(now, super::links::Ending::Abandoned, out);
        }
    }

    /// The search state the Matchmaker should hold, if it should hear it now:
    /// not while a master considers this session (the Matchmaker took its
    /// search out of the pool for that).
    fn desired_search(&self) -> Option<(u64, bool)> {
        let group = &self.record.as_ref()?.group;
        if group.master.is_some() {
            return None;
        }
        Some((group.search_epoch, group.search.is_some()))
    }

    /// Sends the search state if the Matchmaker does not have it, or its
    /// lease wants renewing; and the cancel an ended session owes.
    /// One call about the search at a time: the Matchmaker sees them in order.
    fn search_call_in_flight(&self) -> bool {
        self.calls.values().any(|c| matches!(c, InFlight::Search(..) | InFlight::Cancel(_)))
    }

    pub(super) fn sync_search(&mut self, now: f64, out: &mut Out<'_>) {
        if self.search_call_in_flight() {
            return;
        }
        if let Some(epoch) = self.owed.cancel.filter(|_| self.cancel_retry.ready(now)) {
            let body = MatchmakerCall::Search { v: CALLS_VERSION, sid: self.sid().to_string(), epoch, search: None };
            return self.call(Peer::Matchmaker, CallBody::Matchmaker(body), InFlight::Cancel(epoch), out);
        }
        let Some((epoch, searching)) = self.desired_search() else { return };
        let record = self.record.as_ref().expect("desired implies a record");
        let group = &record.group;
        let changed = group.search_synced != Some((epoch, searching));
        let renew = searching && now >= group.search_renewed_at + SEARCH_RENEW_MS;
        let never = group.search_synced.is_none() && !searching;
        if never || !(changed || renew) || !self.search_retry.ready(now) {
            return;
        }
        let search = group.search.as_ref().filter(|_| searching).map(|options| {
            let frozen = group.frozen.clone().unwrap_or_default();
            let mut search = Search::new(&record.id, options, group.used_ranges(&frozen), frozen.len() as u32);
            search.epoch = epoch;
            search
        });
        let body = MatchmakerCall::Search { v: CALLS_VERSION, sid: record.id.clone(), epoch, search };
        self.call(Peer::Matchmaker, CallBody::Matchmaker(body), InFlight::Search(epoch, searching), out);
    }

    /// The Matchmaker has not acknowledged the search state yet.
    pub(super) fn search_unsynced(&self) -> bool {
        let Some(group) = self.record.as_ref().map(|r| &r.group) else { return false };
        self.desired_search().is_some_and(|(epoch, searching)| {
            group.search_synced != Some((epoch, searching)) && (group.search_synced.is_some() || searching)
        })
    }

    /// When the search state next wants sending.
    pub(super) fn search_deadline(&self) -> Option<f64> {
        if self.search_call_in_flight() {
            return None;
        }
        if self.owed.cancel.is_some() {
            return Some(self.cancel_retry.at().unwrap_or(f64::NEG_INFINITY));
        }
        let group = &self.record.as_ref()?.group;
        let pending = group.master.as_ref().filter(|m| !m.confirmed).map(|m| m.since + LINK_CONFIRM_MS);
        let sync = self.desired_search().and_then(|(_, searching)| {
            let due = if self.search_unsynced() {
                f64::NEG_INFINITY
            } else if searching {
                group.search_renewed_at + SEARCH_RENEW_MS
            } else {
                return None;
            };
            // Not before a failed call's back-off.
            Some(due.max(self.search_retry.at().unwrap_or(due)))
        });
        [pending, sync].into_iter().flatten().reduce(f64::min)
    }

    pub(super) fn search_answered(
        &mut self,
        now: f64,
        (epoch, searching): (u64, bool),
        outcome: Outcome,
        out: &mut Out<'_>,
    ) {
        let sid = self.sid().to_string();
        let Some(record) = self.record.as_mut() else { return };
        let group = &mut record.group;
        if outcome.ok_body().is_some() {
            self.search_retry.succeeded();
            if epoch == group.search_epoch {
                group.search_synced = Some((epoch, searching));
                group.search_renewed_at = now;
                self.persist(out);
            }
            return;
        }
        let current = searching && epoch == group.search_epoch && group.search.is_some();
        if matches!(outcome, Outcome::Status(POOL_FULL_STATUS, _)) {
            self.search_retry.succeeded();
            if current {
                group.search_synced = Some((epoch, false));
                self.search_refused(&sid, "too many searches", out);
            }
            return;
        }
        let failing_for = self.search_retry.failed(now);
        let never_held = group.search_synced != Some((epoch, true));
        if current && never_held && failing_for >= SEARCH_GIVE_UP_MS {
            self.search_refused(&sid, "matchmaker unavailable", out);
        }
    }

    /// The search is off and the host hears `invalid`.
    fn search_refused(&mut self, sid: &str, why: &'static str, out: &mut Out<'_>) {
        let Some(record) = self.record.as_mut() else { return };
        record.group.search = None;
        record.group.thaw_if_idle();
        self.persist(out);
        self.tell_host(out, say::INVALID);
        out.push(Effect::Log(Event::warn("search_refused").with("sid", sid).with("reason", why)));
    }

    pub(super) fn cancel_answered(&mut self, now: f64, epoch: u64, outcome: Outcome, out: &mut Out<'_>) {
        if outcome.ok_body().is_some() {
            self.cancel_retry.succeeded();
        } else if self.cancel_retry.failed(now) < SEARCH_LEASE_MS {
            return;
        }
        // Done, or past the lease: the Matchmaker has dropped it by itself.
        if self.owed.cancel == Some(epoch) {
            self.owed.cancel = None;
            self.persist(out);
        }
    }

    /// The session ends: if the Matchmaker may hold its search, that search's
    /// end is owed.
    pub(super) fn owe_search_end(&mut self) {
        let Some(record) = self.record.as_ref() else { return };
        let group = &record.group;
        let in_flight = self.calls.values().any(|c| matches!(c, InFlight::Search(_, true)));
        let held = group.search_synced.is_some_and(|(_, searching)| searching) || in_flight;
        if held || group.search.is_some() {
            self.owed.cancel = Some(group.search_epoch);
        }
    }

    /// A slave's link its master never confirmed: dropped, and the search
    /// goes on under a new epoch (the Matchmaker took the old one out).
    pub(super) fn confirm_timed_out(&mut self, now: f64, out: &mut Out<'_>) {
        let Some(record) = self.record.as_ref() else { return };
        let Some(master) = record.group.master.as_ref().filter(|m| !m.confirmed) else { return };
        if now < master.since + LINK_CONFIRM_MS {
            return;
        }
        out.push(Effect::Log(
            Event::warn("link_unconfirmed").with("sid", record.id.as_str()).with("master", master.sid.as_str()),
        ));
        self.end_master_link(now, super::links::Ending::Abandoned, out);
        if let Some(record) = self.record.as_mut() {
            if record.group.search.is_some() {
                record.group.search_epoch = (record.group.search_epoch + 1).max(now as u64);
            }
        }
        self.persist(out);
    }
}
