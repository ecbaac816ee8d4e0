//! The relay's invariants over random runs on the simulator (in the manner
//! of TigerBeetle's VOPR): users connect, talk, search, link, leave and take
//! over at random times, while calls between objects are under way, and the
//! physics are hostile (latency, lost, repeated and reordered calls, storage
//! faults, evictions, resets, a deploy with old and new code side by side).
//!
//! After every step: the safety checks of `askutron_sim::check::safety`.
//! After the run: faults stop, the relay heals (`check::heal`: links agree,
//! nothing left to deliver, the pool is exact, `/stats` is exact), and the
//! users' view is checked: every host knows exactly the ids it can address,
//! no message crossed from one group to another, none reached a host twice,
//! and none vanished without its sender or a host being told.
//!
//! `SIM_SEEDS=N` runs N seeds (default 2000) from `SIM_FIRST` (default 0);
//! `SIM_SEED=S` runs one, and
//! `SIM_TRACE=1` prints its every step. A failure prints its seed and the
//! steps that led to it.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use askutron_core::session::{Frame, EPHEMERAL};
use askutron_core::settings::Settings;
use askutron_sim::rng::Rng;
use askutron_sim::{check, Config, Faults, Network, ObjectId, Sim, Sock};

const SESSIONS: [&str; 4] = ["a", "b", "c", "d"];
const COMMANDS: [&str; 10] = [
    "/join-session",
    "/join-session master",
    "/join-session slave",
    "/join-session master private",
    "/join-session slave id=a",
    "/join-session id=b",
    "/close-session",
    "/leave-session",
    "/stats",
    "/join-session ghostMode=true",
];

/// What a sent message was, by its tag. Times here are the simulation's
/// event counts (`Sim::events`), which order events at one instant.
#[derive(Debug, Clone)]
struct Sent {
    /// The session whose socket sent it.
    sid: String,
    /// That session's secret then: a session that has since ended (or been
    /// made anew) took its queue with it, as the protocol says.
    secret: Option<String>,
    sock: Sock,
    at: f64,
    /// The simulated time it was sent at.
    when: f64,
    kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    /// A client's message (`c<k>`).
    Client,
    /// A host's `<n>: h<k>` to a client.
    ToClient,
    /// A host's `0: b<k>`.
    Broadcast,
}

/// What the test knows as a user of the relay, and what it saw of the links.
#[derive(Default)]
struct World {
    hosts: BTreeMap<String, Sock>,
    secrets: BTreeMap<String, String>,
    clients: BTreeMap<String, Vec<Sock>>,
    sent: BTreeMap<String, Sent>,
    counter: usize,
    /// Linked pairs `(master, slave)` as either side saw them, by when.
    links: HashMap<(String, String), Vec<(f64, f64)>>,
    open_links: BTreeMap<(String, String), f64>,
}

impl World {
    fn open_clients(&self, sim: &Sim, s: &str) -> Vec<Sock> {
        self.clients.get(s).map(|v| v.iter().filter(|c| sim.is_open(c)).cloned().collect()).unwrap_or_default()
    }

    fn tag(&mut self, prefix: char) -> String {
        self.counter += 1;
        format!("{prefix}{}", self.counter)
    }

    /// Remembers a frame tagged `tag` that `sock` is about to send, for the
    /// checks of where it went.
    fn note_sent(&mut self, sim: &Sim, tag: &str, sock: &Sock, secret: Option<String>, kind: Kind) {
        let sent = Sent {
            sid: sock.sid.clone(),
            secret,
            sock: sock.clone(),
            at: sim.events as f64 + 1.0,
            when: sim.now,
            kind,
        };
        self.sent.insert(tag.to_string(), sent);
    }

    /// Notes which sessions are linked now, from either side's record.
    fn observe(&mut self, sim: &Sim) {
        let mut now: BTreeSet<(String, String)> = BTreeSet::new();
        for sid in SESSIONS {
            let Some(record) = sim.record(sid) else { continue };
            if let Some(m) = record.group.confirmed_master() {
                now.insert((m.sid.clone(), sid.to_string()));
            }
            for s in &record.group.slaves {
                now.insert((sid.to_string(), s.sid.clone()));
            }
        }
        let ended: Vec<_> = self.open_links.keys().filter(|k| !now.contains(*k)).cloned().collect();
        for key in ended {
            let start = self.open_links.remove(&key).expect("open");
            self.links.entry(key).or_default().push((start, sim.events as f64));
        }
        for key in now {
            self.open_links.entry(key).or_insert(sim.events as f64);
        }
    }

