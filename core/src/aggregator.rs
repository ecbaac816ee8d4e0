//! The relay-wide figures for `/stats` (PROTOCOL.md section 4), summed by a
//! tree of objects so that no one object takes a report from every session:
//! each session reports its counts to one of `AGGREGATOR_LEAVES` leaves (by a
//! hash of its id, `stats::leaf_of`); each leaf passes its totals up to its
//! branch (one per [`FANOUT`] leaves), and each branch to the root, at most
//! once a second each; the Matchmaker passes up how many sessions search.
//! The root answers `/stats` with one line of totals.
//!
//! So no aggregator takes more than [`FANOUT`] calls a second from the level
//! below it (the root: its branches and the Matchmaker), however many
//! sessions there are; only the leaves' load grows with the sessions, one
//! call per change of a session's figures (ARCHITECTURE.md, "Figures").
//! Three levels of at most a second each keep `/stats` within its 5 s.
//!
//! Every figure is a lease: a session renews its report well within
//! [`STATS_LEASE_MS`], so the figures of a session that stopped reporting
//! (its object reset by a deploy, its last report lost) expire by themselves,
//! and `/stats` converges after lost calls and deploys. Reports are absolute
//! and carry the reporter's clock: a late or repeated one changes nothing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::calls::{AggregatorCall, Outcome, Totals, CALLS_VERSION, UPGRADING_STATUS};
use crate::journal::Event;
use crate::retry::Backoff;
use crate::stats::{STATS_LEASE_MS, STATS_RENEW_MS};

/// A leaf or a branch passes its totals up at most this often.
pub const TOTALS_DELAY_MS: f64 = 1_000.0;
/// Leaves per branch, and the most branches the root has
/// (`settings::MAX_AGGREGATORS` is `FANOUT * FANOUT`).
pub const FANOUT: u32 = 32;

/// Which aggregator an object is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Leaf(u32),
    Branch(u32),
    Root,
}

impl Role {
    /// The object's name (its Durable Object is found by it).
    pub fn name(self) -> String {
        match self {
            Role::Leaf(i) => format!("leaf-{i}"),
            Role::Branch(i) => format!("branch-{i}"),
            Role::Root => "root".to_string(),
        }
    }

    pub fn from_name(name: &str) -> Option<Role> {
        if name == "root" {
            return Some(Role::Root);
        }
        if let Some(i) = name.strip_prefix("branch-") {
            return i.parse().ok().map(Role::Branch);
        }
        name.strip_prefix("leaf-")?.parse().ok().map(Role::Leaf)
    }

    /// Where this aggregator passes its totals: a leaf to its branch, a
    /// branch to the root.
    pub fn parent(self) -> Option<Role> {
        match self {
            Role::Leaf(i) => Some(Role::Branch(i / FANOUT)),
            Role::Branch(_) => Some(Role::Root),
            Role::Root => None,
        }
    }
}

/// One reporter's figures as an aggregator keeps (and stores) them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub totals: Totals,
    /// The reporter's clock when it counted: older reports are ignored.
    pub at: f64,
    /// Forgotten after this (epoch ms) unless renewed.
    pub expires: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    Call(AggregatorCall),
    /// The answer to this aggregator's `Totals` call to its parent.
    Answer(Outcome),
    Alarm,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Respond {
        status: u16,
        body: String,
    },
    /// Store (or, `None`, delete) one reporter's entry.
    Save {
        key: String,
        entry: Option<Entry>,
    },
    /// Pass totals up to the parent; hand the answer back as `Input::Answer`.
    PassUp {
        to: Role,
        call: AggregatorCall,
    },
    SetAlarm(Option<f64>),
    Log(Event),
}

/// One aggregator's state machine.
#[derive(Debug, Clone)]
pub struct AggregatorCore {
    role: Role,
    entries: BTreeMap<String, Entry>,
    /// The sum of the entries, kept up to date as they change (a leaf may
    /// hold thousands: no call scans them all).
    totals: Totals,
    /// The earliest `expires` of the entries (infinite without any).
    earliest: f64,
    /// Below the root: what the parent last acknowledged, and when.
    passed_up: Option<(Totals, f64)>,
    /// Below the root: when its totals next go up, if they changed.
    due: Option<f64>,
    in_flight: bool,
    retry: Backoff,
    alarm: Option<Option<f64>>,
}

