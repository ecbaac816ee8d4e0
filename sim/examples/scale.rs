//! The load model of the single Matchmaker (`npm run scale`): N concurrent
//! sessions with churn, run on the simulator (the real cores, the edge
//! network's latencies, no faults) for a few simulated minutes. It reports
//! the calls per second into every kind of object (p50, p99 and max over 1 s
//! windows), how long matchmaking takes, and how far `/stats` is from the
//! truth while sessions churn and once they stop.
//!
//! `cargo run --release -p askutron-sim --example scale -- --sessions 1000,10000,100000`
//!
//! Options: `--sessions N[,N...]` (default 100000; `--curve` is
//! 1000,10000,100000), `--design today|before|both` (default both: the two
//! accountings of one run), `--aggregators N|auto` (leaves; default: the
//! settings' 1,024; `auto` is one leaf per 3,125 sessions), `--minutes M` (measured, default
//! 3), `--warmup S` (seconds of ramp-up, default 60), `--search-share F`
//! (default 0.3), `--stats-queries F` (host `/stats` queries per session,
//! default 0), `--seed S`.
//!
//! Users are driven by an event schedule (a heap of actions by time)
//! interleaved with the simulator's own events in time order: `sim.advance`
//! up to the next action, then the action (`host_unsettled`,
//! `client_unsettled`, `send_unsettled`, `close_unsettled`).

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet};
use std::time::Instant;

use askutron_core::record::SessionRecord;
use askutron_core::settings::Settings;
use askutron_core::stats::RelayStats;
use askutron_sim::meter::{Design, Kind, Meter};
use askutron_sim::rng::Rng;
use askutron_sim::{check, Config, Network, Sim, Sock};

const SEC: f64 = 1000.0;
const MIN: f64 = 60_000.0;
/// Leaves per session for `--aggregators auto` (32 at 100,000).
const SESSIONS_PER_LEAF: usize = 3125;
/// `/stats` is compared with the truth this often while sessions churn.
const SAMPLE_MS: f64 = 10.0 * SEC;
/// After the churn stops, `/stats` must be exact after this long.
const QUIET_MS: f64 = 5.0 * SEC;
/// Sessions settle this long after the ramp before the meter starts.
const SETTLE_MS: f64 = 30.0 * SEC;

/// What the users do. Every figure is printed with the results.
#[derive(Debug, Clone, Copy)]
struct Model {
    /// A session lasts this long (uniform, minutes); then its host leaves and
    /// a new session takes its place (N stays constant).
    lifetime_min: (f64, f64),
    /// Seats per session (uniform): players that come and go in it.
    seats: (usize, usize),
    /// A client stays this long on average (exponential, minutes) ...
    stay_min: f64,
    /// ... and its seat is taken again after this long on average (exponential, s).
    refill_s: f64,
    /// New sessions' players arrive within this long (uniform, s).
    arrive_s: f64,
    /// Share of sessions that use matchmaking, once, ...
    search_share: f64,
    /// ... at an age uniform in [0, this] minutes.
    search_by_min: f64,
    /// A search not over after this long (uniform, s) is closed
    /// (`/close-session`): a master stops waiting for more, a lone one gives up.
    wait_s: (f64, f64),
    /// Shares of `/join-session master` and `/join-session slave`; the rest
    /// take either role.
    master_share: f64,
    slave_share: f64,
    /// Share of searches in the `ghostMode=true` pool.
    ghost_share: f64,
    /// Share of searches with a `steamUserId` (the Matchmaker fetches its
    /// friends from the simulator's fake Steam).
    steam_share: f64,
    steam_friends: usize,
    /// Share of sessions whose host drops once and takes over with its
    /// secret after a while (uniform, s).
    reconnect_share: f64,
    reconnect_after_s: (f64, f64),
    /// `/stats` queries per session (at a uniform time in its life).
    stats_queries: f64,
}

impl Model {
    const DEFAULT: Model = Model {
        lifetime_min: (10.0, 40.0),
        seats: (1, 6),
        stay_min: 5.0,
        refill_s: 30.0,
        arrive_s: 60.0,
        search_share: 0.3,
        search_by_min: 3.0,
        wait_s: (60.0, 120.0),
        master_share: 0.15,
        slave_share: 0.15,
        ghost_share: 0.2,
        steam_share: 0.4,
        steam_friends: 20,
        reconnect_share: 0.1,
        reconnect_after_s: (2.0, 20.0),
        stats_queries: 0.0,
    };

    fn mean_lifetime_ms(&self) -> f64 {
        (self.lifetime_min.0 + self.lifetime_min.1) / 2.0 * MIN
    }

    fn occupancy(&self) -> f64 {
        let stay = self.stay_min * MIN;
        stay / (stay + self.refill_s * SEC)
    }

    fn mean_seats(&self) -> f64 {
        (self.seats.0 + self.seats.1) as f64 / 2.0
    }

    /// Searches per second at `n` sessions.
    fn searches_per_s(&self, n: usize) -> f64 {
        self.search_share * n as f64 / (self.mean_lifetime_ms() / SEC)
    }

    /// Client connects and closes per second per session, in steady state.
    fn client_events_per_s(&self) -> f64 {
        self.mean_seats() * 2.0 / ((self.stay_min * MIN + self.refill_s * SEC) / SEC)
    }

