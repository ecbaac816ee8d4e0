//! PROTOCOL.md sections 2–6 as scenarios on the test bus: real inputs, an
//! injected clock, effects carried out as the Durable Objects do.

use askutron_core::session::{Frame, EPHEMERAL};
use askutron_core::settings::Settings;
use askutron_core::wire::{Close, CLOSE_BINARY, CLOSE_HOST_UNAVAILABLE, CLOSE_RATE_LIMITED, CLOSE_TOO_BIG};
use askutron_sim::{Bus, Order, Sock};

fn bus() -> Bus {
    Bus::with_max_clients(8)
}

/// A host on a new session, past its `session:` and `secret:` lines.
fn host(bus: &mut Bus, query: &str) -> (Sock, String) {
    let h = bus.host(query).expect("host connects");
    let frames = bus.frames(&h);
    assert_eq!(frames[0], format!("session: {}", h.sid));
    let secret = frames[1].strip_prefix("secret: ").expect("secret line").to_string();
    (h, secret)
}

/// A client that joined, and the id its host was told.
fn join(bus: &mut Bus, h: &Sock, query: &str) -> (Sock, u32) {
    let c = bus.client(&h.sid, query).expect("client connects");
    let frames = bus.frames(h);
    let id = frames.last().and_then(|f| f.strip_prefix("connected: ")).expect("connected line").parse().unwrap();
    (c, id)
}

fn close_of(code: u16, reason: &'static str) -> Option<Close> {
    Some(Close { code, reason })
}

#[test]
fn host_gets_session_then_secret_and_a_chosen_id_is_kept() {
    let mut bus = bus();
    let h = bus.host("id=room-1").unwrap();
    let frames = bus.frames(&h);
    assert_eq!(frames[0], "session: room-1");
    assert!(frames[1].starts_with("secret: ") && frames.len() == 2);
    assert_eq!(bus.host("id=room-1"), Err((409, "Session already exists".into())));
    assert_eq!(
        bus.host("id=room-1&secret=nope"),
        Err((404, "Could not connect to session (not found or invalid secret)".into()))
    );
    assert_eq!(
        bus.host("id=none&secret=x"),
        Err((404, "Could not connect to session (not found or invalid secret)".into()))
    );
    assert_eq!(bus.client("none", ""), Err((404, "Session not found".into())));
}

#[test]
fn relay_both_ways_byte_for_byte_with_unknown_and_invalid() {
    let mut bus = bus();
    let (h, _) = host(&mut bus, "");
    let (c, id) = join(&mut bus, &h, "");
    assert_eq!(id, 1);
    bus.send(&c, "hello\nsecond: line");
    assert_eq!(bus.frames(&h), vec!["1: hello\nsecond: line"]);
    bus.send(&h, "1: back\r\nü ✓");
    bus.send(&h, "1: ");
    assert_eq!(bus.frames(&c), vec!["back\r\nü ✓", ""]);
    bus.send(&h, "5: x");
    bus.send(&h, "99999999999999999999: x");
    for bad in ["hello", "5:x", "-1: x", "/nonsense", "", "1 : x", "/join-session master slave"] {
        bus.send(&h, bad);
    }
    bus.send(&h, "0: nobody linked");
    bus.send(&h, "/version");
    let mut expected = vec!["unknown: 5".to_string(), "unknown: 99999999999999999999".to_string()];
    expected.extend(std::iter::repeat_n("invalid".to_string(), 7));
    expected.push(format!("!version {}", askutron_core::VERSION));
    assert_eq!(bus.frames(&h), expected);
}

#[test]
fn clients_get_the_smallest_free_id_and_the_full_session_refuses() {
    let mut bus = Bus::with_max_clients(2);
    let (h, _) = host(&mut bus, "");
    let (c1, _) = join(&mut bus, &h, "");
    let (_c2, id2) = join(&mut bus, &h, "");
    assert_eq!(id2, 2);
    let refused = bus.client(&h.sid, "").unwrap();
    assert_eq!(refused.token, EPHEMERAL);
    let (_, frames, close) = bus.refused.last().unwrap().clone();
    assert_eq!(frames, vec!["error: no slots available, max clients reached"]);
    assert_eq!(close, Close { code: 4003, reason: "session full" });
    assert!(bus.frames(&h).is_empty(), "the host hears nothing of a refused client");
    bus.close(&c1, 1000);
    assert_eq!(bus.frames(&h), vec!["disconnected: 1"]);
    let (_, id) = join(&mut bus, &h, "");
    assert_eq!(id, 1);
}