impl AggregatorCore {
    pub fn restore(role: Role, entries: Vec<(String, Entry)>) -> Self {
        let mut core = AggregatorCore {
            role,
            entries: entries.into_iter().collect(),
            totals: Totals::default(),
            earliest: f64::INFINITY,
            passed_up: None,
            // After a wake-up the parent may not have the latest: pass up again.
            due: role.parent().map(|_| f64::NEG_INFINITY),
            in_flight: false,
            retry: Backoff::new(500.0, 60_000.0),
            alarm: None,
        };
        core.recount();
        core
    }

    pub fn totals(&self) -> Totals {
        self.totals
    }

    pub fn entries(&self) -> &BTreeMap<String, Entry> {
        &self.entries
    }

    pub fn handle(&mut self, now: f64, input: Input) -> Vec<Effect> {
        let mut out = Vec::new();
        self.expire(now, &mut out);
        match input {
            Input::Call(AggregatorCall::Report { v, .. } | AggregatorCall::Totals { v, .. }) if v > CALLS_VERSION => {
                out.push(Effect::Respond { status: UPGRADING_STATUS, body: "older version; try again".into() });
            }
            Input::Call(AggregatorCall::Report { sid, counts, at, .. }) => {
                self.record(now, sid, Totals::of(&counts), at, &mut out);
                out.push(ok());
            }
            Input::Call(AggregatorCall::Totals { from, totals, at, .. }) => {
                self.record(now, from, totals, at, &mut out);
                out.push(ok());
            }
            Input::Call(AggregatorCall::Stats) => {
                out.push(Effect::Respond { status: 200, body: self.totals.stats().to_json() });
            }
            Input::Answer(outcome) => {
                self.in_flight = false;
                match outcome.ok_body() {
                    Some(_) => {
                        self.retry.succeeded();
                        let sent = self.passed_up.map(|(t, _)| t);
                        if sent != Some(self.totals) && self.due.is_none() {
                            self.due = Some(now + TOTALS_DELAY_MS);
                        }
                    }
                    None => {
                        self.retry.failed(now);
                        self.passed_up = None;
                        self.due.get_or_insert(now);
                    }
                }
            }
            Input::Alarm => self.alarm = Some(None),
        }
        self.pass_up(now, &mut out);
        self.schedule(now, &mut out);
        out
    }

    /// Keeps a reporter's figures (a zero report forgets them).
    fn record(&mut self, now: f64, key: String, totals: Totals, at: f64, out: &mut Vec<Effect>) {
        if self.entries.get(&key).is_some_and(|e| e.at > at) {
            return;
        }
        let entry = (totals != Totals::default()).then_some(Entry { totals, at, expires: now + STATS_LEASE_MS });
        let old = match entry {
            Some(entry) => self.entries.insert(key.clone(), entry),
            None => self.entries.remove(&key),
        };
        if let Some(old) = old {
            self.totals.sub(&old.totals);
        }
        if let Some(entry) = &entry {
            self.totals.add(&entry.totals);
        }
        if old.is_some_and(|o| o.expires <= self.earliest) {
            self.earliest = self.entries.values().map(|e| e.expires).fold(f64::INFINITY, f64::min);
        } else if let Some(entry) = &entry {
            self.earliest = self.earliest.min(entry.expires);
        }
        out.push(Effect::Save { key, entry });
        self.mark_changed(now);
    }

    /// Figures whose lease ran out are forgotten.
    fn expire(&mut self, now: f64, out: &mut Vec<Effect>) {
        if now < self.earliest {
            return;
        }
        let expired: Vec<String> =
            self.entries.iter().filter(|(_, e)| e.expires <= now).map(|(k, _)| k.clone()).collect();
        if expired.is_empty() {
            return;
        }
        out.push(Effect::Log(
            Event::warn("figures_expired").with("aggregator", self.role.name()).with("count", expired.len()),
        ));
        for key in expired {
            self.entries.remove(&key);
            out.push(Effect::Save { key, entry: None });
        }
        self.changed(now);
    }

