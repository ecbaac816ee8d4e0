//! Property test: random sequences of connects, frames, closes, alarms,
//! evictions and matchmaking commands over a few sessions, with calls between
//! objects delivered in random order, checking after every step that:
//! - no client id is held twice in a session;
//! - every host knows exactly the ids it can address (its own clients and,
//!   for a master, its slaves' clients, translated);
//! - no session keeps more than 256 KiB for an absent host;
//! - every client frame was delivered to its host, is queued, or its sender
//!   was closed and told why (nothing vanishes);
//! - links agree on both sides, ranges never overlap and no group is over
//!   capacity; nothing is sent on a socket after the relay closed it.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use askutron_core::session::{Frame, EPHEMERAL};
use askutron_core::settings::Settings;
use askutron_core::wire::MAX_QUEUED_BYTES;
use askutron_sim::{Bus, Order, Sock};

const SESSIONS: [&str; 3] = ["a", "b", "c"];

#[derive(Debug, Clone)]
enum Action {
    Host { s: usize, reconnect: bool, keep_alive: bool },
    TakeOver { s: usize },
    Client { s: usize, uuid: Option<u8> },
    ClientSend { s: usize, k: usize, big: bool },
    HostSend { s: usize, n: u32 },
    Broadcast { s: usize },
    Command { s: usize, command: usize },
    CloseHost { s: usize },
    CloseClient { s: usize, k: usize },
    Binary { s: usize, k: usize },
    Advance { ms: u32 },
    Evict { s: usize },
}

const COMMANDS: [&str; 9] = [
    "/join-session",
    "/join-session master",
    "/join-session slave",
    "/join-session master private",
    "/join-session slave id=a",
    "/join-session id=b",
    "/close-session",
    "/leave-session",
    "/stats",
];

fn action() -> impl Strategy<Value = Action> {
    let s = 0..SESSIONS.len();
    prop_oneof![
        4 => (s.clone(), any::<bool>(), any::<bool>()).prop_map(|(s, reconnect, keep_alive)| Action::Host { s, reconnect, keep_alive }),
        1 => s.clone().prop_map(|s| Action::TakeOver { s }),
        4 => (s.clone(), proptest::option::of(0..3u8)).prop_map(|(s, uuid)| Action::Client { s, uuid }),
        6 => (s.clone(), 0..8usize, proptest::bool::weighted(0.05)).prop_map(|(s, k, big)| Action::ClientSend { s, k, big }),
        3 => (s.clone(), 0..12u32).prop_map(|(s, n)| Action::HostSend { s, n }),
        1 => s.clone().prop_map(|s| Action::Broadcast { s }),
        10 => (s.clone(), 0..COMMANDS.len()).prop_map(|(s, command)| Action::Command { s, command }),
        1 => s.clone().prop_map(|s| Action::CloseHost { s }),
        2 => (s.clone(), 0..8usize).prop_map(|(s, k)| Action::CloseClient { s, k }),
        1 => (s.clone(), 0..8usize).prop_map(|(s, k)| Action::Binary { s, k }),
        2 => prop_oneof![1u32..2_000, 20_000u32..130_000].prop_map(|ms| Action::Advance { ms }),
        1 => s.prop_map(|s| Action::Evict { s }),
    ]
}

/// What the test knows as a user of the relay.
#[derive(Default)]
struct World {
    hosts: BTreeMap<String, Sock>,
    secrets: BTreeMap<String, String>,
    clients: BTreeMap<String, Vec<Sock>>,
    /// Frames each host socket has read so far, as a set of known ids.
    known: BTreeMap<Sock, BTreeSet<u32>>,
    /// Every client frame sent: (sender, text, the session's secret then).
    sent: Vec<(Sock, String, String)>,
    /// Every frame every host socket of a session received.
    heard: BTreeMap<String, Vec<String>>,
    counter: usize,
}

impl World {
    fn open_clients(&self, bus: &Bus, s: &str) -> Vec<Sock> {
        self.clients.get(s).map(|v| v.iter().filter(|c| bus.is_open(c)).cloned().collect()).unwrap_or_default()
    }