#[test]
fn a_uuid_keeps_its_id_and_a_second_socket_replaces_the_first() {
    let mut bus = bus();
    let (h, _) = host(&mut bus, "");
    let (a, id) = join(&mut bus, &h, "client=u-1");
    assert_eq!(id, 1);
    bus.close(&a, 1000);
    assert_eq!(bus.frames(&h), vec!["disconnected: 1"]);
    let (_b, id) = join(&mut bus, &h, "");
    assert_eq!(id, 2, "id 1 stays out of reach for other clients");
    let (a2, id) = join(&mut bus, &h, "client=u-1");
    assert_eq!(id, 1);
    let a3 = bus.client(&h.sid, "client=u-1").unwrap();
    assert_eq!(bus.closed(&a2), close_of(4002, "replaced"));
    assert_eq!(bus.frames(&h), vec!["disconnected: 1", "connected: 1"]);
    // The replaced socket's own close later changes nothing.
    bus.close(&a2, 1000);
    assert!(bus.frames(&h).is_empty());
    bus.send(&a3, "still me");
    assert_eq!(bus.frames(&h), vec!["1: still me"]);
}

#[test]
fn take_over_replays_clients_then_queued_messages_in_order() {
    let mut bus = bus();
    let (h, secret) = host(&mut bus, "id=t");
    let (c1, _) = join(&mut bus, &h, "");
    let (c2, _) = join(&mut bus, &h, "");
    let (c3, _) = join(&mut bus, &h, "");
    bus.close(&c2, 1000);
    bus.frames(&h);
    bus.close(&h, 1001);
    bus.send(&c3, "first");
    bus.send(&c1, "second\nline");
    bus.send(&c3, "");
    let h2 = bus.host(&format!("id=t&secret={secret}")).unwrap();
    assert_eq!(
        bus.frames(&h2),
        vec![
            "session: t".to_string(),
            format!("secret: {secret}"),
            "connected: 1".into(),
            "connected: 3".into(),
            "3: first".into(),
            "1: second\nline".into(),
            "3: ".into(),
        ]
    );
    // Nothing is replayed twice.
    let h3 = bus.host(&format!("id=t&secret={secret}")).unwrap();
    assert_eq!(bus.closed(&h2), close_of(4001, "taken over"));
    assert_eq!(bus.frames(&h3)[2..], ["connected: 1".to_string(), "connected: 3".into()]);
}

#[test]
fn two_take_overs_at_once_leave_exactly_one_host() {
    let mut bus = bus();
    let (h, secret) = host(&mut bus, "id=x");
    let (c, _) = join(&mut bus, &h, "");
    let a = bus.host(&format!("id=x&secret={secret}")).unwrap();
    let b = bus.host(&format!("id=x&secret={secret}")).unwrap();
    assert_eq!(bus.closed(&h), close_of(4001, "taken over"));
    assert_eq!(bus.closed(&a), close_of(4001, "taken over"));
    assert!(bus.is_open(&b));
    // The old hosts' closes arrive late and change nothing.
    bus.close(&h, 1000);
    bus.close(&a, 1000);
    bus.send(&c, "to b");
    assert_eq!(bus.frames(&b).last().unwrap(), "1: to b");
    assert!(bus.slots["x"].core.record().unwrap().host_away_until.is_none());
}