    fn changed(&mut self, now: f64) {
        self.recount();
        self.mark_changed(now);
    }

    fn mark_changed(&mut self, now: f64) {
        if self.role.parent().is_some() && self.due.is_none() {
            self.due = Some(now + TOTALS_DELAY_MS);
        }
    }

    fn recount(&mut self) {
        let mut totals = Totals::default();
        for entry in self.entries.values() {
            totals.add(&entry.totals);
        }
        self.totals = totals;
        self.earliest = self.entries.values().map(|e| e.expires).fold(f64::INFINITY, f64::min);
    }

    /// A leaf or a branch passes its totals up when they changed (at most
    /// once a second), and renews them before its parent's lease ends.
    fn pass_up(&mut self, now: f64, out: &mut Vec<Effect>) {
        let Some(parent) = self.role.parent() else { return };
        if self.in_flight || !self.retry.ready(now) {
            return;
        }
        let renew = self.passed_up.is_some_and(|(t, at)| t != Totals::default() && now >= at + STATS_RENEW_MS);
        if !renew && self.due.is_none_or(|due| due > now) {
            return;
        }
        self.due = None;
        if !renew && self.passed_up.map(|(t, _)| t) == Some(self.totals) {
            return;
        }
        self.in_flight = true;
        self.passed_up = Some((self.totals, now));
        out.push(Effect::PassUp {
            to: parent,
            call: AggregatorCall::Totals { v: CALLS_VERSION, from: self.role.name(), totals: self.totals, at: now },
        });
    }

    pub fn next_deadline(&self) -> Option<f64> {
        let expiry = self.earliest.is_finite().then_some(self.earliest);
        let due = if self.in_flight { None } else { self.due.map(|d| d.max(self.retry.at().unwrap_or(d))) };
        let renew = self.passed_up.filter(|(t, _)| *t != Totals::default()).map(|(_, at)| at + STATS_RENEW_MS);
        let renew = if self.role.parent().is_some() { renew } else { None };
        [expiry, due, renew].into_iter().flatten().reduce(f64::min)
    }

    fn schedule(&mut self, now: f64, out: &mut Vec<Effect>) {
        let wanted = self.next_deadline().map(|at| at.max(now));
        if self.alarm != Some(wanted) {
            self.alarm = Some(wanted);
            out.push(Effect::SetAlarm(wanted));
        }
    }
}