    /// Whether `a` and `b` were linked (either way) at some time in `[from, to]`.
    fn linked_between(&self, a: &str, b: &str, from: f64, to: f64) -> bool {
        let pairs = [(a.to_string(), b.to_string()), (b.to_string(), a.to_string())];
        pairs.iter().any(|key| {
            let closed = self.links.get(key).into_iter().flatten().any(|&(s, e)| s <= to && e >= from);
            let open = self.open_links.get(key).is_some_and(|&s| s <= to);
            closed || open
        })
    }

    /// The master `slave` was linked to at `at`, and whether that link ended since.
    fn master_at(&self, slave: &str, at: f64) -> Option<(String, bool)> {
        for ((m, s), spans) in &self.links {
            if s == slave {
                if let Some(&(_, end)) = spans.iter().find(|&&(start, end)| start < at && end >= at) {
                    return Some((m.clone(), end >= at));
                }
            }
        }
        self.open_links.iter().find(|((_, s), &start)| s == slave && start < at).map(|((m, _), _)| (m.clone(), false))
    }

    /// Whether `a` and `b` were in one group at some time in `[from, to]`:
    /// linked, or both slaves of one master.
    fn grouped_between(&self, a: &str, b: &str, from: f64, to: f64) -> bool {
        a == b
            || self.linked_between(a, b, from, to)
            || SESSIONS.iter().any(|m| self.linked_between(a, m, from, to) && self.linked_between(b, m, from, to))
    }
}

#[derive(Debug, Clone, Copy)]
enum Action {
    Host { s: usize, reconnect: bool },
    TakeOver { s: usize },
    Client { s: usize, uuid: Option<usize> },
    ClientSend { s: usize, k: usize, big: bool },
    HostSend { s: usize, n: usize },
    Broadcast { s: usize },
    Command { s: usize, command: usize },
    CloseHost { s: usize },
    CloseClient { s: usize, k: usize },
    Binary { s: usize, k: usize },
    Wait { ms: f64 },
}

fn action(rng: &mut Rng) -> Action {
    let s = rng.below(SESSIONS.len());
    let k = rng.below(8);
    match rng.below(44) {
        0..=3 => Action::Host { s, reconnect: rng.chance(0.8) },
        4 => Action::TakeOver { s },
        5..=8 => Action::Client { s, uuid: rng.chance(0.5).then(|| rng.below(3)) },
        9..=16 => Action::ClientSend { s, k, big: rng.chance(0.03) },
        17..=20 => Action::HostSend { s, n: rng.below(12) },
        21..=22 => Action::Broadcast { s },
        23..=33 => Action::Command { s, command: rng.below(COMMANDS.len()) },
        34 => Action::CloseHost { s },
        35..=36 => Action::CloseClient { s, k },
        37 => Action::Binary { s, k },
        _ => Action::Wait {
            ms: if rng.chance(0.15) { rng.between(20_000.0, 130_000.0) } else { rng.between(1.0, 2_000.0) },
        },
    }
}