#[test]
fn the_session_waits_for_its_host_then_ends() {
    let settings = Settings::default();
    let mut bus = bus();
    let (h, secret) = host(&mut bus, "id=w");
    let (c, _) = join(&mut bus, &h, "");
    bus.close(&h, 1001);
    bus.advance(settings.reconnect_ms - 1.0);
    assert!(bus.is_open(&c));
    bus.advance(1.0);
    assert_eq!(bus.closed(&c), close_of(4004, "session closed"));
    assert_eq!(bus.client("w", ""), Err((404, "Session not found".into())));
    assert_eq!(bus.host(&format!("id=w&secret={secret}")).unwrap_err().0, 404);
    // The id is free again.
    assert!(bus.host("id=w").is_ok());
    assert!(bus.slots["w"].stored.is_some());
}

#[test]
fn reconnect_false_ends_the_session_when_the_host_leaves() {
    let mut bus = bus();
    let (h, _) = host(&mut bus, "id=nr&reconnect=false");
    let (c, _) = join(&mut bus, &h, "");
    bus.close(&h, 1000);
    assert_eq!(bus.closed(&c), close_of(4004, "session closed"));
    assert!(bus.slots["nr"].stored.is_none() && bus.slots["nr"].alarm.is_none());
    assert!(bus.log.iter().any(|e| e.name == "session_ended"));
}

#[test]
fn bad_frames_close_only_their_sender() {
    let mut bus = bus();
    let (h, _) = host(&mut bus, "");
    let (c1, _) = join(&mut bus, &h, "");
    let (c2, _) = join(&mut bus, &h, "");
    let (c3, _) = join(&mut bus, &h, "");
    bus.frame(&c1, Frame::Binary);
    bus.frame(&c2, Frame::TooBig);
    assert_eq!(bus.closed(&c1), Some(CLOSE_BINARY));
    assert_eq!(bus.closed(&c2), Some(CLOSE_TOO_BIG));
    assert_eq!(bus.frames(&h), vec!["disconnected: 1", "disconnected: 2"]);
    bus.send(&c3, "fine");
    assert_eq!(bus.frames(&h), vec!["3: fine"]);
    bus.frame(&h, Frame::Binary);
    assert_eq!(bus.closed(&h), Some(CLOSE_BINARY));
    assert!(bus.slots[&h.sid].core.record().unwrap().host_away_until.is_some());
}

#[test]
fn the_queue_keeps_256_kib_then_closes_the_sender_with_1013() {
    let mut bus = bus();
    let (h, secret) = host(&mut bus, "id=q");
    let (c, _) = join(&mut bus, &h, "");
    let (other, _) = join(&mut bus, &h, "");
    bus.close(&h, 1001);
    let chunk = "x".repeat(64 * 1024);
    for _ in 0..4 {
        bus.send(&c, &chunk);
    }
    assert!(bus.is_open(&c));
    bus.send(&c, "y");
    assert_eq!(bus.closed(&c), Some(CLOSE_HOST_UNAVAILABLE));
    assert_eq!(bus.closed(&c).unwrap().reason, "host unavailable");
    assert!(bus.is_open(&other));
    let h2 = bus.host(&format!("id=q&secret={secret}")).unwrap();
    let frames = bus.frames(&h2);
    assert_eq!(frames.iter().filter(|f| f.starts_with("1: x")).count(), 4);
    assert!(!frames.iter().any(|f| f == "1: y"));
}

#[test]
fn a_flood_is_cut_off_within_a_second_while_a_60hz_player_never_is() {
    let settings = Settings::default();
    let mut bus = bus();
    let (h, _) = host(&mut bus, "");
    let (player, _) = join(&mut bus, &h, "");
    let (flooder, _) = join(&mut bus, &h, "");
    // Ten seconds of a 60 Hz player, and a host answering 8 players at 60 Hz.
    let start = bus.now;
    let mut cut_off_at = None;
    for tick in 0..600 {
        bus.send(&player, "input");
        for _ in 0..8 {
            bus.send(&h, "1: state");
        }
        if tick % 6 == 0 {
            // The flooder sends 2,000 frames/s: 200 each 100 ms.
            for _ in 0..200 {
                bus.send(&flooder, "spam");
            }
        }
        bus.advance(1000.0 / 60.0);
        if bus.closed(&flooder).is_some() {
            cut_off_at.get_or_insert(bus.now - start);
        }
    }
    assert!(cut_off_at.is_some_and(|t| t <= 1000.0), "cut off after {cut_off_at:?} ms");
    assert_eq!(bus.closed(&flooder), Some(CLOSE_RATE_LIMITED));
    assert!(bus.is_open(&player) && bus.is_open(&h));
    assert!(settings.rate_per_second >= 60.0);
}