fn ok() -> Effect {
    Effect::Respond { status: 200, body: "ok".into() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::SessionCounts;

    fn report(sid: &str, hosts: u32, clients: u32, at: f64) -> Input {
        Input::Call(AggregatorCall::Report {
            v: CALLS_VERSION,
            sid: sid.into(),
            counts: SessionCounts::new(hosts > 0, clients),
            at,
        })
    }

    fn calls_up(effects: &[Effect]) -> Vec<Totals> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::PassUp { call: AggregatorCall::Totals { totals, .. }, .. } => Some(*totals),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_leaf_sums_its_sessions_and_passes_up_at_most_once_a_second() {
        let mut leaf = AggregatorCore::restore(Role::Leaf(3), vec![]);
        let first = leaf.handle(0.0, report("a", 1, 2, 0.0));
        // Right after a wake-up it passes up at once.
        assert_eq!(calls_up(&first).len(), 1);
        leaf.handle(1.0, Input::Answer(Outcome::Status(200, "ok".into())));
        let e = leaf.handle(2.0, report("b", 1, 3, 2.0));
        assert!(calls_up(&e).is_empty(), "batched");
        let e = leaf.handle(1_002.0, Input::Alarm);
        assert_eq!(calls_up(&e), vec![Totals { hosts: 2, clients: 5, players: 5, searching: 0 }]);
    }

    #[test]
    fn late_reports_change_nothing_and_zero_forgets() {
        let mut leaf = AggregatorCore::restore(Role::Leaf(0), vec![]);
        leaf.handle(0.0, report("a", 1, 2, 10.0));
        leaf.handle(1.0, report("a", 1, 7, 5.0));
        assert_eq!(leaf.totals().clients, 2);
        leaf.handle(2.0, report("a", 0, 0, 20.0));
        assert!(leaf.entries().is_empty());
    }

    #[test]
    fn figures_expire_unless_renewed() {
        let mut leaf = AggregatorCore::restore(Role::Leaf(0), vec![]);
        leaf.handle(0.0, report("a", 1, 2, 0.0));
        leaf.handle(0.0, report("b", 1, 1, 0.0));
        leaf.handle(STATS_RENEW_MS, report("b", 1, 1, STATS_RENEW_MS));
        assert_eq!(leaf.next_deadline().map(|d| d <= STATS_LEASE_MS), Some(true));
        let e = leaf.handle(STATS_LEASE_MS, Input::Alarm);
        assert!(e.iter().any(|e| matches!(e, Effect::Save { key, entry: None } if key == "a")));
        assert_eq!(leaf.totals().clients, 1);
    }

    #[test]
    fn the_root_answers_stats_with_every_branch_and_the_searches() {
        let mut root = AggregatorCore::restore(Role::Root, vec![]);
        let totals = |hosts, searching| Totals { hosts, clients: 2 * hosts, players: hosts, searching };
        for (from, t) in [("branch-0", totals(2, 0)), ("branch-1", totals(3, 0)), ("matchmaker", totals(0, 4))] {
            root.handle(0.0, Input::Call(AggregatorCall::Totals { v: 2, from: from.into(), totals: t, at: 0.0 }));
        }
        let e = root.handle(1.0, Input::Call(AggregatorCall::Stats));
        assert_eq!(root.next_deadline(), Some(STATS_LEASE_MS), "the root only waits for leases to end");
        assert_eq!(
            e.iter().find(|e| matches!(e, Effect::Respond { .. })),
            Some(&Effect::Respond {
                status: 200,
                body: r#"{"numHostsOnline":5,"numHostsLookingForSession":4,"numClientsOnline":10,"numPlayers":5}"#
                    .into()
            })
        );
        assert_eq!(Role::from_name("leaf-12"), Some(Role::Leaf(12)));
        assert_eq!(Role::from_name("branch-3"), Some(Role::Branch(3)));
        assert_eq!(Role::from_name(&Role::Root.name()), Some(Role::Root));
    }

    #[test]
    fn leaves_pass_up_to_their_branch_and_branches_to_the_root() {
        assert_eq!(Role::Leaf(0).parent(), Some(Role::Branch(0)));
        assert_eq!(Role::Leaf(FANOUT - 1).parent(), Some(Role::Branch(0)));
        assert_eq!(Role::Leaf(FANOUT).parent(), Some(Role::Branch(1)));
        assert_eq!(Role::Branch(7).parent(), Some(Role::Root));
        assert_eq!(Role::Root.parent(), None);
        let mut branch = AggregatorCore::restore(Role::Branch(1), vec![]);
        let t = Totals { hosts: 1, clients: 2, players: 2, searching: 0 };
        let e = branch
            .handle(0.0, Input::Call(AggregatorCall::Totals { v: 2, from: "leaf-40".into(), totals: t, at: 0.0 }));
        assert!(e.iter().any(|e| matches!(e, Effect::PassUp { to: Role::Root, .. })));
        assert_eq!(calls_up(&e), vec![t]);
    }

    #[test]
    fn the_totals_kept_up_to_date_are_the_sum_of_the_entries() {
        let mut leaf = AggregatorCore::restore(Role::Leaf(0), vec![]);
        let mut at = 0.0;
        for (sid, hosts, clients) in [("a", 1, 2), ("b", 1, 3), ("a", 1, 5), ("b", 0, 0), ("c", 1, 1), ("a", 0, 0)] {
            at += 1.0;
            leaf.handle(at, report(sid, hosts, clients, at));
            let mut sum = Totals::default();
            leaf.entries().values().for_each(|e| sum.add(&e.totals));
            assert_eq!(leaf.totals(), sum);
        }
        assert_eq!(leaf.totals().clients, 1);
    }
}
