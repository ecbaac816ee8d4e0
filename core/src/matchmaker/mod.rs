//! The Matchmaker (PROTOCOL.md section 4) as a pure state machine: the pool of
//! sessions that are looking, the relay-wide figures for `/stats`, the Steam
//! friend-list cache, and the announcement of links.
//!
//! Announcing a link takes calls to both sessions, and those calls interleave
//! with other searches. The order of a master's `!added-slave:` lines *is* the
//! order of joining (its slaves' id ranges follow from it), so announcements
//! run one at a time per master, in the order the matches were made: a
//! master's next link is announced only once the one before is done. Each
//! announcement is three steps: the slave first (it answers with its clients,
//! in the master's id space), then the master, which tells its host
//! `!added-slave:` and a `connected:` per client; if the master is gone, the
//! slave is told the master left. If the slave is gone, the master never hears
//! of the link and its range is free again.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use crate::calls::{MatchmakerCall, Outcome, SessionCall, OK_STATUS, POOL_FULL_STATUS};
use crate::journal::Event;
pub mod pool;

use crate::settings::Settings;
use crate::stats::{SessionCounts, StatsTable};
pub use pool::{Match, Pool, Search};

/// How long a friend list is trusted.
pub const FRIENDS_TTL_MS: f64 = 10.0 * 60_000.0;
/// After a failed Steam call, "no friends" is trusted this long.
pub const FRIENDS_FAILURE_TTL_MS: f64 = 30_000.0;
/// Friend lists kept at most; the ones that expire first go first.
pub const FRIENDS_CACHE_ENTRIES: usize = 10_000;

pub type JobId = u64;

#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    Call(MatchmakerCall),
    /// The answer to `Effect::FetchFriends`: friends' Steam ids, or why not.
    Friends {
        search: Search,
        result: Result<HashSet<String>, String>,
    },
    /// The answer to `Effect::Tell`.
    Told {
        job: JobId,
        outcome: Outcome,
    },
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
    /// Call a session; hand the answer back with `Input::Told`.
    Tell {
        job: JobId,
        to: String,
        call: SessionCall,
    },
    SaveSearch(Search),
    DeleteSearch(String),
    SaveSeq(u64),
    SaveStats {
        sid: String,
        counts: SessionCounts,
    },
    Log(Event),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// `LinkedAsSlave` sent to the slave.
    Slave,
    /// `LinkedAsMaster` sent to the master.
    Master,
    /// The master was gone: `MasterLeft` sent to the slave.
    Undo,
}

#[derive(Debug, Clone)]
struct Job {
    id: JobId,
    link: Match,
    step: Step,
    /// The master's search, if this link filled it (it left the pool): put
    /// back if the link falls through.
    filled: Option<Search>,
}

#[derive(Debug, Clone)]
pub struct MatchmakerCore {
    settings: Settings,
    has_steam_key: bool,
    pool: Pool,
    stats: StatsTable,
    friends: HashMap<String, (f64, HashSet<String>)>,
    /// Searches waiting for a friend list: they hold a place in the pool.
    awaiting_friends: usize,
    /// Announcements per master, in the order the matches were made; the
    /// first of each is under way.
    chains: BTreeMap<String, VecDeque<Job>>,
    next_job: JobId,
}

impl MatchmakerCore {
    pub fn restore(
        settings: Settings,
        has_steam_key: bool,
        searches: Vec<Search>,
        next_seq: u64,
        stats: Vec<(String, SessionCounts)>,
    ) -> Self {
        let mut pool = Pool::default();
        pool.next_seq = next_seq;
        for search in searches {
            pool.next_seq = pool.next_seq.max(search.seq);
            pool.searches.insert(search.sid.clone(), search);
        }
        let mut table = StatsTable::default();
        for (sid, counts) in stats {
            table.report(&sid, counts);
        }
        MatchmakerCore {
            settings,
            has_steam_key,
            pool,
            stats: table,
            friends: HashMap::new(),
            awaiting_friends: 0,
            chains: BTreeMap::new(),
            next_job: 0,
        }
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Links announced or waiting to be, for tests.
    pub fn announcements_pending(&self) -> usize {
        self.chains.values().map(VecDeque::len).sum()
    }

    pub fn handle(&mut self, now: f64, input: Input) -> Vec<Effect> {
        let mut out = Vec::new();
        match input {
            Input::Call(call) => self.call(now, call, &mut out),
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
                self.remember_friends(now, steam_id, ttl, friends.clone());
                self.search(search, Some(&friends), &mut out);
            }
            Input::Told { job, outcome } => self.told(job, outcome, &mut out),
        }
        out
    }