    /// Reads every host's new frames: the ids it was told of, what it heard.
    fn read_hosts(&mut self, bus: &mut Bus) {
        let hosts: Vec<Sock> = self.known.keys().cloned().collect();
        for h in hosts {
            let frames = bus.frames(&h);
            let known = self.known.get_mut(&h).expect("listed");
            for f in &frames {
                if let Some(n) = f.strip_prefix("connected: ") {
                    assert!(known.insert(n.parse().unwrap()), "{h:?} told twice of {f}");
                } else if let Some(n) = f.strip_prefix("disconnected: ") {
                    assert!(known.remove(&n.parse().unwrap()), "{h:?} told of {f} it did not know");
                }
            }
            self.heard.entry(h.sid.clone()).or_default().extend(frames);
        }
    }
}

fn apply(bus: &mut Bus, world: &mut World, action: Action) {
    match action {
        Action::Host { s, reconnect, keep_alive } => {
            let sid = SESSIONS[s];
            let query = format!("id={sid}&reconnect={reconnect}{}", if keep_alive { "&keepAlive=ka" } else { "" });
            if let Ok(h) = bus.host(&query) {
                let frames = bus.frames(&h);
                world.secrets.insert(sid.into(), frames[1].trim_start_matches("secret: ").into());
                world.known.insert(h.clone(), BTreeSet::new());
                world.hosts.insert(sid.into(), h);
            }
        }
        Action::TakeOver { s } => {
            let sid = SESSIONS[s];
            let Some(secret) = world.secrets.get(sid).cloned() else { return };
            if let Ok(h) = bus.host(&format!("id={sid}&secret={secret}")) {
                world.known.insert(h.clone(), BTreeSet::new());
                world.hosts.insert(sid.into(), h);
            }
        }
        Action::Client { s, uuid } => {
            let sid = SESSIONS[s];
            let query = uuid.map(|u| format!("client=u{u}")).unwrap_or_default();
            if let Ok(c) = bus.client(sid, &query) {
                if c.token != EPHEMERAL {
                    world.clients.entry(sid.into()).or_default().push(c);
                }
            }
        }
        Action::ClientSend { s, k, big } => {
            let open = world.open_clients(bus, SESSIONS[s]);
            if let Some(c) = open.get(k % open.len().max(1)) {
                world.counter += 1;
                let text = if big {
                    format!("m{}:{}", world.counter, "x".repeat(100_000))
                } else {
                    format!("m{}", world.counter)
                };
                let secret = bus.slots[SESSIONS[s]].core.record().map(|r| r.secret.clone()).unwrap_or_default();
                world.sent.push((c.clone(), text.clone(), secret));
                bus.send(c, &text);
            }
        }
        Action::HostSend { s, n } => {
            if let Some(h) = world.hosts.get(SESSIONS[s]).filter(|h| bus.is_open(h)).cloned() {
                bus.send(&h, &format!("{n}: to {n}"));
            }
        }
        Action::Broadcast { s } => {
            if let Some(h) = world.hosts.get(SESSIONS[s]).filter(|h| bus.is_open(h)).cloned() {
                bus.send(&h, "0: all");
            }
        }
        Action::Command { s, command } => {
            if let Some(h) = world.hosts.get(SESSIONS[s]).filter(|h| bus.is_open(h)).cloned() {
                bus.send(&h, COMMANDS[command]);
            }
        }
        Action::CloseHost { s } => {
            if let Some(h) = world.hosts.get(SESSIONS[s]).cloned() {
                bus.close(&h, 1001);
            }
        }
        Action::CloseClient { s, k } => {
            let open = world.open_clients(bus, SESSIONS[s]);
            if let Some(c) = open.get(k % open.len().max(1)) {
                bus.close(c, 1000);
            }
        }
        Action::Binary { s, k } => {
            let open = world.open_clients(bus, SESSIONS[s]);
            if let Some(c) = open.get(k % open.len().max(1)) {
                bus.frame(c, Frame::Binary);
            }
        }
        Action::Advance { ms } => bus.advance(ms as f64),
        Action::Evict { s } => {
            if bus.slots.contains_key(SESSIONS[s]) {
                bus.evict(SESSIONS[s]);
            }
        }
    }
}