#[test]
fn keep_alives_follow_each_sockets_period_and_are_never_relayed() {
    let settings = Settings::default();
    let mut bus = bus();
    let (h, _) = host(&mut bus, "keepAlive=ping");
    let (c, _) = join(&mut bus, &h, "keepAlive=pong");
    bus.advance(settings.keep_alive_ms - 10.0);
    assert!(bus.frames(&h).is_empty() && bus.frames(&c).is_empty());
    bus.advance(10.0);
    assert_eq!(bus.frames(&h), vec!["ping"]);
    assert_eq!(bus.frames(&c), vec!["pong"]);
    // After a wake-up from hibernation, the period holds.
    bus.evict(&h.sid);
    bus.advance(settings.keep_alive_ms);
    assert_eq!(bus.frames(&h), vec!["ping"]);
    assert_eq!(bus.frames(&c), vec!["pong"]);
}

#[test]
fn stats_are_batched_and_answered_relay_wide() {
    let mut bus = bus();
    let (h, _) = host(&mut bus, "");
    let (h2, _) = host(&mut bus, "");
    join(&mut bus, &h, "");
    join(&mut bus, &h, "");
    join(&mut bus, &h2, "");
    bus.send(&h, "/stats");
    assert_eq!(
        bus.frames(&h),
        vec![r#"!stats {"numHostsOnline":0,"numHostsLookingForSession":0,"numClientsOnline":0,"numPlayers":0}"#]
    );
    bus.advance(askutron_core::session::STATS_DELAY_MS);
    bus.send(&h2, "/join-session master");
    bus.send(&h, "/stats");
    assert_eq!(
        bus.frames(&h),
        vec![r#"!stats {"numHostsOnline":2,"numHostsLookingForSession":1,"numClientsOnline":3,"numPlayers":3}"#]
    );
    bus.close(&h, 1001);
    bus.advance(askutron_core::session::STATS_DELAY_MS);
    bus.send(&h2, "/stats");
    assert_eq!(
        bus.frames(&h2).last().unwrap(),
        r#"!stats {"numHostsOnline":1,"numHostsLookingForSession":1,"numClientsOnline":3,"numPlayers":1}"#
    );
}

#[test]
fn eviction_keeps_ids_uuids_secret_links_and_queue() {
    let mut bus = bus();
    let (h, secret) = host(&mut bus, "id=ev");
    let (c1, _) = join(&mut bus, &h, "client=u1");
    let (_c2, _) = join(&mut bus, &h, "");
    bus.close(&h, 1001);
    bus.send(&c1, "kept");
    bus.evict("ev");
    let c3 = bus.client("ev", "").unwrap();
    assert_eq!(bus.state(&c3).unwrap().attachment.as_ref().unwrap().client_id(), Some(3));
    let h2 = bus.host(&format!("id=ev&secret={secret}")).unwrap();
    let frames = bus.frames(&h2);
    assert_eq!(
        frames[2..],
        ["connected: 1".to_string(), "connected: 2".into(), "connected: 3".into(), "1: kept".into()]
    );
    bus.evict("ev");
    let again = bus.client("ev", "client=u1").unwrap();
    assert_eq!(bus.closed(&c1), close_of(4002, "replaced"));
    assert_eq!(bus.frames(&h2), vec!["disconnected: 1", "connected: 1"]);
    bus.send(&again, "after");
    assert_eq!(bus.frames(&h2), vec!["1: after"]);
}

#[test]
fn a_restart_that_lost_the_hosts_close_starts_the_reconnect_window() {
    let mut bus = bus();
    let (h, _) = host(&mut bus, "id=r");
    let (c, _) = join(&mut bus, &h, "");
    // The runtime restarted: the host socket is gone, its close never came.
    bus.slots.get_mut("r").unwrap().sockets.get_mut(&h.token).unwrap().closed_by_peer = true;
    bus.evict("r");
    bus.send(&c, "while away");
    assert!(bus.slots["r"].core.record().unwrap().host_away_until.is_some());
    assert_eq!(bus.slots["r"].queue, vec!["1: while away"]);
}

#[test]
fn storage_failures_are_told_to_the_sender_or_the_host() {
    let mut bus = bus();
    let (h, secret) = host(&mut bus, "id=sf");
    let (c, _) = join(&mut bus, &h, "");
    let (c2, _) = join(&mut bus, &h, "");
    bus.close(&h, 1001);
    bus.send(&c, "one");
    bus.slots.get_mut("sf").unwrap().fail_enqueue = true;
    bus.send(&c2, "lost?");
    assert_eq!(bus.closed(&c2).map(|c| c.code), Some(1011), "the sender learns its message was not kept");
    bus.slots.get_mut("sf").unwrap().fail_replay = true;
    let h2 = bus.host(&format!("id=sf&secret={secret}")).unwrap();
    assert_eq!(bus.closed(&h2).map(|c| c.code), Some(1011));
    assert!(!bus.frames(&h2).iter().any(|f| f == "1: one"));
    // Nothing was lost: the next take-over gets it.
    let h3 = bus.host(&format!("id=sf&secret={secret}")).unwrap();
    assert_eq!(bus.frames(&h3).last().unwrap(), "1: one");
    assert!(bus.log.iter().any(|e| e.name == "storage_error"));
}

// ---- matchmaking --------------------------------------------------------------

/// A host with `n` clients.
fn room(bus: &mut Bus, id: &str, n: usize) -> (Sock, Vec<Sock>) {
    let (h, _) = host(bus, &format!("id={id}"));
    let clients = (0..n).map(|_| join(bus, &h, "").0).collect();
    (h, clients)
}

#[test]
fn a_link_tells_the_master_every_slave_client_and_translates_both_ways() {
    let mut bus = bus();
    let (m, mc) = room(&mut bus, "m", 2);
    let (s, sc) = room(&mut bus, "s", 3);
    bus.send(&m, "/join-session master");
    bus.send(&s, "/join-session slave");
    assert_eq!(bus.frames(&m), vec!["!added-slave: s", "connected: 3", "connected: 4", "connected: 5"]);
    assert_eq!(bus.frames(&s), vec!["!set-master: m"]);
    // Slave client 1 is the master's 3; both hosts hear it.
    bus.send(&sc[0], "hi");
    assert_eq!(bus.frames(&s), vec!["1: hi"]);
    assert_eq!(bus.frames(&m), vec!["3: hi"]);
    bus.send(&m, "5: to s3");
    assert_eq!(bus.frames(&sc[2]), vec!["to s3"]);
    bus.send(&m, "6: nobody");
    assert_eq!(bus.frames(&m), vec!["unknown: 6"]);
    bus.send(&mc[0], "own");
    assert_eq!(bus.frames(&m), vec!["1: own"]);
    // 0: fans out.
    bus.send(&s, "0: from slave");
    assert_eq!(bus.frames(&m), vec!["0: from slave"]);
    bus.send(&m, "0: from master");
    assert_eq!(bus.frames(&s), vec!["0: from master"]);
    // A slave client leaving is heard at both hosts, translated.
    bus.close(&sc[1], 1000);
    assert_eq!(bus.frames(&s), vec!["disconnected: 2"]);
    assert_eq!(bus.frames(&m), vec!["disconnected: 4"]);
    bus.send(&m, "4: gone");
    assert_eq!(bus.frames(&m), vec!["unknown: 4"]);
}

#[test]
fn leaving_tells_the_other_side_and_the_master_loses_the_slaves_ids_first() {
    let mut bus = bus();
    let (m, _) = room(&mut bus, "m", 1);
    let (s, _) = room(&mut bus, "s", 2);
    bus.send(&m, "/join-session master");
    bus.send(&s, "/join-session");
    bus.frames(&m);
    bus.frames(&s);
    bus.send(&s, "/leave-session");
    assert_eq!(bus.frames(&m), vec!["disconnected: 2", "disconnected: 3", "!slave-left: s"]);
    // The slave admits clients again.
    let (_, id) = join(&mut bus, &s, "");
    assert_eq!(id, 3);
    // A master leaving: its slaves hear !master-left.
    let (s2, _) = room(&mut bus, "s2", 1);
    bus.send(&m, "/join-session master");
    bus.send(&s2, "/join-session slave id=m");
    assert_eq!(bus.frames(&m), vec!["!added-slave: s2", "connected: 2"]);
    bus.send(&m, "/leave-session");
    assert_eq!(bus.frames(&m), vec!["disconnected: 2"]);
    assert_eq!(bus.frames(&s2), vec!["!set-master: m", "!master-left"]);
}

#[test]
fn a_session_that_ends_unlinks_and_peers_that_are_gone_unlink_too() {
    let mut bus = bus();
    let (m, _) = room(&mut bus, "m", 1);
    let (s, _) = room(&mut bus, "s", 1);
    bus.send(&m, "/join-session master");
    bus.send(&s, "/join-session slave");
    bus.frames(&m);
    bus.close(&s, 1001);
    bus.advance(Settings::default().reconnect_ms);
    assert_eq!(bus.frames(&m), vec!["disconnected: 2", "!slave-left: s"]);
    // A peer that vanished without a word (410): the link ends on first use.
    let (s2, s2c) = room(&mut bus, "s2", 1);
    bus.send(&m, "/join-session master");
    bus.send(&s2, "/join-session slave");
    bus.frames(&m);
    bus.slots.remove("s2");
    bus.send(&m, "0: anyone?");
    assert_eq!(bus.frames(&m), vec!["disconnected: 2", "!slave-left: s2"]);
    let _ = s2c;
}

#[test]
fn joining_itself_is_invalid_and_starts_no_search() {
    let mut bus = bus();
    let (h, _) = room(&mut bus, "me", 1);
    bus.send(&h, "/join-session id=me");
    assert_eq!(bus.frames(&h), vec!["invalid"]);
    assert!(!bus.mm.pool().contains("me"));
    let (_, id) = join(&mut bus, &h, "");
    assert_eq!(id, 2, "not frozen");
}

#[test]
fn capacity_is_frozen_at_the_client_count() {
    let mut bus = Bus::with_max_clients(4);
    // Clients 1 and 2 left: one client, id 3.
    let (m, mc) = room(&mut bus, "m", 3);
    bus.close(&mc[0], 1000);
    bus.close(&mc[1], 1000);
    bus.frames(&m);
    bus.send(&m, "/join-session master");
    assert_eq!(bus.client("m", "").unwrap().token, EPHEMERAL, "frozen: no new clients");
    // A slave of 3 fits beside 1 client (4 in all), placed after id 3.
    let (s, _) = room(&mut bus, "s", 3);
    bus.send(&s, "/join-session slave");
    assert_eq!(bus.frames(&m), vec!["!added-slave: s", "connected: 4", "connected: 5", "connected: 6"]);
}

#[test]
fn a_slaves_event_that_outruns_its_link_waits_for_it() {
    let mut bus = bus();
    let (m, _) = room(&mut bus, "m", 1);
    let (s, sc) = room(&mut bus, "s", 1);
    bus.send(&m, "/join-session master");
    // Deliver the slave's step, then let the slave's client talk before the
    // master hears of the link.
    bus.send_unsettled(&s, "/join-session slave");
    assert!(bus.step()); // s -> matchmaker: Search; the announcement starts
    assert!(bus.step()); // matchmaker -> s: LinkedAsSlave
    assert_eq!(bus.frames(&s), vec!["!set-master: m"]);
    bus.send_unsettled(&sc[0], "early");
    bus.settle();
    assert_eq!(bus.frames(&m), vec!["!added-slave: s", "connected: 2", "2: early"]);
}

#[test]
fn racing_searches_announce_slaves_in_the_order_of_their_ranges() {
    for seed in 0..50u64 {
        let mut rng = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let mut bus = bus();
        bus.order = Order::Random(Box::new(move |n| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            (rng % n as u64) as usize
        }));
        let (m, _) = room(&mut bus, "m", 1);
        let mut slaves = Vec::new();
        for i in 1..=7 {
            slaves.push(room(&mut bus, &format!("s{i}"), 1));
        }
        for (s, _) in &slaves[..4] {
            bus.send(s, "/join-session id=m");
        }
        // At the same moment: the master opens, three more slaves search.
        bus.send_unsettled(&m, "/join-session master private");
        for (s, _) in &slaves[4..] {
            bus.send_unsettled(s, "/join-session slave id=m");
        }
        bus.settle();
        for (_, clients) in &slaves {
            bus.send(&clients[0], "hello");
        }
        let frames = bus.frames(&m);
        // Every !added-slave is followed by exactly its slave's ids.
        let mut expected_next = 2;
        for (i, f) in frames.iter().enumerate() {
            if f.starts_with("!added-slave: ") {
                assert_eq!(frames[i + 1], format!("connected: {expected_next}"), "seed {seed}: {frames:?}");
                expected_next += 1;
            }
        }
        assert_eq!(expected_next, 9, "seed {seed}: {frames:?}");
        // Each slave's client 1 is reached at the id its announcement implied.
        for (k, (s, clients)) in slaves.iter().enumerate() {
            let _ = k;
            let at = frames.iter().position(|f| *f == format!("!added-slave: {}", s.sid)).unwrap();
            let n: u32 = frames[at + 1].strip_prefix("connected: ").unwrap().parse().unwrap();
            bus.send(&m, &format!("{n}: for {}", s.sid));
            assert_eq!(bus.frames(&clients[0]), vec![format!("for {}", s.sid)], "seed {seed}");
        }
    }
}

#[test]
fn steam_friends_are_matched_first_and_a_failure_falls_back_to_anyone() {
    let mut bus = bus();
    bus.steam.insert("100".into(), ["200".to_string()].into());
    let (stranger, _) = room(&mut bus, "stranger", 1);
    let (friend, _) = room(&mut bus, "friend", 1);
    let (me, _) = room(&mut bus, "me", 1);
    bus.send(&stranger, "/join-session master steamUserId=300");
    bus.send(&friend, "/join-session master steamUserId=200");
    bus.send(&me, "/join-session slave steamUserId=100");
    assert_eq!(bus.frames(&me), vec!["!set-master: friend"]);
    let (other, _) = room(&mut bus, "other", 1);
    bus.send(&other, "/join-session slave steamUserId=999");
    assert_eq!(bus.frames(&other), vec!["!set-master: stranger"]);
}

#[test]
fn a_full_matchmaker_refuses_with_invalid_and_unfreezes() {
    let mut bus = Bus::new(Settings { max_searches: 1, ..Settings::default() });
    let (a, _) = room(&mut bus, "a", 0);
    let (b, _) = room(&mut bus, "b", 0);
    bus.send(&a, "/join-session master");
    bus.send(&b, "/join-session master");
    assert_eq!(bus.frames(&b), vec!["invalid"]);
    let (_, id) = join(&mut bus, &b, "");
    assert_eq!(id, 1);
}

#[test]
fn a_session_whose_host_vanished_before_using_it_can_be_claimed_again() {
    let mut bus = bus();
    // An upgrade the object accepted but a proxy refused: the socket dies at once.
    let ghost = bus.host("id=claimed").unwrap();
    bus.close(&ghost, 1006);
    let (h, _) = host(&mut bus, "id=claimed");
    assert!(bus.is_open(&h));
    // A session that was used keeps its id for the reconnect window.
    bus.send(&h, "/version");
    bus.close(&h, 1006);
    assert_eq!(bus.host("id=claimed"), Err((409, "Session already exists".into())));
    let (h2, _) = host(&mut bus, "id=busy");
    let _ = join(&mut bus, &h2, "");
    bus.close(&h2, 1006);
    assert_eq!(bus.host("id=busy"), Err((409, "Session already exists".into())));
}

#[test]
fn a_byte_stream_beyond_the_byte_limit_is_closed_like_a_flood() {
    let settings = Settings::default();
    let mut bus = bus();
    let (h, _) = host(&mut bus, "");
    let (c, _) = join(&mut bus, &h, "");
    let big = "x".repeat(1 << 20);
    // A client's 4 MiB burst passes (4 frames of 1 MiB), the fifth does not.
    for _ in 0..4 {
        bus.send(&c, &big);
    }
    assert!(bus.is_open(&c));
    bus.send(&c, &big);
    assert_eq!(bus.closed(&c), Some(CLOSE_RATE_LIMITED));
    // A host may send 8 times as much: 8 clients' worth.
    let (c2, id) = join(&mut bus, &h, "");
    for _ in 0..32 {
        bus.send(&h, &format!("{id}: {big}")[..(1 << 20)]);
    }
    assert!(bus.is_open(&h));
    assert_eq!(bus.frames(&c2).len(), 32);
    bus.advance(1000.0);
    bus.send(&h, &format!("{id}: after a second, refilled"));
    assert!(bus.is_open(&h));
    assert_eq!(settings.limits(false).bytes_burst, 4.0 * 1024.0 * 1024.0);
}

// ---- races found in review: a link's steps interleaved with other events -------

#[test]
fn a_link_that_reaches_a_master_after_it_left_its_search_is_refused() {
    let mut bus = bus();
    let (m, _) = room(&mut bus, "m", 1);
    let (s, sc) = room(&mut bus, "s", 2);
    bus.send(&m, "/join-session master");
    bus.send_unsettled(&s, "/join-session slave");
    assert!(bus.step()); // the search: m <- s at offset 1
    assert!(bus.step()); // s is told; m not yet
    bus.send_unsettled(&m, "/leave-session");
    let own = bus.client("m", "").unwrap(); // m admits clients again: id 2
    bus.settle();
    let frames = bus.frames(&m);
    assert_eq!(frames.iter().filter(|f| *f == "connected: 2").count(), 1, "{frames:?}");
    assert!(!frames.iter().any(|f| f.starts_with("!added-slave")), "{frames:?}");
    assert_eq!(bus.frames(&s), vec!["!set-master: m", "!master-left"]);
    bus.send(&m, "2: hello");
    assert_eq!(bus.frames(&own), vec!["hello"]);
    assert!(bus.frames(&sc[0]).is_empty());
}

#[test]
fn a_search_renewed_during_an_announcement_keeps_the_announced_range() {
    let mut bus = bus();
    let (m, _) = room(&mut bus, "m", 1);
    let (s1, _) = room(&mut bus, "s1", 1);
    let (s2, _) = room(&mut bus, "s2", 1);
    bus.send(&m, "/join-session master");
    bus.send_unsettled(&s1, "/join-session slave");
    assert!(bus.step()); // s1 matched at offset 1, its announcement under way
    bus.send_unsettled(&m, "/join-session master"); // renewed without s1's range
    bus.settle();
    bus.send(&s2, "/join-session slave");
    let frames = bus.frames(&m);
    assert_eq!(frames, vec!["!added-slave: s1", "connected: 2", "!added-slave: s2", "connected: 3"]);
}

#[test]
fn a_master_filled_by_a_link_that_falls_through_looks_again() {
    let mut bus = bus();
    let (m, _) = room(&mut bus, "m", 4);
    let (s, _) = room(&mut bus, "s", 4);
    bus.send(&m, "/join-session master");
    bus.send_unsettled(&s, "/join-session slave");
    assert!(bus.step()); // matched; m is full and leaves the pool
    bus.input("s", askutron_core::session::Input::Closed { socket: s.token, code: 1000 }); // s's host leaves
    bus.settle();
    assert!(bus.frames(&m).is_empty(), "no link was made");
    assert!(bus.mm.pool().contains("m"), "m looks again");
    let (s2, _) = room(&mut bus, "s2", 1);
    bus.send(&s2, "/join-session slave");
    assert_eq!(bus.frames(&m), vec!["!added-slave: s2", "connected: 5"]);
}