    fn call(&mut self, now: f64, call: MatchmakerCall, out: &mut Vec<Effect>) {
        match call {
            MatchmakerCall::Search { search } => {
                if self.pool.is_full_for(&search.sid, self.settings.max_searches, self.awaiting_friends) {
                    out.push(Effect::Log(Event::warn("search_refused").with("sid", search.sid.as_str())));
                    return out.push(Effect::Respond {
                        status: POOL_FULL_STATUS,
                        body: "too many sessions searching".into(),
                    });
                }
                let Some(steam_id) = search.steam_user_id.clone().filter(|_| self.has_steam_key) else {
                    return self.search(search, None, out);
                };
                match self.friends.get(&steam_id).filter(|(expires, _)| *expires > now) {
                    Some((_, friends)) => {
                        let friends = friends.clone();
                        self.search(search, Some(&friends), out);
                    }
                    None => {
                        self.awaiting_friends += 1;
                        out.push(Effect::FetchFriends { search });
                    }
                }
            }
            MatchmakerCall::Cancel { sid } => {
                if self.pool.remove(&sid).is_some() {
                    out.push(Effect::DeleteSearch(sid));
                }
                out.push(Effect::Respond { status: OK_STATUS, body: "ok".into() });
            }
            MatchmakerCall::Report { sid, counts } => {
                self.stats.report(&sid, counts);
                out.push(Effect::SaveStats { sid, counts });
                out.push(Effect::Respond { status: OK_STATUS, body: "ok".into() });
            }
            MatchmakerCall::Stats => {
                let json = self.stats.snapshot(self.pool.len()).to_json();
                out.push(Effect::Respond { status: OK_STATUS, body: json });
            }
        }
    }

    fn remember_friends(&mut self, now: f64, steam_id: String, ttl: f64, friends: HashSet<String>) {
        if self.friends.len() >= FRIENDS_CACHE_ENTRIES {
            self.friends.retain(|_, (expires, _)| *expires > now);
        }
        while self.friends.len() >= FRIENDS_CACHE_ENTRIES {
            let soonest = self
                .friends
                .iter()
                .min_by(|a, b| a.1 .0.total_cmp(&b.1 .0))
                .map(|(k, _)| k.clone())
                .expect("not empty");
            self.friends.remove(&soonest);
        }
        self.friends.insert(steam_id, (now + ttl, friends));
    }

    /// Registers a search, makes every match it allows and queues their
    /// announcements, all at once: no other input sees a half-made match.
    fn search(&mut self, mut search: Search, friends: Option<&HashSet<String>>, out: &mut Vec<Effect>) {
        let sid = search.sid.clone();
        // Links still being announced hold their ranges.
        for job in self.chains.get(&sid).into_iter().flatten() {
            let range = (job.link.offset, job.link.span);
            if !search.used.contains(&range) {
                search.used.push(range);
            }
        }
        let seq_before = self.pool.next_seq;
        let matches = self.pool.search(search, friends, self.settings.max_clients);
        if self.pool.next_seq != seq_before {
            out.push(Effect::SaveSeq(self.pool.next_seq));
        }
        let mut touched: Vec<String> = vec![sid];
        for m in &matches {
            touched.push(m.master.clone());
            touched.push(m.slave.clone());
        }
        touched.sort();
        touched.dedup();
        for sid in touched {
            match self.pool.searches.get(&sid) {
                Some(search) => out.push(Effect::SaveSearch(search.clone())),
                None => out.push(Effect::DeleteSearch(sid)),
            }
        }
        for link in matches {
            self.queue_announcement(link, out);
        }
        out.push(Effect::Respond { status: OK_STATUS, body: "ok".into() });
    }

    fn queue_announcement(&mut self, link: Match, out: &mut Vec<Effect>) {
        self.next_job += 1;
        let filled = self.pool.take_filled(&link.master);
        let job = Job { id: self.next_job, link, step: Step::Slave, filled };
        let chain = self.chains.entry(job.link.master.clone()).or_default();
        chain.push_back(job);
        if chain.len() == 1 {
            let job = chain.front().expect("just pushed").clone();
            out.push(step_call(&job));
        }
    }