    fn describe(&self, sessions: &[usize]) -> Vec<String> {
        let life = self.mean_lifetime_ms() / MIN;
        let mut lines = vec![
            format!(
                "sessions: N concurrent; each lasts {:.0}-{:.0} min (uniform, mean {life:.0} min), then its host closes and a new session takes its place (N/{:.0} s new and ending sessions per second); a session waits the protocol's reconnect window for its host",
                self.lifetime_min.0,
                self.lifetime_min.1,
                self.mean_lifetime_ms() / SEC
            ),
            format!(
                "clients: {}-{} seats per session (uniform); a client stays {:.0} min on average (exponential) and its seat fills again after {:.0} s on average: {:.1} clients per session, {:.3} connects+closes per session per second (a figure change every {:.0} s)",
                self.seats.0,
                self.seats.1,
                self.stay_min,
                self.refill_s,
                self.mean_seats() * self.occupancy(),
                self.client_events_per_s(),
                1.0 / self.client_events_per_s()
            ),
            format!(
                "hosts: {:.0}% drop once and take over with their secret after {:.0}-{:.0} s",
                self.reconnect_share * 100.0,
                self.reconnect_after_s.0,
                self.reconnect_after_s.1
            ),
            format!(
                "matchmaking: {:.0}% of sessions search once, within their first {:.0} min: {:.2} searches/s per 1,000 sessions ({})",
                self.search_share * 100.0,
                self.search_by_min,
                self.searches_per_s(1000),
                sessions.iter().map(|&n| format!("{:.1}/s at {}", self.searches_per_s(n), thousands(n))).collect::<Vec<_>>().join(", ")
            ),
            format!(
                "searches: {:.0}% master, {:.0}% slave, the rest either role; {:.0}% in the ghostMode=true pool; {:.0}% with a steamUserId ({} friends each, fetched from the fake Steam); a search not over after {:.0}-{:.0} s is closed (/close-session: a master stops waiting for more, a lone one gives up)",
                self.master_share * 100.0,
                self.slave_share * 100.0,
                self.ghost_share * 100.0,
                self.steam_share * 100.0,
                self.steam_friends,
                self.wait_s.0,
                self.wait_s.1
            ),
            format!(
                "not modelled: game traffic (messages within a session or a linked group; it never reaches the Matchmaker or the aggregators); keepAlive; /stats queries from hosts{}",
                if self.stats_queries > 0.0 { format!(" (here: {} per session)", self.stats_queries) } else { " (--stats-queries)".into() }
            ),
        ];
        lines.push(
            "why: a game's session (a lobby, a round) lasts tens of minutes; players come and go every few minutes; matchmaking is how a minority of sessions find each other, once, near their start, and a master waits a minute or two for more players before it plays with what it has".into(),
        );
        lines
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Act {
    Start { initial: bool },
    Join(u8),
    Leave(u8),
    Search,
    StopWaiting,
    Drop,
    Back,
    End,
    StatsQuery,
}

#[derive(Debug, Clone, Copy)]
struct Ev {
    at: f64,
    seq: u64,
    slot: u32,
    gen: u32,
    act: Act,
}

impl PartialEq for Ev {
    fn eq(&self, other: &Self) -> bool {
        self.seq == other.seq
    }
}
impl Eq for Ev {}
impl PartialOrd for Ev {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Ev {
    fn cmp(&self, other: &Self) -> Ordering {
        self.at.total_cmp(&other.at).then(self.seq.cmp(&other.seq))
    }
}

/// One of the N places a session lives in; a new session takes it when the
/// last one's host leaves.
#[derive(Debug, Default)]
struct Slot {
    gen: u32,
    sid: String,
    secret: String,
    host: Option<Sock>,
    seats: Vec<Option<Sock>>,
    ends_at: f64,
    steam: Option<u64>,
    searching: bool,
    /// It sent `/join-session`: its host's inbox is read for link lines.
    searched: bool,
    slave: bool,
}

#[derive(Debug, Default, Clone, Copy)]
struct Err4 {
    sum: [f64; 4],
    max: [u64; 4],
    truth_sum: [f64; 4],
    samples: usize,
}

impl Err4 {
    fn add(&mut self, got: &RelayStats, truth: &RelayStats) {
        let g = figures(got);
        let t = figures(truth);
        for i in 0..4 {
            let e = g[i].abs_diff(t[i]);
            self.sum[i] += e as f64;
            self.max[i] = self.max[i].max(e);
            self.truth_sum[i] += t[i] as f64;
        }
        self.samples += 1;
    }
}

fn figures(s: &RelayStats) -> [u64; 4] {
    [s.num_hosts_online, s.num_hosts_looking_for_session, s.num_clients_online, s.num_players]
}
const FIGURES: [&str; 4] = ["numHostsOnline", "numHostsLookingForSession", "numClientsOnline", "numPlayers"];

/// What one run measured.
struct Run {
    sessions: usize,
    aggregators: u32,
    wall_s: f64,
    ramp_wall_s: f64,
    events: u64,
    /// (p50, p99, max) per kind, today and before.
    today: BTreeMap<Kind, (u32, u32, u32)>,
    before: BTreeMap<Kind, (u32, u32, u32)>,
    mm_mean_today: f64,
    mm_mean_before: f64,
    searches: u64,
    measured_s: f64,
    mm_calls: u64,
    /// Calls the Matchmaker made (steps to sessions, its count to the root).
    mm_sent: u64,
    link_latency: Vec<f64>,
    first_line: Vec<f64>,
    gave_up: u64,
    err: Err4,
    quiet: (RelayStats, RelayStats),
    healed: Result<(), String>,
    looking_mean: f64,
    hosts_mean: f64,
}

struct Driver {
    model: Model,
    n: usize,
    rng: Rng,
    sim: Sim,
    heap: BinaryHeap<Reverse<Ev>>,
    seq: u64,
    slots: Vec<Slot>,
    /// When each session's search began (its `/join-session`).
    joined: HashMap<String, f64>,
    /// Sessions that heard their first link line.
    heard: HashSet<String>,
    measure: (f64, f64),
    link_latency: Vec<f64>,
    first_line: Vec<f64>,
    searches: u64,
    gave_up: u64,
}

impl Driver {
    fn push(&mut self, at: f64, slot: u32, act: Act) {
        self.seq += 1;
        let gen = self.slots[slot as usize].gen;
        self.heap.push(Reverse(Ev { at, seq: self.seq, slot, gen, act }));
    }

    fn exp(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.rng.unit()).ln()
    }

    fn measuring(&self, at: f64) -> bool {
        at >= self.measure.0 && at < self.measure.1
    }

    /// A new session in `slot`. An initial one is drawn as if the relay had
    /// been running for long: its age by the length-biased lifetime, its
    /// clients in their steady state.
    fn start(&mut self, slot: u32, initial: bool) {
        let now = self.sim.now;
        let m = self.model;
        let (life, age) = if initial {
            // Length-biased: a long session is more likely to be under way.
            let life = loop {
                let l = self.rng.between(m.lifetime_min.0, m.lifetime_min.1) * MIN;
                if self.rng.unit() * m.lifetime_min.1 * MIN <= l {
                    break l;
                }
            };
            (life, self.rng.unit() * life)
        } else {
            (self.rng.between(m.lifetime_min.0, m.lifetime_min.1) * MIN, 0.0)
        };
        let host = self.sim.host_unsettled("").expect("a new session opens");
        let frames = self.sim.frames(&host);
        let secret = frames.get(1).and_then(|f| f.strip_prefix("secret: ")).expect("secret line").to_string();
        let seats = self.rng.between(m.seats.0 as f64, m.seats.1 as f64 + 1.0).floor() as usize;
        let seats = seats.clamp(m.seats.0, m.seats.1);
        let steam = self.rng.chance(m.steam_share).then(|| self.rng.below(2 * self.n.max(1)) as u64);
        {
            let s = &mut self.slots[slot as usize];
            s.gen += 1;
            s.sid = host.sid.clone();
            s.secret = secret;
            s.host = Some(host);
            s.seats = vec![None; seats];
            s.ends_at = now + (life - age);
            s.steam = steam;
            s.searching = false;
            s.searched = false;
            s.slave = false;
        }
        let ends = now + (life - age);
        for seat in 0..seats {
            let at = if !initial {
                now + self.rng.between(0.0, m.arrive_s) * SEC
            } else if self.rng.chance(m.occupancy()) {
                now + self.rng.between(0.0, 5.0) * SEC
            } else {
                now + self.exp(m.refill_s * SEC)
            };
            if at < ends {
                self.push(at, slot, Act::Join(seat as u8));
            }
        }
        if self.rng.chance(m.search_share) {
            let when = self.rng.unit() * m.search_by_min * MIN;
            if when >= age && now + when - age < ends {
                self.push(now + when - age, slot, Act::Search);
            }
        }
        // Whatever happens at a time of the session's life happens only if
        // that time is still ahead (an initial session is `age` old).
        if self.rng.chance(m.reconnect_share) && life > 60.0 * SEC {
            let when = self.rng.between(0.0, life - 30.0 * SEC);
            if when >= age {
                self.push(now + when - age, slot, Act::Drop);
            }
        }
        if m.stats_queries > 0.0 {
            let mut q = m.stats_queries;
            while q > 0.0 {
                if self.rng.chance(q.min(1.0)) {
                    let when = self.rng.unit() * life;
                    if when >= age {
                        self.push(now + when - age, slot, Act::StatsQuery);
                    }
                }
                q -= 1.0;
            }
        }
        self.push(ends, slot, Act::End);
    }

    /// Reads what the host heard: the link lines, with their times.
    fn drain(&mut self, slot: u32) {
        let s = &self.slots[slot as usize];
        // Only a session that searched hears link lines; the others' inboxes
        // are left alone (reading them would cost a lookup per action).
        if !s.searched {
            return;
        }
        let Some(host) = s.host.clone() else { return };
        let sid = s.sid.clone();
        let Some(state) = self.sim.sessions.get_mut(&host.sid).and_then(|o| o.sockets.get_mut(&host.token)) else {
            return;
        };
        let lines: Vec<(String, f64)> = state.inbox.drain(..).map(|r| (r.text, r.at)).collect();
        for (text, at) in lines {
            let (partner, set_master) = if let Some(p) = text.strip_prefix("!set-master: ") {
                (p, true)
            } else if let Some(p) = text.strip_prefix("!added-slave: ") {
                (p, false)
            } else {
                continue;
            };
            if set_master {
                self.slots[slot as usize].slave = true;
            }
            let (Some(&mine), Some(&theirs)) = (self.joined.get(&sid), self.joined.get(partner)) else { continue };
            if self.measuring(at) {
                // From the moment the match was possible: the later of the
                // two `/join-session`s.
                self.link_latency.push(at - mine.max(theirs));
                if !self.heard.contains(&sid) {
                    self.first_line.push(at - mine);
                }
            }
            self.heard.insert(sid.clone());
        }
    }

    fn act(&mut self, ev: Ev) {
        let i = ev.slot as usize;
        if let Act::Start { initial } = ev.act {
            return self.start(ev.slot, initial);
        }
        if self.slots[i].gen != ev.gen {
            return; // an earlier session's
        }
        let now = self.sim.now;
        let m = self.model;
        self.drain(ev.slot);
        match ev.act {
            Act::Start { .. } => unreachable!(),
            Act::Join(seat) => {
                let sid = self.slots[i].sid.clone();
                if self.slots[i].seats[seat as usize].is_some() {
                    return;
                }
                match self.sim.client_unsettled(&sid, "") {
                    Ok(c) if c.token != 0 => {
                        self.slots[i].seats[seat as usize] = Some(c);
                        let at = now + self.exp(m.stay_min * MIN);
                        if at < self.slots[i].ends_at {
                            self.push(at, ev.slot, Act::Leave(seat));
                        }
                    }
                    // Refused (the group is full): the seat tries again later.
                    Ok(_) => {
                        let at = now + self.exp(m.refill_s * SEC);
                        if at < self.slots[i].ends_at {
                            self.push(at, ev.slot, Act::Join(seat));
                        }
                    }
                    Err(_) => {}
                }
            }
            Act::Leave(seat) => {
                if let Some(c) = self.slots[i].seats[seat as usize].take() {
                    self.sim.close_unsettled(&c, 1000);
                }
                let at = now + self.exp(m.refill_s * SEC);
                if at < self.slots[i].ends_at {
                    self.push(at, ev.slot, Act::Join(seat));
                }
            }
            Act::Search => {
                let Some(host) = self.slots[i].host.clone() else { return };
                let mut command = String::from("/join-session");
                let r = self.rng.unit();
                if r < m.master_share {
                    command.push_str(" master");
                } else if r < m.master_share + m.slave_share {
                    command.push_str(" slave");
                }
                if self.rng.chance(m.ghost_share) {
                    command.push_str(" ghostMode=true");
                }
                if let Some(user) = self.slots[i].steam {
                    let id = steam_id(user);
                    command.push_str(&format!(" steamUserId={id}"));
                    if !self.sim.steam.contains_key(&id) {
                        let mut friends_rng = Rng::new(user ^ 0x0f81_e4d5);
                        let friends = (0..m.steam_friends)
                            .map(|_| steam_id(friends_rng.below(2 * self.n.max(1)) as u64))
                            .collect();
                        self.sim.steam.insert(id, friends);
                    }
                }
                self.sim.send_unsettled(&host, &command);
                self.joined.insert(self.slots[i].sid.clone(), now);
                self.slots[i].searching = true;
                self.slots[i].searched = true;
                if self.measuring(now) {
                    self.searches += 1;
                }
                let at = now + self.rng.between(m.wait_s.0, m.wait_s.1) * SEC;
                if at < self.slots[i].ends_at {
                    self.push(at, ev.slot, Act::StopWaiting);
                }
            }
            Act::StopWaiting => {
                let s = &mut self.slots[i];
                if !s.searching || s.slave {
                    return;
                }
                s.searching = false;
                let Some(host) = s.host.clone() else { return };
                if !self.heard.contains(&s.sid) && self.measuring(now) {
                    self.gave_up += 1;
                }
                self.sim.send_unsettled(&host, "/close-session");
            }
            Act::Drop => {
                if let Some(host) = self.slots[i].host.take() {
                    self.sim.close_unsettled(&host, 1006);
                }
                // The relay stops a search whose host left.
                self.slots[i].searching = false;
                let after = self.rng.between(m.reconnect_after_s.0, m.reconnect_after_s.1) * SEC;
                if now + after < self.slots[i].ends_at {
                    self.push(now + after, ev.slot, Act::Back);
                }
            }
            Act::Back => {
                let query = format!("id={}&secret={}", self.slots[i].sid, self.slots[i].secret);
                if let Ok(host) = self.sim.host_unsettled(&query) {
                    // The take-over's replay (its link lines are not news).
                    self.sim.frames(&host);
                    self.slots[i].host = Some(host);
                }
            }
            Act::StatsQuery => {
                if let Some(host) = self.slots[i].host.clone() {
                    self.sim.send_unsettled(&host, "/stats");
                }
            }
            Act::End => {
                let seats = std::mem::take(&mut self.slots[i].seats);
                for c in seats.into_iter().flatten() {
                    self.sim.close_unsettled(&c, 1000);
                }
                if let Some(host) = self.slots[i].host.take() {
                    self.sim.close_unsettled(&host, 1000);
                }
                self.start(ev.slot, false);
            }
        }
    }

    /// `/stats` as the root answers it, and the truth (as
    /// `check::true_stats` counts it, without copying every record).
    fn stats_now(&mut self) -> (RelayStats, RelayStats) {
        let truth = self.truth();
        // `Sim::stats` asks the root directly: not a metered call.
        let got: RelayStats = serde_json::from_str(&self.sim.stats()).expect("stats are JSON");
        (got, truth)
    }

    /// The figures as they are: `check::true_stats` over the live records,
    /// with the searching hosts as `check::healed` counts them (a search and
    /// no master). `check_truth` compares the two.
    fn truth(&self) -> RelayStats {
        let mut t = RelayStats::default();
        for slot in self.sim.sessions.values() {
            let stored;
            let record = match &slot.core {
                Some(core) if !core.is_unreadable() => core.record(),
                _ => {
                    stored = slot.session();
                    stored.as_ref()
                }
            };
            let Some(record) = record else { continue };
            let host = slot.sockets.values().any(|s| s.is_open() && s.attachment.as_ref().is_some_and(|a| a.is_host()));
            let clients: BTreeSet<u32> = slot
                .sockets
                .values()
                .filter(|s| s.is_open())
                .filter_map(|s| s.attachment.as_ref().and_then(|a| a.client_id()))
                .collect();
            t.num_hosts_online += host as u64;
            t.num_clients_online += clients.len() as u64;
            t.num_players += if host { clients.len() as u64 } else { 0 };
            t.num_hosts_looking_for_session += (record.group.search.is_some() && record.group.master.is_none()) as u64;
        }
        t
    }

    /// `check::true_stats` itself (it copies every record: used once).
    fn check_truth(&self) -> RelayStats {
        let records: BTreeMap<String, SessionRecord> =
            self.sim.sessions.keys().filter_map(|sid| self.sim.record(sid).map(|r| (sid.clone(), r))).collect();
        let searching = records.values().filter(|r| r.group.search.is_some() && r.group.master.is_none()).count();
        check::true_stats(&self.sim, &records, searching)
    }
}

fn steam_id(user: u64) -> String {
    (76_561_198_000_000_000u64 + user).to_string()
}

fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Show {
    Today,
    Before,
    Both,
}

#[derive(Debug, Clone)]
struct Opts {
    sessions: Vec<usize>,
    show: Show,
    /// `None`: the settings' default; `Some(0)`: one leaf per 3,125 sessions.
    aggregators: Option<u32>,
    minutes: f64,
    warmup_s: f64,
    seed: u64,
}

fn parse() -> (Opts, Model) {
    let mut opts =
        Opts { sessions: vec![100_000], show: Show::Both, aggregators: None, minutes: 3.0, warmup_s: 60.0, seed: 1 };
    let mut model = Model::DEFAULT;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    let usage = "usage: scale [--sessions N[,N...]] [--curve] [--design today|before|both] [--aggregators N|auto] [--minutes M] [--warmup S] [--search-share F<=1] [--stats-queries F] [--seed S]";
    while i < args.len() {
        let (key, inline) = match args[i].split_once('=') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None => (args[i].clone(), None),
        };
        let mut value = || -> String {
            if let Some(v) = inline.clone() {
                return v;
            }
            i += 1;
            args.get(i).cloned().unwrap_or_else(|| panic!("{key} needs a value\n{usage}"))
        };
        let number =
            |v: String| -> f64 { v.replace('_', "").parse().unwrap_or_else(|_| panic!("not a number: {v}\n{usage}")) };
        match key.as_str() {
            "--sessions" => {
                opts.sessions = value()
                    .split(',')
                    .filter(|v| !v.is_empty())
                    .map(|v| {
                        let v = v.replace('_', "").to_lowercase();
                        match v.strip_suffix('k') {
                            Some(k) => (k.parse::<f64>().expect("a number") * 1000.0) as usize,
                            None => v.parse().unwrap_or_else(|_| panic!("not a number: {v}\n{usage}")),
                        }
                    })
                    .collect()
            }
            "--curve" => opts.sessions = vec![1_000, 10_000, 100_000],
            "--design" => {
                opts.show = match value().as_str() {
                    "today" | "after" | "now" => Show::Today,
                    "before" | "1.1.0" => Show::Before,
                    "both" => Show::Both,
                    other => panic!("unknown design {other}\n{usage}"),
                }
            }
            "--aggregators" => {
                let v = value();
                opts.aggregators = Some(if v == "auto" { 0 } else { number(v) as u32 });
            }
            "--minutes" => opts.minutes = number(value()),
            "--warmup" => opts.warmup_s = number(value()),
            "--seed" => opts.seed = number(value()) as u64,
            "--search-share" => model.search_share = number(value()),
            "--stats-queries" => model.stats_queries = number(value()),
            "-h" | "--help" => {
                println!("{usage}");
                std::process::exit(0);
            }
            other => panic!("unknown option {other}\n{usage}"),
        }
        i += 1;
    }
    assert!(!opts.sessions.is_empty() && opts.sessions.iter().all(|&n| n > 0), "{usage}");
    assert!((0.0..=1.0).contains(&model.search_share), "--search-share is a share of sessions (0 to 1)\n{usage}");
    (opts, model)
}

fn leaves_for(opts: &Opts, n: usize) -> u32 {
    match opts.aggregators {
        None => Settings::default().aggregators,
        Some(0) => n.div_ceil(SESSIONS_PER_LEAF).max(1) as u32,
        Some(a) => a,
    }
}

fn run(n: usize, model: Model, opts: &Opts) -> Run {
    let wall = Instant::now();
    let aggregators = leaves_for(opts, n);
    let settings = Settings { aggregators, ..Settings::default() };
    let mut config = Config::new(settings);
    config.seed = opts.seed;
    config.network = Network::EDGE;
    let mut sim = Sim::new(config);
    sim.keep_history = false;
    let t0 = sim.now;
    let ramp = (opts.warmup_s * SEC).max(1.0);
    let from = ((t0 + ramp + SETTLE_MS) / SEC).ceil() * SEC;
    let to = from + (opts.minutes * MIN / SEC).round().max(1.0) * SEC;
    let mut meter = Meter::new(from);
    meter.also = Some(Box::new(Meter::with_design(from, Design::Before)));
    sim.meter = Some(meter);
    let mut d = Driver {
        model,
        n,
        rng: Rng::new(opts.seed ^ 0x5ca1e),
        sim,
        heap: BinaryHeap::new(),
        seq: 0,
        slots: (0..n).map(|_| Slot::default()).collect(),
        joined: HashMap::new(),
        heard: HashSet::new(),
        measure: (from, to),
        link_latency: Vec::new(),
        first_line: Vec::new(),
        searches: 0,
        gave_up: 0,
    };
    for slot in 0..n as u32 {
        let at = t0 + d.rng.unit() * ramp;
        d.push(at, slot, Act::Start { initial: true });
    }
    let mut err = Err4::default();
    let (mut looking, mut hosts) = (0.0, 0.0);
    let mut next_sample = from + SAMPLE_MS / 2.0;
    let mut ramp_wall = 0.0;
    let mut actions = 0u64;
    loop {
        let next_ev = d.heap.peek().map_or(f64::INFINITY, |Reverse(e)| e.at);
        let t = next_ev.min(next_sample);
        if t >= to {
            break;
        }
        d.sim.advance((t - d.sim.now).max(0.0));
        if ramp_wall == 0.0 && d.sim.now >= from {
            ramp_wall = wall.elapsed().as_secs_f64();
        }
        if t == next_sample && t < next_ev {
            let (got, truth) = d.stats_now();
            err.add(&got, &truth);
            looking += truth.num_hosts_looking_for_session as f64;
            hosts += truth.num_hosts_online as f64;
            next_sample += SAMPLE_MS;
            continue;
        }
        let Reverse(ev) = d.heap.pop().expect("peeked");
        d.act(ev);
        actions += 1;
        if actions.is_multiple_of(10_000) {
            // Nobody reads them here: memory, not behaviour.
            d.sim.log.clear();
            d.sim.refused.clear();
        }
    }
    // The last full window, then the meter stops.
    d.sim.advance((to - 0.001 - d.sim.now).max(0.0));
    for slot in 0..n as u32 {
        d.drain(slot);
    }
    let mut meter = d.sim.meter.take().expect("metered");
    meter.finish();
    let mut before = *meter.also.take().expect("kept alongside");
    let kinds = [Kind::Matchmaker, Kind::Root, Kind::Branch, Kind::Leaf, Kind::Session];
    let today_p: BTreeMap<Kind, (u32, u32, u32)> = kinds.iter().map(|&k| (k, meter.percentiles(k))).collect();
    let before_p: BTreeMap<Kind, (u32, u32, u32)> = kinds.iter().map(|&k| (k, before.percentiles(k))).collect();
    // The churn stops: a few seconds later `/stats` must be exact.
    d.sim.advance(QUIET_MS);
    let quiet = d.stats_now();
    let checked = d.check_truth();
    assert_eq!(quiet.1, checked, "the load model's truth is check::true_stats'");
    let healed = check::healed(&mut d.sim);
    let samples = err.samples.max(1) as f64;
    Run {
        sessions: n,
        aggregators,
        wall_s: wall.elapsed().as_secs_f64(),
        ramp_wall_s: ramp_wall,
        events: d.sim.events,
        today: today_p,
        before: before_p,
        mm_mean_today: meter.mean(Kind::Matchmaker),
        mm_mean_before: before.mean(Kind::Matchmaker),
        searches: d.searches,
        measured_s: (to - from) / SEC,
        mm_calls: meter.total.get(&Kind::Matchmaker).copied().unwrap_or(0),
        mm_sent: meter.sent.get(&Kind::Matchmaker).copied().unwrap_or(0),
        link_latency: d.link_latency,
        first_line: d.first_line,
        gave_up: d.gave_up,
        err,
        quiet,
        healed,
        looking_mean: looking / samples,
        hosts_mean: hosts / samples,
    }
}

fn pct(values: &mut [f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    values[((values.len() as f64 - 1.0) * q).round() as usize]
}

fn triple(t: (u32, u32, u32)) -> String {
    format!("{}/{}/{}", t.0, t.1, t.2)
}

fn report(r: &mut Run, show: Show) {
    println!();
    println!(
        "== {} sessions ({} leaf aggregators): wall {:.1} s ({:.1} s of it the ramp-up), {:.1}M simulator events",
        thousands(r.sessions),
        r.aggregators,
        r.wall_s,
        r.ramp_wall_s,
        r.events as f64 / 1e6
    );
    println!(
        "   measured {:.0} s of simulated time: {:.1} searches/s started, hosts online {:.0} and looking {:.1} on average",
        r.measured_s,
        r.searches as f64 / r.measured_s,
        r.hosts_mean,
        r.looking_mean
    );
    println!("   calls/s into one object, p50/p99/max of 1 s windows:");
    println!(
        "   {:<24} {:>14} {:>14} {:>14} {:>14} {:>14}",
        "design", "matchmaker", "root", "branch", "leaf", "session"
    );
    let row = |name: &str, p: &BTreeMap<Kind, (u32, u32, u32)>, before: bool| {
        let agg = |k| if before { "-".to_string() } else { triple(p[&k]) };
        println!(
            "   {:<24} {:>14} {:>14} {:>14} {:>14} {:>14}",
            name,
            triple(p[&Kind::Matchmaker]),
            agg(Kind::Root),
            agg(Kind::Branch),
            agg(Kind::Leaf),
            triple(p[&Kind::Session])
        );
    };
    if show != Show::Before {
        row("today", &r.today, false);
    }
    if show != Show::Today {
        row("before (1.1.0, approx.)", &r.before, true);
    }
    let per_search = r.mm_calls as f64 / r.searches.max(1) as f64;
    println!(
        "   calls into the Matchmaker: {:.1}/s on average, {:.2} per search ({} calls, {} searches; today); it makes {:.1} calls/s itself ({:.2} per search: the links' steps to sessions, its count to the root), whose answers it also handles",
        r.mm_mean_today,
        per_search,
        r.mm_calls,
        r.searches,
        r.mm_sent as f64 / r.measured_s,
        r.mm_sent as f64 / r.searches.max(1) as f64
    );
    let n = r.link_latency.len();
    let (p50, p99) = (pct(&mut r.link_latency, 0.5), pct(&mut r.link_latency, 0.99));
    let (w50, w99) = (pct(&mut r.first_line, 0.5), pct(&mut r.first_line, 0.99));
    println!(
        "   matchmaking: /join-session to !added-slave:/!set-master: p50 {:.2} s, p99 {:.2} s ({} lines; from the later of the two /join-session, i.e. once a partner was there)",
        p50 / SEC,
        p99 / SEC,
        n
    );
    println!(
        "                a search's first link line after its own /join-session (includes waiting for a partner): p50 {:.2} s, p99 {:.2} s; {} searches closed unmatched",
        w50 / SEC,
        w99 / SEC,
        r.gave_up
    );
    let e = &r.err;
    let samples = e.samples.max(1) as f64;
    let parts: Vec<String> = (0..4)
        .map(|i| {
            format!(
                "{} mean {:.1} max {} (of {:.0})",
                FIGURES[i],
                e.sum[i] / samples,
                e.max[i],
                e.truth_sum[i] / samples
            )
        })
        .collect();
    println!(
        "   /stats error against the truth while churning ({} samples, every {:.0} s): {}",
        e.samples,
        SAMPLE_MS / SEC,
        parts.join("; ")
    );
    let (got, truth) = r.quiet;
    if got == truth {
        println!("   /stats {:.0} s after the churn stops: exact ({})", QUIET_MS / SEC, got.to_json());
    } else {
        println!(
            "   /stats {:.0} s after the churn stops: NOT exact: {} vs the truth {}",
            QUIET_MS / SEC,
            got.to_json(),
            truth.to_json()
        );
    }
    match &r.healed {
        Ok(()) => println!("   the simulator's healing checks (links, pool, obligations, /stats): ok"),
        Err(why) => println!("   the simulator's healing checks FAILED: {}", why.chars().take(400).collect::<String>()),
    }
}

fn main() {
    let (opts, model) = parse();
    println!("Askutron Relay load model: the single Matchmaker at scale (sim/examples/scale.rs)");
    println!(
        "simulator: real cores, edge network (Network::EDGE: 50-150 ms round trips between 8 colos), no faults, seed {}; {:.0} s ramp-up + {:.0} s settling, then {:.0} simulated minutes measured",
        opts.seed,
        opts.warmup_s,
        SETTLE_MS / SEC,
        opts.minutes
    );
    println!("assumptions:");
    for line in model.describe(&opts.sessions) {
        println!("  - {line}");
    }
    if opts.show != Show::Today {
        println!("  - 'before' is the 1.1.0 design (every session reported its figures to the Matchmaker itself) modelled by ACCOUNTING ONLY: the same run's calls from sessions to aggregators are counted as calls into the Matchmaker, calls between aggregators are dropped; the Matchmaker's other calls are today's");
    }
    let mut runs = Vec::new();
    for &n in &opts.sessions {
        let mut r = run(n, model, &opts);
        report(&mut r, opts.show);
        runs.push(r);
    }
    // The curve.
    println!();
    println!("curve: p99 calls/s into the busiest object of each kind (1 s windows)");
    println!(
        "  {:>9} {:>6} {:<24} {:>10} {:>6} {:>6} {:>6} {:>8} {:>10} {:>7}",
        "sessions", "leaves", "design", "matchmaker", "root", "branch", "leaf", "session", "mm p99 s", "wall s"
    );
    for r in runs.iter_mut() {
        let lat = pct(&mut r.link_latency, 0.99) / SEC;
        if opts.show != Show::Before {
            println!(
                "  {:>9} {:>6} {:<24} {:>10} {:>6} {:>6} {:>6} {:>8} {:>10.2} {:>7.1}",
                thousands(r.sessions),
                r.aggregators,
                "today",
                r.today[&Kind::Matchmaker].1,
                r.today[&Kind::Root].1,
                r.today[&Kind::Branch].1,
                r.today[&Kind::Leaf].1,
                r.today[&Kind::Session].1,
                lat,
                r.wall_s
            );
        }
        if opts.show != Show::Today {
            println!(
                "  {:>9} {:>6} {:<24} {:>10} {:>6} {:>6} {:>6} {:>8} {:>10.2} {:>7.1}",
                thousands(r.sessions),
                "-",
                "before (1.1.0, approx.)",
                r.before[&Kind::Matchmaker].1,
                "-",
                "-",
                "-",
                r.before[&Kind::Session].1,
                lat,
                r.wall_s
            );
        }
    }
    targets(&mut runs, &model);
    extrapolate(&runs, &model);
    let last = runs.iter().max_by_key(|r| r.sessions).expect("one run at least");
    let (p, what) = if opts.show == Show::Before { (&last.before, " (1.1.0 accounting)") } else { (&last.today, "") };
    println!(
        "busiest{what} at {}: matchmaker p99 {}/s, root p99 {}/s, branch p99 {}/s, leaf p99 {}/s, session p99 {}/s",
        thousands(last.sessions),
        p[&Kind::Matchmaker].1,
        p[&Kind::Root].1,
        p[&Kind::Branch].1,
        p[&Kind::Leaf].1,
        p[&Kind::Session].1
    );
}

/// Whether a load grew between two sizes (more than 20% and 2 calls/s:
/// windows of a few calls jitter).
fn grew(small: u32, large: u32) -> bool {
    large as f64 > small as f64 * 1.2 + 2.0
}

fn targets(runs: &mut [Run], model: &Model) {
    println!();
    println!("targets (today's design):");
    let mark = |ok: bool| if ok { "[met]    " } else { "[NOT met]" };
    match runs.iter().find(|r| r.sessions == 100_000) {
        Some(r) => {
            let mm = r.today[&Kind::Matchmaker].1;
            println!(
                "  {} at 100,000 sessions ({:.0} searches/s) the Matchmaker takes at most 300 calls/s (p99): {mm}/s",
                mark(mm <= 300),
                model.searches_per_s(100_000)
            );
            let others = [Kind::Root, Kind::Branch, Kind::Leaf, Kind::Session].map(|k| r.today[&k].1);
            println!(
                "  {} at 100,000 sessions every other object takes at most 100 calls/s (p99): root {}/s, branch {}/s, leaf {}/s, session {}/s",
                mark(others.iter().all(|&x| x <= 100)),
                others[0],
                others[1],
                others[2],
                others[3]
            );
        }
        None => println!("  [not measured] the 100,000-session targets (add 100000 to --sessions)"),
    }
    let small = runs.iter().find(|r| r.sessions == 10_000).map(|r| (r.today.clone(), r.aggregators));
    let large = runs.iter().find(|r| r.sessions == 100_000).map(|r| (r.today.clone(), r.aggregators));
    match (small, large) {
        (Some((s, sa)), Some((l, la))) => {
            let kinds =
                [(Kind::Root, "root"), (Kind::Branch, "branch"), (Kind::Leaf, "leaf"), (Kind::Session, "session")];
            let grown: Vec<&str> = kinds.iter().filter(|(k, _)| grew(s[k].1, l[k].1)).map(|(_, n)| *n).collect();
            let detail: Vec<String> = kinds.iter().map(|(k, n)| format!("{n} {} -> {}", s[k].1, l[k].1)).collect();
            println!(
                "  {} from 10,000 to 100,000 sessions no object's load but the Matchmaker's grows (p99, {} -> {} leaves): {}; matchmaker {} -> {}{}",
                mark(grown.is_empty()),
                sa,
                la,
                detail.join(", "),
                s[&Kind::Matchmaker].1,
                l[&Kind::Matchmaker].1,
                if grown.is_empty() { String::new() } else { format!(" (grows: {})", grown.join(", ")) }
            );
        }
        _ => println!("  [not measured] the 10,000 -> 100,000 growth (add 10000,100000 to --sessions)"),
    }
    for r in runs.iter_mut() {
        let p99 = pct(&mut r.link_latency, 0.99) / SEC;
        println!(
            "  {} matchmaking p99 <= 1 s of simulated time at {}: {p99:.2} s",
            mark(p99 <= 1.0),
            thousands(r.sessions)
        );
    }
}

fn extrapolate(runs: &[Run], model: &Model) {
    let Some(r) = runs.iter().max_by_key(|r| r.sessions) else { return };
    let per_search = r.mm_calls as f64 / r.searches.max(1) as f64;
    if r.searches == 0 || per_search == 0.0 {
        return;
    }
    let rate = 1000.0 / per_search;
    let burst = r.today[&Kind::Matchmaker].1 as f64 / r.mm_mean_today.max(1e-9);
    let life_s = model.mean_lifetime_ms() / SEC;
    println!();
    println!("extrapolation (NOT measured): the Matchmaker's documented ceiling of 1,000 calls/s");
    println!(
        "  measured at {}: {:.2} calls into the Matchmaker per search (the search, its renewals and its end, and sessions' ends that owe a cancel)",
        thousands(r.sessions),
        per_search
    );
    println!(
        "  => its mean load reaches 1,000 calls/s at about {:.0} searches/s; its p99 (x{:.2} the mean at {}) at about {:.0} searches/s",
        rate,
        burst,
        thousands(r.sessions),
        rate / burst
    );
    println!(
        "     with this model's search habits ({:.0}% of sessions search once in a {:.0} min life) that is about {} concurrent sessions (p99: {}); at 100,000 sessions, a search rate of {:.0}/s would be {:.1} searches per session life",
        model.search_share * 100.0,
        life_s / 60.0,
        thousands((rate * life_s / model.search_share) as usize),
        thousands((rate / burst * life_s / model.search_share) as usize),
        rate,
        rate * life_s / 100_000.0
    );
    if r.mm_mean_before > 0.0 {
        let scale = 1000.0 / r.mm_mean_before;
        println!(
            "  1.1.0 accounting: the Matchmaker would take {:.0} calls/s on average at {} sessions, reaching 1,000 calls/s at about {} sessions (linear in sessions)",
            r.mm_mean_before,
            thousands(r.sessions),
            thousands((r.sessions as f64 * scale) as usize)
        );
    }
}