fn check(bus: &Bus, world: &World) {
    for (sid, slot) in &bus.slots {
        let core = &slot.core;
        for state in slot.sockets.values() {
            assert_eq!(state.sent_after_close, 0, "{sid}: sent on a closed socket");
        }
        // No client id held twice: the open client sockets of a session.
        let mut ids = BTreeSet::new();
        for (token, state) in &slot.sockets {
            let open = !state.closed_by_peer && state.closed_by_relay.is_none();
            if let (true, Some(id)) = (open, state.attachment.as_ref().and_then(|a| a.client_id())) {
                assert!(ids.insert(id), "{sid}: id {id} held twice (socket {token})");
            }
        }
        let Some(record) = core.record() else { continue };
        assert_eq!(ids, core.connected_ids(), "{sid}: the core's clients are the open sockets");
        assert!(record.queued_bytes <= MAX_QUEUED_BYTES, "{sid}: queue over the bound");
        // The host knows exactly the ids it can address.
        if let Some(token) = core.host_token() {
            let host = Sock { sid: sid.clone(), token };
            let mut addressable = core.connected_ids();
            for link in &record.group.slaves {
                let slave = bus.slots[&link.sid].core.record().expect("a linked slave exists");
                let (master, _) = slave.group.id_at_master(0).unwrap_or((sid, 0));
                assert_eq!(master, sid, "{sid}'s slave {} agrees on its master", link.sid);
                for id in bus.slots[&link.sid].core.connected_ids() {
                    addressable.insert(slave.group.id_at_master(id).expect("frozen roster holds its clients").1);
                }
            }
            assert_eq!(world.known.get(&host), Some(&addressable), "{sid}: what the host was told");
        }
        // Links agree on both sides; ranges neither overlap nor overfill.
        if let Some(master) = &record.group.master {
            let m = bus.slots[&master.sid].core.record().expect("a linked master exists");
            let link = m.group.slaves.iter().find(|l| l.sid == *sid).expect("the master knows its slave");
            assert_eq!(link.offset, master.offset);
        }
        let own_top = record.group.frozen.as_ref().and_then(|f| f.last().copied()).unwrap_or(0);
        let mut ranges: Vec<(u32, u32)> = record.group.slaves.iter().map(|s| (s.offset, s.span)).collect();
        ranges.sort();
        let mut end = own_top;
        let mut count = record.group.frozen.as_ref().map_or(0, |f| f.len() as u32);
        for (offset, span) in ranges {
            assert!(offset >= end, "{sid}: ranges overlap");
            end = offset + span;
            count += span;
        }
        assert!(count <= bus.settings.max_clients, "{sid}: group over capacity");
    }
    // Nothing vanishes: a frame reached a host, waits in the queue, or its
    // sender was told; or the session it was sent to has ended since (then
    // every client was told with 4004, or had left).
    for (sender, text, secret) in &world.sent {
        let slot = &bus.slots[&sender.sid];
        if slot.core.record().is_none_or(|r| r.secret != *secret) {
            continue;
        }
        let line = format!(": {text}");
        let heard = world.heard.get(&sender.sid).is_some_and(|h| h.iter().any(|f| f.ends_with(&line)));
        let queued = slot.queue.iter().any(|f| f.ends_with(&line));
        let told = bus.closed(sender).is_some_and(|c| matches!(c.code, 1013 | 1008 | 1011 | 4004));
        assert!(heard || queued || told, "{sender:?}'s {:.20} vanished", text);
    }
}

proptest! {
    // 512 cases by default (about a second); PROPTEST_CASES=N for a longer hunt.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(512),
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_protocols_invariants_hold_under_any_sequence(actions in proptest::collection::vec(action(), 1..80), seed in any::<u64>()) {
        let mut bus = Bus::new(Settings { max_clients: 4, ..Settings::default() });
        let mut rng = seed | 1;
        bus.order = Order::Random(Box::new(move |n| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            (rng % n as u64) as usize
        }));
        let mut world = World::default();
        for action in actions {
            apply(&mut bus, &mut world, action);
            bus.settle();
            world.read_hosts(&mut bus);
            check(&bus, &world);
        }
    }
}