    fn told(&mut self, id: JobId, outcome: Outcome, out: &mut Vec<Effect>) {
        let Some((master, chain)) = self.chains.iter_mut().find(|(_, c)| c.front().is_some_and(|j| j.id == id)) else {
            return;
        };
        let master = master.clone();
        let more_queued = chain.len() > 1;
        let job = chain.front_mut().expect("found above");
        let ok_body = match &outcome {
            Outcome::Status(OK_STATUS, body) => Some(body.clone()),
            _ => None,
        };
        let next = match (job.step, ok_body) {
            (Step::Slave, Some(body)) => {
                let clients: Vec<u32> = serde_json::from_str(&body).unwrap_or_default();
                job.step = Step::Master;
                // Still looking if in the pool, or if more links to it are on
                // their way (one of those may be the one that fills it).
                let searching = self.pool.contains(&master) || more_queued;
                let call = SessionCall::LinkedAsMaster {
                    slave: job.link.slave.clone(),
                    offset: job.link.offset,
                    span: job.link.span,
                    clients,
                    searching,
                };
                Some(Effect::Tell { job: job.id, to: master.clone(), call })
            }
            (Step::Slave, None) => {
                // The slave is gone or linked elsewhere: no link, range free again.
                out.push(Effect::Log(
                    Event::info("link_abandoned")
                        .with("master", master.as_str())
                        .with("slave", job.link.slave.as_str()),
                ));
                let offset = job.link.offset;
                match job.filled.take() {
                    // The link that filled it fell through: it looks again.
                    Some(search) if !self.pool.contains(&master) => self.pool.restore(search, offset),
                    _ => self.pool.free_range(&master, offset),
                }
                if let Some(search) = self.pool.searches.get(&master) {
                    out.push(Effect::SaveSearch(search.clone()));
                }
                None
            }
            (Step::Master, Some(_)) => None,
            (Step::Master, None) => {
                job.step = Step::Undo;
                let call = SessionCall::MasterLeft { master: master.clone() };
                Some(Effect::Tell { job: job.id, to: job.link.slave.clone(), call })
            }
            (Step::Undo, _) => None,
        };
        if let Some(effect) = next {
            return out.push(effect);
        }
        // This announcement is done: the master's next one may start.
        let chain = self.chains.get_mut(&master).expect("found above");
        chain.pop_front();
        match chain.front() {
            Some(job) => out.push(step_call(job)),
            None => {
                self.chains.remove(&master);
            }
        }
    }
}

