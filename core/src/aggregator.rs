//! The relay-wide figures for `/stats` (PROTOCOL.md section 4), summed by a
//! tree of objects so that no one object takes a report from every session:
//! each session reports its counts to one of `AGGREGATOR_LEAVES` leaves (by a hash
//! of its id, `stats::leaf_of`); each leaf passes its totals up to the root
//! at most once a second; the Matchmaker passes up how many sessions search.
//! The root answers `/stats` with one line of totals.
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

/// A leaf passes its totals up at most this often.
pub const TOTALS_DELAY_MS: f64 = 1_000.0;

/// Which aggregator an object is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Leaf(u32),
    Root,
}

impl Role {
    /// The object's name (its Durable Object is found by it).
    pub fn name(self) -> String {
        match self {
            Role::Leaf(i) => format!("leaf-{i}"),
            Role::Root => "root".to_string(),
        }
    }

    pub fn from_name(name: &str) -> Option<Role> {
        if name == "root" {
            return Some(Role::Root);
        }
        name.strip_prefix("leaf-")?.parse().ok().map(Role::Leaf)
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
    /// The answer to this leaf's `Totals` call.
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
    /// Pass totals up to the root; hand the answer back as `Input::Answer`.
    CallRoot(AggregatorCall),
    SetAlarm(Option<f64>),
    Log(Event),
}

/// One aggregator's state machine.
#[derive(Debug, Clone)]
pub struct AggregatorCore {
    role: Role,
    entries: BTreeMap<String, Entry>,
    totals: Totals,
    /// A leaf: what the root last acknowledged, and when.
    passed_up: Option<(Totals, f64)>,
    /// A leaf: when its totals next go up, if they changed.
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
            passed_up: None,
            // After a wake-up the root may not have a leaf's latest: pass up again.
            due: matches!(role, Role::Leaf(_)).then_some(f64::NEG_INFINITY),
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
        match entry {
            Some(entry) => self.entries.insert(key.clone(), entry),
            None => self.entries.remove(&key),
        };
        out.push(Effect::Save { key, entry });
        self.changed(now);
    }

    /// Figures whose lease ran out are forgotten.
    fn expire(&mut self, now: f64, out: &mut Vec<Effect>) {
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
        if matches!(self.role, Role::Leaf(_)) && self.due.is_none() {
            self.due = Some(now + TOTALS_DELAY_MS);
        }
    }

    fn recount(&mut self) {
        let mut totals = Totals::default();
        for entry in self.entries.values() {
            totals.add(&entry.totals);
        }
        self.totals = totals;
    }

    /// A leaf passes its totals up when they changed (at most once a second),
    /// and renews them before the root's lease ends.
    fn pass_up(&mut self, now: f64, out: &mut Vec<Effect>) {
        let Role::Leaf(_) = self.role else { return };
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
        out.push(Effect::CallRoot(AggregatorCall::Totals {
            v: CALLS_VERSION,
            from: self.role.name(),
            totals: self.totals,
            at: now,
        }));
    }

    pub fn next_deadline(&self) -> Option<f64> {
        let expiry = self.entries.values().map(|e| e.expires).reduce(f64::min);
        let due = if self.in_flight { None } else { self.due.map(|d| d.max(self.retry.at().unwrap_or(d))) };
        let renew = self.passed_up.filter(|(t, _)| *t != Totals::default()).map(|(_, at)| at + STATS_RENEW_MS);
        let renew = if matches!(self.role, Role::Leaf(_)) { renew } else { None };
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
                Effect::CallRoot(AggregatorCall::Totals { totals, .. }) => Some(*totals),
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
    fn the_root_answers_stats_with_every_leaf_and_the_searches() {
        let mut root = AggregatorCore::restore(Role::Root, vec![]);
        let totals = |hosts, searching| Totals { hosts, clients: 2 * hosts, players: hosts, searching };
        for (from, t) in [("leaf-0", totals(2, 0)), ("leaf-1", totals(3, 0)), ("matchmaker", totals(0, 4))] {
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
        assert_eq!(Role::from_name(&Role::Root.name()), Some(Role::Root));
    }
}
