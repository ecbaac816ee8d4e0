//! The Matchmaker (PROTOCOL.md section 4) as a pure state machine: the pool
//! of sessions that are looking, the announcement of the links it makes, and
//! the Steam friend-list cache. It is one object for the whole relay (the
//! pool must see every search), so only matchmaking reaches it: the figures
//! for `/stats` go to the aggregators, and it passes them only how many
//! sessions search.
//!
//! - `pool`: the searches and how two of them pair up;
//! - `announce`: making a link known to both sessions, stage by stage;
//! - `friends`: Steam friend lists, cached within a byte bound.
//!
//! Every entry of the pool is a lease: a session renews its search while it
//! lasts (`session::search::SEARCH_RENEW_MS`); one that stops (whatever
//! happened to it) leaves the pool by itself, and one that refuses a link
//! leaves it at once. A session's search is its whole state, named by an
//! epoch: a late or repeated call about an older epoch changes nothing.

mod announce;
pub mod friends;
pub mod pool;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

pub use announce::{Job, Stage, STEP_TIMEOUT_MS, UNDO_TIMEOUT_MS};
pub use pool::{parse_friend_list, Match, Pool, Search};

use crate::calls::{AggregatorCall, LinkId, MatchmakerCall, Outcome, Step, Totals, CALLS_VERSION, POOL_FULL_STATUS};
use crate::journal::Event;
use crate::retry::Backoff;
use crate::settings::Settings;
use crate::stats::{STATS_DELAY_MS, STATS_RENEW_MS};
use friends::{FriendsCache, FRIENDS_FAILURE_TTL_MS, FRIENDS_TTL_MS};

/// A session renews its search at the Matchmaker this often ...
pub const SEARCH_RENEW_MS: f64 = 60_000.0;
/// ... and the Matchmaker drops a search not renewed for this long.
pub const SEARCH_LEASE_MS: f64 = 3.0 * SEARCH_RENEW_MS;

/// Names a call the Matchmaker made.
pub type CallId = u64;

#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    Call(MatchmakerCall),
    /// The answer to `Effect::FetchFriends`: friends' Steam ids, or why not.
    Friends {
        search: Search,
        result: Result<HashSet<String>, String>,
    },
    /// The answer to `Effect::Call { id }`.
    Answer {
        id: CallId,
        outcome: Outcome,
    },
    /// The answer to `Effect::CallRoot`.
    RootAnswer(Outcome),
    Alarm,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Respond {
        status: u16,
        body: String,
    },
    /// Fetch the friend list of `search.steam_user_id`, then hand it back
    /// with `Input::Friends`.
    FetchFriends {
        search: Search,
    },
    /// Steps for one session, in one call; the answer comes back as
    /// `Input::Answer { id }`.
    Call {
        id: CallId,
        to: String,
        steps: Vec<Step>,
    },
    /// Pass the number of searches to the root aggregator.
    CallRoot(AggregatorCall),
    SaveSearch(Search),
    DeleteSearch(String),
    SaveJob(Job),
    DeleteJob(LinkId),
    SaveMeta {
        next_seq: u64,
        next_link: LinkId,
    },
    SetAlarm(Option<f64>),
    Log(Event),
}

/// The latest search state each session told, while it matters.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Told {
    epoch: u64,
    searching: bool,
    expires: f64,
}

#[derive(Debug, Clone)]
pub struct MatchmakerCore {
    settings: Settings,
    has_steam_key: bool,
    pool: Pool,
    told: HashMap<String, Told>,
    friends: FriendsCache,
    /// Searches waiting for a friend list: they hold a place in the pool.
    awaiting_friends: usize,
    jobs: BTreeMap<LinkId, Job>,
    /// Each master's links in the order they were made; the first is under way.
    chains: BTreeMap<String, VecDeque<LinkId>>,
    next_link: LinkId,
    calls: BTreeMap<CallId, Vec<LinkId>>,
    next_call: CallId,
    /// The searches the root last heard of, and when.
    passed_up: Option<(u64, f64)>,
    root_due: Option<f64>,
    root_in_flight: bool,
    root_retry: Backoff,
    alarm: Option<Option<f64>>,
    woken: bool,
}