fn apply(sim: &mut Sim, world: &mut World, action: Action) {
    match action {
        Action::Host { s, reconnect } => {
            let sid = SESSIONS[s];
            if let Ok(h) = sim.host_unsettled(&format!("id={sid}&reconnect={reconnect}")) {
                let frames: Vec<String> = sim.state(&h).unwrap().history.iter().map(|r| r.text.clone()).collect();
                world.secrets.insert(sid.into(), frames[1].trim_start_matches("secret: ").into());
                world.hosts.insert(sid.into(), h);
            }
        }
        Action::TakeOver { s } => {
            let sid = SESSIONS[s];
            let Some(secret) = world.secrets.get(sid).cloned() else { return };
            if let Ok(h) = sim.host_unsettled(&format!("id={sid}&secret={secret}")) {
                world.hosts.insert(sid.into(), h);
            }
        }
        Action::Client { s, uuid } => {
            let sid = SESSIONS[s];
            let query = uuid.map(|u| format!("client=u{u}")).unwrap_or_default();
            if let Ok(c) = sim.client_unsettled(sid, &query) {
                if c.token != EPHEMERAL {
                    world.clients.entry(sid.into()).or_default().push(c);
                }
            }
        }
        Action::ClientSend { s, k, big } => {
            let open = world.open_clients(sim, SESSIONS[s]);
            if let Some(c) = open.get(k % open.len().max(1)).cloned() {
                let tag = world.tag('c');
                let text = if big { format!("{tag}:{}", "x".repeat(100_000)) } else { tag.clone() };
                sim.trace.note(sim.now, || format!("  {tag} from {c:?}"));
                let secret = sim.record(&c.sid).map(|r| r.secret);
                world.note_sent(sim, &tag, &c, secret, Kind::Client);
                sim.send_unsettled(&c, &text);
            }
        }
        Action::HostSend { s, n } => {
            if let Some(h) = world.hosts.get(SESSIONS[s]).filter(|h| sim.is_open(h)).cloned() {
                let tag = world.tag('h');
                world.note_sent(sim, &tag, &h, None, Kind::ToClient);
                sim.send_unsettled(&h, &format!("{n}: {tag}"));
            }
        }
        Action::Broadcast { s } => {
            if let Some(h) = world.hosts.get(SESSIONS[s]).filter(|h| sim.is_open(h)).cloned() {
                let tag = world.tag('b');
                world.note_sent(sim, &tag, &h, None, Kind::Broadcast);
                sim.send_unsettled(&h, &format!("0: {tag}"));
            }
        }
        Action::Command { s, command } => {
            if let Some(h) = world.hosts.get(SESSIONS[s]).filter(|h| sim.is_open(h)).cloned() {
                sim.send_unsettled(&h, COMMANDS[command]);
            }
        }
        Action::CloseHost { s } => {
            if let Some(h) = world.hosts.get(SESSIONS[s]).cloned() {
                sim.close_unsettled(&h, 1001);
            }
        }
        Action::CloseClient { s, k } => {
            let open = world.open_clients(sim, SESSIONS[s]);
            if let Some(c) = open.get(k % open.len().max(1)) {
                sim.close_unsettled(c, 1000);
            }
        }
        Action::Binary { s, k } => {
            let open = world.open_clients(sim, SESSIONS[s]);
            if let Some(c) = open.get(k % open.len().max(1)).cloned() {
                if sim.is_open(&c) {
                    sim.input(&c.sid, askutron_core::session::Input::Frame { socket: c.token, frame: Frame::Binary });
                }
            }
        }
        Action::Wait { ms } => {
            let end = sim.now + ms;
            while sim.now < end && sim.step() {
                world.observe(sim);
                if let Err(e) = check::safety(sim) {
                    panic!("{e}");
                }
            }
            sim.advance((end - sim.now).max(0.0));
        }
    }
}

/// The hostile physics a seed draws.
fn config(seed: u64) -> Config {
    let mut rng = Rng::new(seed ^ 0x5eed);
    let mut config = Config::new(Settings { max_clients: 4, ..Settings::default() });
    config.seed = seed;
    config.trace = 300;
    config.network = match rng.below(4) {
        0 => Network::LOOPBACK,
        1 => Network::EDGE,
        _ => Network::faulty(),
    };
    config.faults = match rng.below(3) {
        0 => Faults::NONE,
        1 => Faults { storage: 0.01, ..Faults::NONE },
        _ => Faults::some(),
    };
    config
}

/// One run; what went wrong, if anything.
fn run(seed: u64, actions: usize) -> Result<(), String> {
    let mut sim = Sim::new(config(seed));
    let mut rng = Rng::new(seed);
    let mut world = World::default();
    let deploy_at = rng.chance(0.3).then(|| rng.below(actions));
    for i in 0..actions {
        if deploy_at == Some(i) {
            sim.deploy(rng.between(1_000.0, 30_000.0));
        }
        let action = action(&mut rng);
        sim.trace.note(sim.now, || format!("user: {action:?}"));
        apply(&mut sim, &mut world, action);
        // Let some of the calls in flight land before the next user action.
        for _ in 0..rng.below(12) {
            if !sim.step() {
                break;
            }
            world.observe(&sim);
            check::safety(&sim)?;
        }
        world.observe(&sim);
        check::safety(&sim)?;
    }
    // Long enough for every lease to end: a reset object wakes by itself
    // within `STATS_RENEW_MS`, and figures whose last report was lost with a
    // failed write expire within `STATS_LEASE_MS`.
    check::heal(&mut sim, askutron_core::stats::STATS_LEASE_MS + 60_000.0)?;
    world.observe(&sim);
    users_view(&sim, &world)
}