fn step_call(job: &Job) -> Effect {
    let call = SessionCall::LinkedAsSlave { master: job.link.master.clone(), offset: job.link.offset };
    Effect::Tell { job: job.id, to: job.link.slave.clone(), call }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{JoinOptions, JoinRole};

    fn core() -> MatchmakerCore {
        MatchmakerCore::restore(Settings::default(), true, Vec::new(), 0, Vec::new())
    }

    fn search(sid: &str, role: JoinRole, clients: u32, steam: Option<&str>) -> Search {
        let options = JoinOptions { role, steam_user_id: steam.map(str::to_string), ..Default::default() };
        Search::new(sid, &options, vec![(0, clients)], clients)
    }

    fn tells(effects: &[Effect]) -> Vec<(JobId, String, SessionCall)> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Tell { job, to, call } => Some((*job, to.clone(), call.clone())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_masters_announcements_run_one_at_a_time_in_match_order() {
        let mut mm = core();
        mm.handle(0.0, Input::Call(MatchmakerCall::Search { search: search("m", JoinRole::Master, 1, None) }));
        let first =
            mm.handle(0.0, Input::Call(MatchmakerCall::Search { search: search("s1", JoinRole::Slave, 1, None) }));
        let second =
            mm.handle(0.0, Input::Call(MatchmakerCall::Search { search: search("s2", JoinRole::Slave, 2, None) }));
        let t1 = tells(&first);
        assert_eq!(t1.len(), 1);
        assert_eq!(t1[0].2, SessionCall::LinkedAsSlave { master: "m".into(), offset: 1 });
        // s2 was matched too, but waits for s1's announcement.
        assert!(tells(&second).is_empty());
        let step2 = mm.handle(0.0, Input::Told { job: t1[0].0, outcome: Outcome::Status(200, "[2]".into()) });
        let t2 = tells(&step2);
        assert_eq!(
            t2[0].2,
            SessionCall::LinkedAsMaster { slave: "s1".into(), offset: 1, span: 1, clients: vec![2], searching: true }
        );
        let next = mm.handle(0.0, Input::Told { job: t2[0].0, outcome: Outcome::Status(200, "ok".into()) });
        assert_eq!(tells(&next)[0].2, SessionCall::LinkedAsSlave { master: "m".into(), offset: 2 });
    }

    #[test]
    fn a_gone_slave_frees_its_range_and_a_gone_master_is_undone() {
        let mut mm = core();
        mm.handle(0.0, Input::Call(MatchmakerCall::Search { search: search("m", JoinRole::Master, 1, None) }));
        let e = mm.handle(0.0, Input::Call(MatchmakerCall::Search { search: search("s1", JoinRole::Slave, 3, None) }));
        let job = tells(&e)[0].0;
        mm.handle(0.0, Input::Told { job, outcome: Outcome::Status(410, String::new()) });
        assert_eq!(mm.pool().searches["m"].used, vec![(0, 1)]);
        assert_eq!(mm.announcements_pending(), 0);
        let e = mm.handle(0.0, Input::Call(MatchmakerCall::Search { search: search("s2", JoinRole::Slave, 1, None) }));
        let job = tells(&e)[0].0;
        let e = mm.handle(0.0, Input::Told { job, outcome: Outcome::Status(200, "[2]".into()) });
        let e = mm.handle(0.0, Input::Told { job: tells(&e)[0].0, outcome: Outcome::Failed("reset".into()) });
        assert_eq!(tells(&e)[0].1, "s2");
        assert_eq!(tells(&e)[0].2, SessionCall::MasterLeft { master: "m".into() });
    }

    #[test]
    fn searches_waiting_for_steam_hold_a_place_and_friend_lists_are_cached() {
        let mut mm =
            MatchmakerCore::restore(Settings { max_searches: 2, ..Settings::default() }, true, vec![], 0, vec![]);
        let e =
            mm.handle(0.0, Input::Call(MatchmakerCall::Search { search: search("a", JoinRole::Master, 1, Some("7")) }));
        let Effect::FetchFriends { search: waiting } = &e[0] else { panic!("{e:?}") };
        let waiting = waiting.clone();
        mm.handle(0.0, Input::Call(MatchmakerCall::Search { search: search("b", JoinRole::Master, 1, None) }));
        // a and b hold both places, though a is not in the pool yet.
        let e = mm.handle(0.0, Input::Call(MatchmakerCall::Search { search: search("c", JoinRole::Master, 1, None) }));
        assert!(e.contains(&Effect::Respond { status: POOL_FULL_STATUS, body: "too many sessions searching".into() }));
        mm.handle(1.0, Input::Friends { search: waiting, result: Ok(HashSet::new()) });
        assert!(mm.pool().contains("a"));
        mm.handle(2.0, Input::Call(MatchmakerCall::Cancel { sid: "a".into() }));
        // Cached now: no second fetch within the TTL, a fetch after it.
        let e =
            mm.handle(3.0, Input::Call(MatchmakerCall::Search { search: search("a", JoinRole::Master, 1, Some("7")) }));
        assert!(!e.iter().any(|e| matches!(e, Effect::FetchFriends { .. })));
        mm.handle(4.0, Input::Call(MatchmakerCall::Cancel { sid: "a".into() }));
        let e = mm.handle(
            FRIENDS_TTL_MS + 2.0,
            Input::Call(MatchmakerCall::Search { search: search("a", JoinRole::Master, 1, Some("7")) }),
        );
        assert!(e.iter().any(|e| matches!(e, Effect::FetchFriends { .. })));
    }

    #[test]
    fn the_friends_cache_is_bounded() {
        let mut mm = core();
        for i in 0..(FRIENDS_CACHE_ENTRIES + 50) {
            mm.remember_friends(i as f64, i.to_string(), FRIENDS_TTL_MS, HashSet::new());
        }
        assert_eq!(mm.friends.len(), FRIENDS_CACHE_ENTRIES);
        assert!(!mm.friends.contains_key("0"));
    }
}