impl MatchmakerCore {
    pub fn restore(
        settings: Settings,
        has_steam_key: bool,
        searches: Vec<Search>,
        jobs: Vec<Job>,
        next_seq: u64,
        next_link: LinkId,
    ) -> Self {
        let mut pool = Pool::default();
        pool.next_seq = next_seq;
        for search in searches {
            pool.next_seq = pool.next_seq.max(search.seq);
            pool.searches.insert(search.sid.clone(), search);
        }
        let mut core = MatchmakerCore {
            settings,
            has_steam_key,
            pool,
            told: HashMap::new(),
            friends: FriendsCache::default(),
            awaiting_friends: 0,
            jobs: BTreeMap::new(),
            chains: BTreeMap::new(),
            next_link,
            calls: BTreeMap::new(),
            next_call: 1,
            passed_up: None,
            root_due: Some(f64::NEG_INFINITY),
            root_in_flight: false,
            root_retry: Backoff::new(500.0, 60_000.0),
            alarm: None,
            woken: false,
        };
        core.restore_jobs(jobs);
        core
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Links being announced, for tests and figures.
    pub fn jobs(&self) -> &BTreeMap<LinkId, Job> {
        &self.jobs
    }

    pub fn handle(&mut self, now: f64, input: Input) -> Vec<Effect> {
        let mut out = Vec::new();
        if !self.woken {
            self.woken = true;
            self.wake(now, &mut out);
        }
        self.expire(now, &mut out);
        match input {
            Input::Call(MatchmakerCall::Search { v, .. }) if v > CALLS_VERSION => {
                out.push(Effect::Respond { status: crate::calls::UPGRADING_STATUS, body: "older version".into() })
            }
            Input::Call(MatchmakerCall::Search { sid, epoch, search, .. }) => {
                self.told(now, sid, epoch, search, &mut out)
            }
            Input::Friends { search, result } => {
                self.awaiting_friends = self.awaiting_friends.saturating_sub(1);
                let steam_id = search.steam_user_id.clone().unwrap_or_default();
                let (ttl, friends) = match result {
                    Ok(friends) => (FRIENDS_TTL_MS, friends),
                    Err(why) => {
                        out.push(Effect::Log(
                            Event::warn("steam_unavailable").with("steam_id", steam_id.as_str()).with("error", why),
                        ));
                        (FRIENDS_FAILURE_TTL_MS, HashSet::new())
                    }
                };
                self.friends.insert(now, steam_id, ttl, friends.clone());
                // The session may have cancelled while Steam answered.
                if self.told.get(&search.sid).is_some_and(|t| t.epoch == search.epoch && t.searching) {
                    self.search(now, search, Some(&friends), &mut out);
                }
            }
            Input::Answer { id, outcome } => self.answered(now, id, outcome, &mut out),
            Input::RootAnswer(outcome) => {
                self.root_in_flight = false;
                if outcome.ok_body().is_some() {
                    self.root_retry.succeeded();
                } else {
                    self.root_retry.failed(now);
                    self.passed_up = None;
                    self.root_due.get_or_insert(now);
                }
            }
            Input::Alarm => self.alarm = Some(None),
        }
        self.dispatch(now, &mut out);
        self.searches_changed(now);
        self.pass_up(now, &mut out);
        self.schedule(now, &mut out);
        out
    }

    /// After a wake-up: link ids from the clock (past any used before), and
    /// the announcements that were under way go on.
    fn wake(&mut self, now: f64, out: &mut Vec<Effect>) {
        self.next_link = self.next_link.max((now.max(0.0) * 1000.0) as u64);
        self.give_up_stale_jobs(now, out);
        let firsts: Vec<LinkId> = self.chains.values().filter_map(|c| c.front().copied()).collect();
        for link in firsts {
            if self.jobs.get(&link).is_some_and(|j| j.stage == Stage::Queued) {
                self.start(now, link, out);
            }
        }
    }

    /// A session's search state.
    fn told(&mut self, now: f64, sid: String, epoch: u64, search: Option<Search>, out: &mut Vec<Effect>) {
        let known = self.told.get(&sid).copied();
        let ok = Effect::Respond { status: 200, body: "ok".into() };
        // Older than what it told before: late or repeated, nothing changes.
        if known.is_some_and(|t| t.epoch > epoch || (t.epoch == epoch && !t.searching)) {
            return out.push(ok);
        }
        let Some(mut search) = search else {
            self.told.insert(sid.clone(), Told { epoch, searching: false, expires: now + SEARCH_LEASE_MS });
            if self.pool.searches.get(&sid).is_some_and(|s| s.epoch <= epoch) {
                self.pool.remove(&sid);
                out.push(Effect::DeleteSearch(sid.clone()));
            }
            self.slave_moved_on(now, &sid, epoch, out);
            return out.push(ok);
        };
        self.told.insert(sid.clone(), Told { epoch, searching: true, expires: now + SEARCH_LEASE_MS });
        // The same search again: its lease is renewed.
        if let Some(held) = self.pool.searches.get_mut(&sid).filter(|s| s.epoch == epoch) {
            held.expires = now + SEARCH_LEASE_MS;
            let held = held.clone();
            out.push(Effect::SaveSearch(held));
            return out.push(ok);
        }
        // Taken out of the pool for a link still being announced.
        if self.consumed(&sid, epoch) {
            return out.push(ok);
        }
        // A new search: links offered from its older ones were dropped.
        self.slave_moved_on(now, &sid, epoch.saturating_sub(1), out);
        if self.pool.is_full_for(&sid, self.settings.max_searches, self.awaiting_friends) {
            out.push(Effect::Log(Event::warn("search_refused").with("sid", sid.as_str())));
            return out.push(Effect::Respond { status: POOL_FULL_STATUS, body: "too many sessions searching".into() });
        }
        search.epoch = epoch;
        search.expires = now + SEARCH_LEASE_MS;
        out.push(ok);
        let Some(steam_id) = search.steam_user_id.clone().filter(|_| self.has_steam_key) else {
            return self.search(now, search, None, out);
        };
        match self.friends.get(&steam_id, now) {
            Some(friends) => {
                let friends = friends.clone();
                self.search(now, search, Some(&friends), out);
            }
            None => {
                self.awaiting_friends += 1;
                out.push(Effect::FetchFriends { search });
            }
        }
    }

    /// Registers a search, makes every match it allows and queues their
    /// announcements, all at once: no other input sees a half-made match.
    fn search(&mut self, now: f64, mut search: Search, friends: Option<&HashSet<String>>, out: &mut Vec<Effect>) {
        let sid = search.sid.clone();
        // Links still being announced hold their ranges.
        for range in self.announced_ranges(&sid) {
            if !search.used.contains(&range) {
                search.used.push(range);
            }
        }
        let seq_before = self.pool.next_seq;
        let matches = self.pool.search(search, friends, self.settings.max_clients);
        if self.pool.next_seq != seq_before {
            out.push(Effect::SaveMeta { next_seq: self.pool.next_seq, next_link: self.next_link });
        }
        self.made(now, sid, matches, out);
    }

    /// A search put back in the pool looks again.
    fn rematch(&mut self, now: f64, sid: &str, out: &mut Vec<Effect>) {
        let matches = self.pool.rematch(sid, None, self.settings.max_clients);
        self.made(now, sid.to_string(), matches, out);
    }

    fn made(&mut self, now: f64, sid: String, matches: Vec<Match>, out: &mut Vec<Effect>) {
        let mut touched: Vec<String> = vec![sid];
        for m in &matches {
            touched.push(m.master.clone());
            touched.push(m.slave.clone());
        }
        touched.sort();
        touched.dedup();
        for sid in touched {
            self.save_search_of(&sid, out);
        }
        for i in 0..matches.len() {
            // Only a master's last link of the batch can be the one that filled it.
            let last = matches[i + 1..].iter().all(|later| later.master != matches[i].master);
            self.announce(now, matches[i].clone(), last, out);
        }
        self.searches_changed(now);
    }

    fn save_search_of(&self, sid: &str, out: &mut Vec<Effect>) {
        match self.pool.searches.get(sid) {
            Some(search) => out.push(Effect::SaveSearch(search.clone())),
            None => out.push(Effect::DeleteSearch(sid.to_string())),
        }
    }

    /// Searches whose lease ran out leave the pool.
    fn expire(&mut self, now: f64, out: &mut Vec<Effect>) {
        let gone = self.pool.expire(now);
        if !gone.is_empty() {
            out.push(Effect::Log(Event::warn("searches_expired").with("count", gone.len())));
            for search in gone {
                out.push(Effect::DeleteSearch(search.sid));
            }
            self.searches_changed(now);
        }
        self.told.retain(|_, t| t.expires > now);
    }

    fn searches_changed(&mut self, now: f64) {
        if self.passed_up.map(|(n, _)| n) != Some(self.pool.len() as u64) && self.root_due.is_none() {
            self.root_due = Some(now + STATS_DELAY_MS);
        }
    }

    /// The number of searches goes to the root at most once a second, and is
    /// renewed before the root's lease on it ends.
    fn pass_up(&mut self, now: f64, out: &mut Vec<Effect>) {
        if self.root_in_flight || !self.root_retry.ready(now) {
            return;
        }
        let searching = self.pool.len() as u64;
        let renew = self.passed_up.is_some_and(|(n, at)| n > 0 && now >= at + STATS_RENEW_MS);
        if !renew && self.root_due.is_none_or(|due| due > now) {
            return;
        }
        self.root_due = None;
        if !renew && self.passed_up.map(|(n, _)| n) == Some(searching) {
            return;
        }
        self.root_in_flight = true;
        self.passed_up = Some((searching, now));
        let totals = Totals { searching, ..Totals::default() };
        out.push(Effect::CallRoot(AggregatorCall::Totals {
            v: CALLS_VERSION,
            from: "matchmaker".into(),
            totals,
            at: now,
        }));
    }

    pub fn next_deadline(&self) -> Option<f64> {
        let expiry = self.pool.searches.values().map(|s| s.expires).filter(|&e| e > 0.0).reduce(f64::min);
        let root = if self.root_in_flight {
            None
        } else {
            let due = self.root_due.map(|d| d.max(self.root_retry.at().unwrap_or(d)));
            let renew = self.passed_up.filter(|(n, _)| *n > 0).map(|(_, at)| at + STATS_RENEW_MS);
            [due, renew].into_iter().flatten().reduce(f64::min)
        };
        [expiry, root, self.steps_deadline()].into_iter().flatten().reduce(f64::min)
    }

    fn schedule(&mut self, now: f64, out: &mut Vec<Effect>) {
        let wanted = self.next_deadline().map(|at| at.max(now));
        if self.alarm != Some(wanted) {
            self.alarm = Some(wanted);
            out.push(Effect::SetAlarm(wanted));
        }
    }
}