/// What the users saw must make sense.
fn users_view(sim: &Sim, world: &World) -> Result<(), String> {
    // Every frame each session's hosts and clients received, with when.
    let mut at_hosts: HashMap<(String, String), usize> = HashMap::new();
    let mut delivered: HashMap<String, Vec<(String, f64, Sock)>> = HashMap::new();
    for (sid, slot) in &sim.sessions {
        for (token, state) in &slot.sockets {
            let sock = Sock { sid: sid.clone(), token: *token };
            let host = state.attachment.as_ref().is_some_and(|a| a.is_host());
            let mut known: BTreeSet<u32> = BTreeSet::new();
            for r in &state.history {
                let text = r.text.as_str();
                if host {
                    if let Some(n) = text.strip_prefix("connected: ") {
                        let n: u32 = n.parse().unwrap();
                        if !known.insert(n) && !r.replayed {
                            return Err(format!("{sock:?} told twice of {text}"));
                        }
                    } else if let Some(n) = text.strip_prefix("disconnected: ") {
                        let n: u32 = n.parse().unwrap();
                        if !known.remove(&n) && !r.replayed {
                            return Err(format!("{sock:?} told {text} of an id it did not know"));
                        }
                    }
                }
                let tag = if host { text.split_once(": ").map(|(_, m)| m) } else { Some(text) };
                let Some(tag) = tag.map(|t| t.split(':').next().unwrap_or(t)) else { continue };
                if !world.sent.contains_key(tag) {
                    continue;
                }
                if host {
                    let seen = at_hosts.entry((sid.clone(), tag.to_string())).or_default();
                    *seen += 1;
                    if *seen > 1 {
                        return Err(format!("{sid}'s host got {tag} twice"));
                    }
                }
                delivered.entry(tag.to_string()).or_default().push((sid.clone(), r.event as f64, sock.clone()));
            }
            // The open host knows exactly the ids it can address.
            if host && state.is_open() {
                let record = sim.record(sid).ok_or(format!("{sid}: an open host without a session"))?;
                let mut addressable: BTreeSet<u32> = slot
                    .sockets
                    .values()
                    .filter(|s| s.is_open())
                    .filter_map(|s| s.attachment.as_ref().and_then(|a| a.client_id()))
                    .collect();
                addressable.extend(record.group.slave_clients());
                if known != addressable {
                    let sockets: Vec<String> = slot
                        .sockets
                        .iter()
                        .map(|(t, s)| {
                            let id = s.attachment.as_ref().and_then(|a| a.client_id());
                            format!(
                                "{t}:{id:?}:open={}:relay={:?}:peer={}:reset={}",
                                s.is_open(),
                                s.closed_by_relay,
                                s.closed_by_peer,
                                s.closed_by_reset
                            )
                        })
                        .collect();
                    let heard: Vec<&str> = state.history.iter().map(|r| r.text.as_str()).take(20).collect();
                    return Err(format!(
                        "{sock:?} knows {known:?}; it can address {addressable:?}; sockets {sockets:?}; it heard first {heard:?}"
                    ));
                }
            }
        }
    }
    // No message crossed from one group to another.
    for (tag, receipts) in &delivered {
        let sent = &world.sent[tag];
        for (sid, at, sock) in receipts {
            if !world.grouped_between(sid, &sent.sid, sent.at, *at) {
                return Err(format!("{tag} from {} reached {sock:?} of a session it was never linked to", sent.sid));
            }
        }
    }
    // No client message vanished without notice.
    for (tag, sent) in &world.sent {
        if sent.kind != Kind::Client {
            continue;
        }
        let got = |sid: &str| delivered.get(tag).is_some_and(|r| r.iter().any(|(s, _, _)| s == sid));
        let queued = |sid: &str| {
            sim.sessions[sid]
                .queue
                .iter()
                .any(|r| r.line.split(": ").nth(1).is_some_and(|m| m.split(':').next() == Some(tag.as_str())))
        };
        let state = sim.state(&sent.sock).expect("a sender");
        let told = state.closed_by_reset
            || state.closed_by_relay.is_some_and(|c| matches!(c.code, 1013 | 1008 | 1011 | 1003 | 1009 | 4004 | 4002));
        let reset_after =
            |sid: &str| sim.resets.iter().any(|(t, o)| *t >= sent.when && *o == ObjectId::Session(sid.to_string()));
        let ended = sim.record(&sent.sid).map(|r| r.secret) != sent.secret;
        if !(got(&sent.sid) || queued(&sent.sid) || told || reset_after(&sent.sid) || ended) {
            return Err(format!("{tag} from {:?} vanished", sent.sock));
        }
        // A slave's client is the master's too: it reached the master's host,
        // or the master's queue, or the link ended (both hosts were told).
        if let Some((master, link_ended)) = world.master_at(&sent.sid, sent.at) {
            let master_ended = !sim.record(&master).is_some();
            if !(got(&master)
                || queued(&master)
                || link_ended
                || master_ended
                || reset_after(&master)
                || reset_after(&sent.sid)
                || told)
            {
                return Err(format!("{tag} from {:?} never reached its master {master}", sent.sock));
            }
        }
    }
    Ok(())
}

/// Runs every seed with `seed % 2 == half` (the two halves run in parallel).
fn run_half(half: u64) {
    askutron_sim::seeds::run_half("properties", half, 2000, 120, run);
}

#[test]
fn the_relay_keeps_its_invariants_under_hostile_physics_even_seeds() {
    run_half(0);
}

#[test]
fn the_relay_keeps_its_invariants_under_hostile_physics_odd_seeds() {
    run_half(1);
}

/// Each of the users' checks can fail: break one thing by hand and see it named.
#[test]
fn the_users_checks_can_fail() {
    let setup = || {
        let mut sim = askutron_sim::loopback(4);
        let mut world = World::default();
        apply(&mut sim, &mut world, Action::Host { s: 0, reconnect: true });
        apply(&mut sim, &mut world, Action::Host { s: 1, reconnect: true });
        apply(&mut sim, &mut world, Action::Client { s: 0, uuid: None });
        apply(&mut sim, &mut world, Action::ClientSend { s: 0, k: 0, big: false });
        sim.settle();
        world.observe(&sim);
        users_view(&sim, &world).expect("healthy");
        (sim, world)
    };
    let inject = |sim: &mut Sim, host: &Sock, text: &str| {
        let state = sim.sessions.get_mut(&host.sid).unwrap().sockets.get_mut(&host.token).unwrap();
        let last = state.history.last().cloned().unwrap();
        state.history.push(askutron_sim::Received { text: text.into(), ..last });
    };
    let (mut sim, world) = setup();
    let b = world.hosts["b"].clone();
    inject(&mut sim, &b, "1: c1");
    assert!(users_view(&sim, &world).unwrap_err().contains("never linked"));
    let (mut sim, world) = setup();
    let a = world.hosts["a"].clone();
    inject(&mut sim, &a, "1: c1");
    assert!(users_view(&sim, &world).unwrap_err().contains("twice"));
    let (mut sim, world) = setup();
    let a = world.hosts["a"].clone();
    inject(&mut sim, &a, "connected: 1");
    assert!(users_view(&sim, &world).unwrap_err().contains("told twice"));
    let (mut sim, world) = setup();
    let a = world.hosts["a"].clone();
    inject(&mut sim, &a, "connected: 3");
    assert!(users_view(&sim, &world).unwrap_err().contains("it can address"));
    let (sim, mut world) = setup();
    let sender = world.clients["a"][0].clone();
    let secret = sim.record("a").map(|r| r.secret);
    let sent = Sent { sid: "a".into(), secret, sock: sender, at: 0.0, when: sim.now, kind: Kind::Client };
    world.sent.insert("c99".into(), sent);
    assert!(users_view(&sim, &world).unwrap_err().contains("vanished"));
}
