//! PROTOCOL.md sections 2–6 as scenarios on the simulator: real inputs, an
//! injected clock, effects carried out as the Durable Objects do, on
//! loopback (calls between objects at once) unless a test says otherwise.

use askutron_core::session::{Frame, EPHEMERAL};
use askutron_core::settings::Settings;
use askutron_core::stats::{STATS_DELAY_MS, STATS_LAG_MS};
use askutron_core::wire::{Close, CLOSE_BINARY, CLOSE_HOST_UNAVAILABLE, CLOSE_RATE_LIMITED, CLOSE_TOO_BIG};
use askutron_sim::objects::Op;
use askutron_sim::{loopback, Config, Network, Sim, Sock};

fn sim() -> Sim {
    loopback(8)
}

/// A host on a new session, past its `session:` and `secret:` lines.
fn host(sim: &mut Sim, query: &str) -> (Sock, String) {
    let h = sim.host(query).expect("host connects");
    let frames = sim.frames(&h);
    assert_eq!(frames[0], format!("session: {}", h.sid));
    let secret = frames[1].strip_prefix("secret: ").expect("secret line").to_string();
    (h, secret)
}

/// A client that joined, and the id its host was told.
fn join(sim: &mut Sim, h: &Sock, query: &str) -> (Sock, u32) {
    let c = sim.client(&h.sid, query).expect("client connects");
    let frames = sim.frames(h);
    let id = frames.last().and_then(|f| f.strip_prefix("connected: ")).expect("connected line").parse().unwrap();
    (c, id)
}

/// A host with `n` clients.
fn room(sim: &mut Sim, id: &str, n: usize) -> (Sock, Vec<Sock>, String) {
    let (h, secret) = host(sim, &format!("id={id}"));
    let clients = (0..n).map(|_| join(sim, &h, "").0).collect();
    (h, clients, secret)
}

fn close_of(code: u16, reason: &'static str) -> Option<Close> {
    Some(Close { code, reason })
}

// ---- section 2: the host --------------------------------------------------------

#[test]
fn host_gets_session_then_secret_and_a_chosen_id_is_kept() {
    let mut sim = sim();
    let h = sim.host("id=room-1").unwrap();
    let frames = sim.frames(&h);
    assert_eq!(frames[0], "session: room-1");
    assert!(frames[1].starts_with("secret: ") && frames.len() == 2);
    assert_eq!(sim.host("id=room-1"), Err((409, "Session already exists".into())));
    assert_eq!(
        sim.host("id=room-1&secret=nope"),
        Err((404, "Could not connect to session (not found or invalid secret)".into()))
    );
    assert_eq!(
        sim.host("id=none&secret=x"),
        Err((404, "Could not connect to session (not found or invalid secret)".into()))
    );
    assert_eq!(sim.client("none", ""), Err((404, "Session not found".into())));
}

#[test]
fn relay_both_ways_byte_for_byte_with_unknown_and_invalid() {
    let mut sim = sim();
    let (h, _) = host(&mut sim, "");
    let (c, id) = join(&mut sim, &h, "");
    assert_eq!(id, 1);
    sim.send(&c, "hello\nsecond: line");
    assert_eq!(sim.frames(&h), vec!["1: hello\nsecond: line"]);
    sim.send(&h, "1: back\r\nü ✓");
    sim.send(&h, "1: ");
    assert_eq!(sim.frames(&c), vec!["back\r\nü ✓", ""]);
    sim.send(&h, "5: x");
    sim.send(&h, "99999999999999999999: x");
    for bad in ["hello", "5:x", "-1: x", "/nonsense", "", "1 : x", "/join-session master slave"] {
        sim.send(&h, bad);
    }
    sim.send(&h, "0: nobody linked");
    sim.send(&h, "/version");
    let mut expected = vec!["unknown: 5".to_string(), "unknown: 99999999999999999999".to_string()];
    expected.extend(std::iter::repeat_n("invalid".to_string(), 7));
    expected.push(format!("!version {}", askutron_core::VERSION));
    assert_eq!(sim.frames(&h), expected);
}

#[test]
fn take_over_replays_clients_then_queued_messages_in_order() {
    let mut sim = sim();
    let (h, secret) = host(&mut sim, "id=t");
    let (c1, _) = join(&mut sim, &h, "");
    let (c2, _) = join(&mut sim, &h, "");
    let (c3, _) = join(&mut sim, &h, "");
    sim.close(&c2, 1000);
    sim.frames(&h);
    sim.close(&h, 1001);
    sim.send(&c3, "first");
    sim.send(&c1, "second\nline");
    sim.send(&c3, "");
    let h2 = sim.host(&format!("id=t&secret={secret}")).unwrap();
    assert_eq!(
        sim.frames(&h2),
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
    let h3 = sim.host(&format!("id=t&secret={secret}")).unwrap();
    assert_eq!(sim.closed(&h2), close_of(4001, "taken over"));
    assert_eq!(sim.frames(&h3)[2..], ["connected: 1".to_string(), "connected: 3".into()]);
}

#[test]
fn two_take_overs_at_once_leave_exactly_one_host() {
    let mut sim = sim();
    let (h, secret) = host(&mut sim, "id=x");
    let (c, _) = join(&mut sim, &h, "");
    let a = sim.host(&format!("id=x&secret={secret}")).unwrap();
    let b = sim.host(&format!("id=x&secret={secret}")).unwrap();
    assert_eq!(sim.closed(&h), close_of(4001, "taken over"));
    assert_eq!(sim.closed(&a), close_of(4001, "taken over"));
    assert!(sim.is_open(&b));
    // The old hosts' closes arrive late and change nothing.
    sim.close(&h, 1000);
    sim.close(&a, 1000);
    sim.send(&c, "to b");
    assert_eq!(sim.frames(&b).last().unwrap(), "1: to b");
    assert!(sim.record("x").unwrap().host_away_until.is_none());
}

#[test]
fn the_session_waits_for_its_host_then_ends() {
    let settings = Settings::default();
    let mut sim = sim();
    let (h, secret) = host(&mut sim, "id=w");
    let (c, _) = join(&mut sim, &h, "");
    sim.close(&h, 1001);
    sim.advance(settings.reconnect_ms - 1.0);
    assert!(sim.is_open(&c));
    assert_eq!(sim.host("id=w"), Err((409, "Session already exists".into())), "409 for the whole window");
    sim.advance(1.0);
    assert_eq!(sim.closed(&c), close_of(4004, "session closed"));
    assert_eq!(sim.client("w", ""), Err((404, "Session not found".into())));
    assert_eq!(sim.host(&format!("id=w&secret={secret}")).unwrap_err().0, 404);
    // The id is free again.
    assert!(sim.host("id=w").is_ok());
    assert!(sim.sessions["w"].record.is_some());
}

#[test]
fn a_session_whose_host_left_before_using_it_still_waits_for_it() {
    let mut sim = sim();
    // A host that drops before sending anything, before any client came.
    let (h, secret) = host(&mut sim, "id=ROOM42");
    sim.close(&h, 1006);
    sim.advance(2_000.0);
    assert_eq!(sim.host("id=ROOM42"), Err((409, "Session already exists".into())));
    let back = sim.host(&format!("id=ROOM42&secret={secret}")).unwrap();
    assert!(sim.is_open(&back));
}

#[test]
fn reconnect_false_ends_the_session_when_the_host_leaves() {
    let mut sim = sim();
    let (h, _) = host(&mut sim, "id=nr&reconnect=false");
    let (c, _) = join(&mut sim, &h, "");
    sim.close(&h, 1000);
    assert_eq!(sim.closed(&c), close_of(4004, "session closed"));
    assert!(sim.log.iter().any(|e| e.name == "session_ended"));
    // Its figures still have to be taken back; then nothing is left stored.
    sim.advance(STATS_LAG_MS);
    let slot = &sim.sessions["nr"];
    assert!(slot.record.is_none() && slot.owed.is_none() && slot.life.alarm.is_none(), "{:?}", slot.owed);
}

// ---- section 3: the clients -----------------------------------------------------

#[test]
fn clients_get_the_smallest_free_id_and_the_full_session_refuses() {
    let mut sim = loopback(2);
    let (h, _) = host(&mut sim, "");
    let (c1, _) = join(&mut sim, &h, "");
    let (_c2, id2) = join(&mut sim, &h, "");
    assert_eq!(id2, 2);
    let refused = sim.client(&h.sid, "").unwrap();
    assert_eq!(refused.token, EPHEMERAL);
    let (_, frames, close) = sim.refused.last().unwrap().clone();
    assert_eq!(frames, vec!["error: no slots available, max clients reached"]);
    assert_eq!(close, Close { code: 4003, reason: "session full" });
    assert!(sim.frames(&h).is_empty(), "the host hears nothing of a refused client");
    sim.close(&c1, 1000);
    assert_eq!(sim.frames(&h), vec!["disconnected: 1"]);
    let (_, id) = join(&mut sim, &h, "");
    assert_eq!(id, 1);
}

#[test]
fn a_uuid_keeps_its_id_and_a_second_socket_replaces_the_first() {
    let mut sim = sim();
    let (h, _) = host(&mut sim, "");
    let (a, id) = join(&mut sim, &h, "client=u-1");
    assert_eq!(id, 1);
    sim.close(&a, 1000);
    assert_eq!(sim.frames(&h), vec!["disconnected: 1"]);
    let (_b, id) = join(&mut sim, &h, "");
    assert_eq!(id, 2, "id 1 stays out of reach for other clients");
    let (a2, id) = join(&mut sim, &h, "client=u-1");
    assert_eq!(id, 1);
    let a3 = sim.client(&h.sid, "client=u-1").unwrap();
    assert_eq!(sim.closed(&a2), close_of(4002, "replaced"));
    assert_eq!(sim.frames(&h), vec!["disconnected: 1", "connected: 1"]);
    // The replaced socket's own close later changes nothing.
    sim.close(&a2, 1000);
    assert!(sim.frames(&h).is_empty());
    sim.send(&a3, "still me");
    assert_eq!(sim.frames(&h), vec!["1: still me"]);
}

#[test]
fn bad_frames_close_only_their_sender() {
    let mut sim = sim();
    let (h, _) = host(&mut sim, "");
    let (c1, _) = join(&mut sim, &h, "");
    let (c2, _) = join(&mut sim, &h, "");
    let (c3, _) = join(&mut sim, &h, "");
    sim.frame(&c1, Frame::Binary);
    sim.frame(&c2, Frame::TooBig);
    assert_eq!(sim.closed(&c1), Some(CLOSE_BINARY));
    assert_eq!(sim.closed(&c2), Some(CLOSE_TOO_BIG));
    assert_eq!(sim.frames(&h), vec!["disconnected: 1", "disconnected: 2"]);
    sim.send(&c3, "fine");
    assert_eq!(sim.frames(&h), vec!["3: fine"]);
    sim.frame(&h, Frame::Binary);
    assert_eq!(sim.closed(&h), Some(CLOSE_BINARY));
    assert!(sim.record(&h.sid).unwrap().host_away_until.is_some());
}

// ---- section 5: nothing lost ------------------------------------------------------

#[test]
fn the_queue_keeps_256_kib_then_closes_the_sender_with_1013() {
    let mut sim = sim();
    let (h, secret) = host(&mut sim, "id=q");
    let (c, _) = join(&mut sim, &h, "");
    let (other, _) = join(&mut sim, &h, "");
    sim.close(&h, 1001);
    let chunk = "x".repeat(64 * 1024);
    for _ in 0..4 {
        sim.send(&c, &chunk);
    }
    assert!(sim.is_open(&c));
    sim.send(&c, "y");
    assert_eq!(sim.closed(&c), Some(CLOSE_HOST_UNAVAILABLE));
    assert_eq!(sim.closed(&c).unwrap().reason, "host unavailable");
    assert!(sim.is_open(&other));
    let h2 = sim.host(&format!("id=q&secret={secret}")).unwrap();
    let frames = sim.frames(&h2);
    assert_eq!(frames.iter().filter(|f| f.starts_with("1: x")).count(), 4);
    assert!(!frames.iter().any(|f| f == "1: y"));
}

#[test]
fn the_queue_keeps_4096_messages_then_closes_the_sender_with_1013() {
    let mut sim = sim();
    let (h, secret) = host(&mut sim, "id=e");
    let (c, _) = join(&mut sim, &h, "");
    sim.close(&h, 1006);
    // Empty messages weigh nothing, but count (within the rate limit).
    for round in 0..9 {
        for _ in 0..(if round < 8 { 500 } else { 96 }) {
            sim.send(&c, "");
        }
        sim.advance(3_000.0);
    }
    assert!(sim.is_open(&c), "4,096 kept");
    sim.send(&c, "");
    assert_eq!(sim.closed(&c), Some(CLOSE_HOST_UNAVAILABLE));
    assert_eq!(sim.sessions["e"].queue.len(), 4096);
    let h2 = sim.host(&format!("id=e&secret={secret}")).unwrap();
    assert_eq!(sim.frames(&h2).iter().filter(|f| *f == "1: ").count(), 4096);
}

#[test]
fn a_flood_is_cut_off_within_a_second_while_a_60hz_player_never_is() {
    let settings = Settings::default();
    let mut sim = sim();
    let (h, _) = host(&mut sim, "");
    let (player, _) = join(&mut sim, &h, "");
    let (flooder, _) = join(&mut sim, &h, "");
    // Ten seconds of a 60 Hz player, and a host answering 8 players at 60 Hz.
    let start = sim.now;
    let mut cut_off_at = None;
    for tick in 0..600 {
        sim.send(&player, "input");
        for _ in 0..8 {
            sim.send(&h, "1: state");
        }
        if tick % 6 == 0 {
            // The flooder sends 2,000 frames/s: 200 each 100 ms.
            for _ in 0..200 {
                sim.send(&flooder, "spam");
            }
        }
        sim.advance(1000.0 / 60.0);
        if sim.closed(&flooder).is_some() {
            cut_off_at.get_or_insert(sim.now - start);
        }
    }
    assert!(cut_off_at.is_some_and(|t| t <= 1000.0), "cut off after {cut_off_at:?} ms");
    assert_eq!(sim.closed(&flooder), Some(CLOSE_RATE_LIMITED));
    assert!(sim.is_open(&player) && sim.is_open(&h));
    assert!(settings.rate_per_second >= 60.0);
}

#[test]
fn a_byte_stream_beyond_the_byte_limit_is_closed_like_a_flood() {
    let settings = Settings::default();
    let mut sim = sim();
    let (h, _) = host(&mut sim, "");
    let (c, _) = join(&mut sim, &h, "");
    let big = "x".repeat(1 << 20);
    // A client's 4 MiB burst passes (4 frames of 1 MiB), the fifth does not.
    for _ in 0..4 {
        sim.send(&c, &big);
    }
    assert!(sim.is_open(&c));
    sim.send(&c, &big);
    assert_eq!(sim.closed(&c), Some(CLOSE_RATE_LIMITED));
    // A host may send 8 times as much: 8 clients' worth.
    let (c2, id) = join(&mut sim, &h, "");
    for _ in 0..32 {
        sim.send(&h, &format!("{id}: {big}")[..(1 << 20)]);
    }
    assert!(sim.is_open(&h));
    assert_eq!(sim.frames(&c2).len(), 32);
    sim.advance(1000.0);
    sim.send(&h, &format!("{id}: after a second, refilled"));
    assert!(sim.is_open(&h));
    assert_eq!(settings.limits(false).bytes_burst, 4.0 * 1024.0 * 1024.0);
}

#[test]
fn storage_failures_are_told_to_the_sender_or_the_host() {
    let mut sim = sim();
    let (h, secret) = host(&mut sim, "id=sf");
    let (c, _) = join(&mut sim, &h, "");
    let (c2, _) = join(&mut sim, &h, "");
    sim.close(&h, 1001);
    sim.send(&c, "one");
    sim.sessions.get_mut("sf").unwrap().fail.insert(Op::Enqueue);
    sim.send(&c2, "lost?");
    assert_eq!(sim.closed(&c2).map(|c| c.code), Some(1011), "the sender learns its message was not kept");
    sim.sessions.get_mut("sf").unwrap().fail.insert(Op::ReplayRead);
    let h2 = sim.host(&format!("id=sf&secret={secret}")).unwrap();
    assert_eq!(sim.closed(&h2).map(|c| c.code), Some(1011));
    assert!(!sim.frames(&h2).iter().any(|f| f == "1: one"));
    // Nothing was lost: the next take-over gets it.
    let h3 = sim.host(&format!("id=sf&secret={secret}")).unwrap();
    assert_eq!(sim.frames(&h3).last().unwrap(), "1: one");
    assert!(sim.log.iter().any(|e| e.name == "storage_error"));
}

#[test]
fn a_record_that_cannot_be_read_is_never_taken_for_no_session() {
    let mut sim = sim();
    let (h, secret) = host(&mut sim, "id=rd");
    let (c, _) = join(&mut sim, &h, "");
    sim.evict_now("rd");
    sim.sessions.get_mut("rd").unwrap().fail.insert(Op::Read);
    // Neither a new host nor a client is told the session does not exist.
    assert_eq!(sim.host("id=rd"), Err((503, "Storage unavailable: try again".into())));
    // The next read works: the session is there, whole.
    assert_eq!(sim.host("id=rd"), Err((409, "Session already exists".into())));
    sim.evict_now("rd");
    sim.sessions.get_mut("rd").unwrap().fail.insert(Op::Read);
    sim.send(&c, "while unreadable");
    assert_eq!(sim.closed(&c).map(|c| c.code), Some(1011), "told its message was not kept");
    let h2 = sim.host(&format!("id=rd&secret={secret}")).unwrap();
    assert!(sim.is_open(&h2));
}

#[test]
fn a_queue_delivered_but_not_deleted_is_never_delivered_again() {
    let mut sim = sim();
    let (h, c, secret) = room(&mut sim, "d", 1);
    sim.close(&h, 1006);
    sim.send(&c[0], "once");
    sim.sessions.get_mut("d").unwrap().fail.insert(Op::ReplayDelete);
    let h2 = sim.host(&format!("id=d&secret={secret}")).unwrap();
    let first = sim.frames(&h2);
    let h3 = sim.host(&format!("id=d&secret={secret}")).unwrap();
    let second = sim.frames(&h3);
    let n = first.iter().chain(second.iter()).filter(|f| *f == "1: once").count();
    assert_eq!(n, 1, "h2: {first:?}; h3: {second:?}");
}

// ---- section 6: timers --------------------------------------------------------------

#[test]
fn keep_alives_follow_each_sockets_period_and_are_never_relayed() {
    let settings = Settings::default();
    let mut sim = sim();
    let (h, _) = host(&mut sim, "keepAlive=ping");
    let (c, _) = join(&mut sim, &h, "keepAlive=pong");
    sim.advance(settings.keep_alive_ms - 10.0);
    assert!(sim.frames(&h).is_empty() && sim.frames(&c).is_empty());
    sim.advance(10.0);
    assert_eq!(sim.frames(&h), vec!["ping"]);
    assert_eq!(sim.frames(&c), vec!["pong"]);
    // After a wake-up from hibernation, the period holds.
    sim.evict_now(&h.sid);
    sim.advance(settings.keep_alive_ms);
    assert_eq!(sim.frames(&h), vec!["ping"]);
    assert_eq!(sim.frames(&c), vec!["pong"]);
}

#[test]
fn eviction_keeps_ids_uuids_secret_and_queue() {
    let mut sim = sim();
    let (h, secret) = host(&mut sim, "id=ev");
    let (c1, _) = join(&mut sim, &h, "client=u1");
    let (_c2, _) = join(&mut sim, &h, "");
    sim.close(&h, 1001);
    sim.send(&c1, "kept");
    sim.evict_now("ev");
    let c3 = sim.client("ev", "").unwrap();
    assert_eq!(sim.state(&c3).unwrap().attachment.as_ref().unwrap().client_id(), Some(3));
    let h2 = sim.host(&format!("id=ev&secret={secret}")).unwrap();
    let frames = sim.frames(&h2);
    assert_eq!(
        frames[2..],
        ["connected: 1".to_string(), "connected: 2".into(), "connected: 3".into(), "1: kept".into()]
    );
    sim.evict_now("ev");
    let again = sim.client("ev", "client=u1").unwrap();
    assert_eq!(sim.closed(&c1), close_of(4002, "replaced"));
    assert_eq!(sim.frames(&h2), vec!["disconnected: 1", "connected: 1"]);
    sim.send(&again, "after");
    assert_eq!(sim.frames(&h2), vec!["1: after"]);
}

#[test]
fn eviction_keeps_links_and_their_queued_lines() {
    let mut sim = sim();
    let (m, _, msecret) = room(&mut sim, "m", 1);
    let (s, sc, _) = room(&mut sim, "s", 1);
    sim.send(&m, "/join-session master");
    sim.send(&s, "/join-session slave");
    sim.frames(&m);
    sim.close(&m, 1006);
    sim.send(&sc[0], "while the master is away");
    sim.evict_now("m");
    sim.evict_now("s");
    sim.send(&sc[0], "after both woke");
    let m2 = sim.host(&format!("id=m&secret={msecret}")).unwrap();
    assert_eq!(
        sim.frames(&m2)[2..],
        [
            "!added-slave: s".to_string(),
            "connected: 1".into(),
            "connected: 2".into(),
            "2: while the master is away".into(),
            "2: after both woke".into()
        ]
    );
    sim.send(&m2, "2: back");
    assert_eq!(sim.frames(&sc[0]), vec!["back"]);
}

#[test]
fn a_restart_that_lost_the_hosts_close_starts_the_reconnect_window() {
    let mut sim = sim();
    let (h, _) = host(&mut sim, "id=r");
    let (c, _) = join(&mut sim, &h, "");
    // The runtime restarted: the host socket is gone, its close never came.
    sim.sessions.get_mut("r").unwrap().sockets.get_mut(&h.token).unwrap().closed_by_peer = true;
    sim.evict_now("r");
    sim.send(&c, "while away");
    assert!(sim.record("r").unwrap().host_away_until.is_some());
    let lines: Vec<&str> = sim.sessions["r"].queue.iter().map(|r| r.line.as_str()).collect();
    assert_eq!(lines, vec!["1: while away"]);
}

#[test]
fn stats_are_batched_and_answered_relay_wide() {
    let mut sim = sim();
    let (h, _) = host(&mut sim, "");
    let (h2, _) = host(&mut sim, "");
    join(&mut sim, &h, "");
    join(&mut sim, &h, "");
    join(&mut sim, &h2, "");
    sim.send(&h, "/stats");
    assert_eq!(
        sim.frames(&h),
        vec![r#"!stats {"numHostsOnline":0,"numHostsLookingForSession":0,"numClientsOnline":0,"numPlayers":0}"#]
    );
    sim.advance(STATS_DELAY_MS);
    sim.send(&h2, "/join-session master");
    sim.advance(STATS_LAG_MS);
    sim.send(&h, "/stats");
    assert_eq!(
        sim.frames(&h),
        vec![r#"!stats {"numHostsOnline":2,"numHostsLookingForSession":1,"numClientsOnline":3,"numPlayers":3}"#]
    );
    sim.close(&h, 1001);
    sim.advance(STATS_LAG_MS);
    sim.send(&h2, "/stats");
    assert_eq!(
        sim.frames(&h2).last().unwrap(),
        r#"!stats {"numHostsOnline":1,"numHostsLookingForSession":1,"numClientsOnline":3,"numPlayers":1}"#
    );
    // No figure ever reaches the Matchmaker: only matchmaking does.
    assert_eq!(
        sim.stats(),
        r#"{"numHostsOnline":1,"numHostsLookingForSession":1,"numClientsOnline":3,"numPlayers":1}"#
    );
}

// ---- section 4: matchmaking -------------------------------------------------------

#[test]
fn a_link_tells_the_master_every_slave_client_and_translates_both_ways() {
    let mut sim = sim();
    let (m, mc, _) = room(&mut sim, "m", 2);
    let (s, sc, _) = room(&mut sim, "s", 3);
    sim.send(&m, "/join-session master");
    sim.send(&s, "/join-session slave");
    assert_eq!(sim.frames(&m), vec!["!added-slave: s", "connected: 3", "connected: 4", "connected: 5"]);
    assert_eq!(sim.frames(&s), vec!["!set-master: m"]);
    // Slave client 1 is the master's 3; both hosts hear it.
    sim.send(&sc[0], "hi");
    assert_eq!(sim.frames(&s), vec!["1: hi"]);
    assert_eq!(sim.frames(&m), vec!["3: hi"]);
    sim.send(&m, "5: to s3");
    assert_eq!(sim.frames(&sc[2]), vec!["to s3"]);
    sim.send(&m, "6: nobody");
    assert_eq!(sim.frames(&m), vec!["unknown: 6"]);
    sim.send(&mc[0], "own");
    assert_eq!(sim.frames(&m), vec!["1: own"]);
    // 0: fans out.
    sim.send(&s, "0: from slave");
    assert_eq!(sim.frames(&m), vec!["0: from slave"]);
    sim.send(&m, "0: from master");
    assert_eq!(sim.frames(&s), vec!["0: from master"]);
    // A slave client leaving is heard at both hosts, translated.
    sim.close(&sc[1], 1000);
    assert_eq!(sim.frames(&s), vec!["disconnected: 2"]);
    assert_eq!(sim.frames(&m), vec!["disconnected: 4"]);
    sim.send(&m, "4: gone");
    assert_eq!(sim.frames(&m), vec!["unknown: 4"]);
}

#[test]
fn leaving_tells_the_other_side_and_the_master_loses_the_slaves_ids_first() {
    let mut sim = sim();
    let (m, _, _) = room(&mut sim, "m", 1);
    let (s, _, _) = room(&mut sim, "s", 2);
    sim.send(&m, "/join-session master");
    sim.send(&s, "/join-session");
    sim.frames(&m);
    sim.frames(&s);
    sim.send(&s, "/leave-session");
    assert_eq!(sim.frames(&m), vec!["disconnected: 2", "disconnected: 3", "!slave-left: s"]);
    // The slave admits clients again.
    let (_, id) = join(&mut sim, &s, "");
    assert_eq!(id, 3);
    // A master leaving: its slaves hear !master-left.
    let (s2, _, _) = room(&mut sim, "s2", 1);
    sim.send(&m, "/join-session master");
    sim.send(&s2, "/join-session slave id=m");
    assert_eq!(sim.frames(&m), vec!["!added-slave: s2", "connected: 2"]);
    sim.send(&m, "/leave-session");
    assert_eq!(sim.frames(&m), vec!["disconnected: 2"]);
    assert_eq!(sim.frames(&s2), vec!["!set-master: m", "!master-left"]);
}

#[test]
fn a_session_that_ends_unlinks_and_peers_that_are_gone_unlink_too() {
    let mut sim = sim();
    let (m, _, _) = room(&mut sim, "m", 1);
    let (s, _, _) = room(&mut sim, "s", 1);
    sim.send(&m, "/join-session master");
    sim.send(&s, "/join-session slave");
    sim.frames(&m);
    sim.close(&s, 1001);
    sim.advance(Settings::default().reconnect_ms);
    assert_eq!(sim.frames(&m), vec!["disconnected: 2", "!slave-left: s"]);
    // A peer that vanished without a word (410): the link ends on first use.
    let (s2, _, _) = room(&mut sim, "s2", 1);
    sim.send(&m, "/join-session master");
    sim.send(&s2, "/join-session slave");
    sim.frames(&m);
    sim.sessions.remove("s2");
    sim.send(&m, "0: anyone?");
    assert_eq!(sim.frames(&m), vec!["disconnected: 2", "!slave-left: s2"]);
}

#[test]
fn a_take_over_replays_the_links_then_every_addressable_client() {
    let mut sim = sim();
    let (m, _, msecret) = room(&mut sim, "m", 1);
    let (s1, _, s1secret) = room(&mut sim, "s1", 2);
    let (s2, _, _) = room(&mut sim, "s2", 1);
    sim.send(&m, "/join-session master");
    sim.send(&s1, "/join-session slave");
    sim.send(&s2, "/join-session slave");
    let m2 = sim.host(&format!("id=m&secret={msecret}")).unwrap();
    assert_eq!(
        sim.frames(&m2)[2..],
        [
            "!added-slave: s1".to_string(),
            "!added-slave: s2".into(),
            "connected: 1".into(),
            "connected: 2".into(),
            "connected: 3".into(),
            "connected: 4".into()
        ]
    );
    let s1b = sim.host(&format!("id=s1&secret={s1secret}")).unwrap();
    assert_eq!(sim.frames(&s1b)[2..], ["!set-master: m".to_string(), "connected: 1".into(), "connected: 2".into()]);
}

/// Found by the simulator (seed 40888): a link that ends while the master's
/// host is away leaves its `disconnected:` lines in the queue; a client that
/// connects meanwhile must not get one of those ids, or the host that takes
/// over hears its `connected:` and then, from the queue, its `disconnected:`.
#[test]
fn ids_whose_disconnect_the_absent_host_has_not_heard_are_not_given_out() {
    let mut sim = sim();
    let (m, msecret) = host(&mut sim, "id=m");
    let (s, _, _) = room(&mut sim, "s", 1);
    sim.send(&m, "/join-session master");
    sim.send(&s, "/join-session slave");
    assert_eq!(sim.frames(&m), vec!["!added-slave: s", "connected: 1"]);
    sim.close(&m, 1006);
    sim.send(&s, "/leave-session");
    let _c = sim.client("m", "").unwrap();
    let m2 = sim.host(&format!("id=m&secret={msecret}")).unwrap();
    assert_eq!(
        sim.frames(&m2)[2..],
        ["connected: 2".to_string(), "disconnected: 1".into(), "!slave-left: s".into()],
        "the new client is 2: the host still believed 1 taken"
    );
    // Heard: 1 is free again.
    let (_c2, id) = join(&mut sim, &m2, "");
    assert_eq!(id, 1);
}

#[test]
fn joining_itself_is_invalid_and_starts_no_search() {
    let mut sim = sim();
    let (h, _, _) = room(&mut sim, "me", 1);
    sim.send(&h, "/join-session id=me");
    assert_eq!(sim.frames(&h), vec!["invalid"]);
    assert!(!sim.mm.searches.contains_key("me"));
    let (_, id) = join(&mut sim, &h, "");
    assert_eq!(id, 2, "not frozen");
}

#[test]
fn capacity_is_frozen_at_the_client_count() {
    let mut sim = loopback(4);
    // Clients 1 and 2 left: one client, id 3.
    let (m, mc, _) = room(&mut sim, "m", 3);
    sim.close(&mc[0], 1000);
    sim.close(&mc[1], 1000);
    sim.frames(&m);
    sim.send(&m, "/join-session master");
    assert_eq!(sim.client("m", "").unwrap().token, EPHEMERAL, "frozen: no new clients");
    // A slave of 3 fits beside 1 client (4 in all), placed after id 3.
    let (s, _, _) = room(&mut sim, "s", 3);
    sim.send(&s, "/join-session slave");
    assert_eq!(sim.frames(&m), vec!["!added-slave: s", "connected: 4", "connected: 5", "connected: 6"]);
}

#[test]
fn a_master_takes_at_most_max_clients_slaves_even_empty_ones() {
    let mut sim = sim();
    let (m, _, _) = room(&mut sim, "m", 1);
    sim.send(&m, "/join-session master private");
    for i in 0..12 {
        let (s, _, _) = room(&mut sim, &format!("z{i}"), 0);
        sim.send(&s, "/join-session slave id=m");
    }
    assert_eq!(sim.record("m").unwrap().group.slaves.len(), 8);
    let added = sim.frames(&m).iter().filter(|f| f.starts_with("!added-slave")).count();
    assert_eq!(added, 8);
}

#[test]
fn a_slaves_client_that_talks_before_the_master_confirms_is_heard_after_the_link() {
    let mut sim = sim();
    let (m, _, _) = room(&mut sim, "m", 1);
    let (s, sc, _) = room(&mut sim, "s", 1);
    sim.send(&m, "/join-session master");
    sim.send_unsettled(&s, "/join-session slave");
    // Until the slave holds the offer: its host has heard nothing yet.
    while sim.record("s").unwrap().group.master.is_none() {
        assert!(sim.step());
    }
    assert!(sim.frames(&s).is_empty());
    sim.send_unsettled(&sc[0], "early");
    sim.settle();
    assert_eq!(sim.frames(&m), vec!["!added-slave: s", "connected: 2", "2: early"]);
    assert_eq!(sim.frames(&s), vec!["1: early", "!set-master: m"]);
}

#[test]
fn racing_searches_announce_slaves_in_the_order_of_their_ranges() {
    for seed in 0..50u64 {
        let mut config = Config::new(Settings::default());
        config.seed = seed;
        config.network = Network::EDGE;
        let mut sim = Sim::new(config);
        let (m, _, _) = room(&mut sim, "m", 1);
        let mut slaves = Vec::new();
        for i in 1..=7 {
            slaves.push(room(&mut sim, &format!("s{i}"), 1));
        }
        for (s, _, _) in &slaves[..4] {
            sim.send(s, "/join-session id=m");
        }
        // At the same moment: the master opens, three more slaves search.
        sim.send_unsettled(&m, "/join-session master private");
        for (s, _, _) in &slaves[4..] {
            sim.send_unsettled(s, "/join-session slave id=m");
        }
        sim.settle();
        let frames = sim.frames(&m);
        // Every !added-slave is followed by exactly its slave's ids, lowest first.
        let mut expected_next = 2;
        for (i, f) in frames.iter().enumerate() {
            if f.starts_with("!added-slave: ") {
                assert_eq!(frames[i + 1], format!("connected: {expected_next}"), "seed {seed}: {frames:?}");
                expected_next += 1;
            }
        }
        assert_eq!(expected_next, 9, "seed {seed}: {frames:?}");
        // Each slave's client 1 is reached at the id its announcement implied.
        for (s, clients, _) in &slaves {
            let at = frames.iter().position(|f| *f == format!("!added-slave: {}", s.sid)).unwrap();
            let n: u32 = frames[at + 1].strip_prefix("connected: ").unwrap().parse().unwrap();
            sim.send(&m, &format!("{n}: for {}", s.sid));
            assert_eq!(sim.frames(&clients[0]), vec![format!("for {}", s.sid)], "seed {seed}");
        }
    }
}

#[test]
fn steam_friends_are_matched_first_and_a_failure_falls_back_to_anyone() {
    let mut sim = sim();
    sim.steam.insert("100".into(), ["200".to_string()].into());
    let (stranger, _, _) = room(&mut sim, "stranger", 1);
    let (friend, _, _) = room(&mut sim, "friend", 1);
    let (me, _, _) = room(&mut sim, "me", 1);
    sim.send(&stranger, "/join-session master steamUserId=300");
    sim.send(&friend, "/join-session master steamUserId=200");
    sim.send(&me, "/join-session slave steamUserId=100");
    assert_eq!(sim.frames(&me), vec!["!set-master: friend"]);
    let (other, _, _) = room(&mut sim, "other", 1);
    sim.send(&other, "/join-session slave steamUserId=999");
    assert_eq!(sim.frames(&other), vec!["!set-master: stranger"]);
}

#[test]
fn a_full_matchmaker_refuses_with_invalid_and_unfreezes() {
    let mut sim = Sim::new(Config::new(Settings { max_searches: 1, ..Settings::default() }));
    let (a, _, _) = room(&mut sim, "a", 0);
    let (b, _, _) = room(&mut sim, "b", 0);
    sim.send(&a, "/join-session master");
    sim.send(&b, "/join-session master");
    assert_eq!(sim.frames(&b), vec!["invalid"]);
    let (_, id) = join(&mut sim, &b, "");
    assert_eq!(id, 1);
}

// ---- races: a link's steps interleaved with other events --------------------------

/// Runs events until `done` holds.
fn until(sim: &mut Sim, mut done: impl FnMut(&Sim) -> bool) {
    while !done(sim) {
        assert!(sim.step(), "ran out of events");
    }
}

#[test]
fn a_link_that_reaches_a_master_after_it_left_is_refused_and_the_slave_never_hears_of_it() {
    let mut sim = sim();
    let (m, _, _) = room(&mut sim, "m", 1);
    let (s, sc, _) = room(&mut sim, "s", 2);
    sim.send(&m, "/join-session master");
    sim.send_unsettled(&s, "/join-session slave");
    until(&mut sim, |sim| sim.record("s").unwrap().group.master.is_some()); // the slave holds the offer
    sim.send_unsettled(&m, "/leave-session");
    let own = sim.client("m", "").unwrap(); // m admits clients again: id 2
    sim.settle();
    let frames = sim.frames(&m);
    assert_eq!(frames, vec!["connected: 2"]);
    assert!(sim.frames(&s).is_empty(), "its master never took it: the slave's host heard nothing");
    assert!(sim.mm.searches.contains_key("s"), "and it searches on");
    sim.send(&m, "2: hello");
    assert_eq!(sim.frames(&own), vec!["hello"]);
    assert!(sim.frames(&sc[0]).is_empty());
}

#[test]
fn a_search_renewed_during_an_announcement_keeps_the_announced_range() {
    let mut sim = sim();
    let (m, _, _) = room(&mut sim, "m", 1);
    let (s1, _, _) = room(&mut sim, "s1", 1);
    let (s2, _, _) = room(&mut sim, "s2", 1);
    sim.send(&m, "/join-session master");
    sim.send_unsettled(&s1, "/join-session slave");
    until(&mut sim, |sim| !sim.mm.jobs.is_empty()); // s1 matched, its announcement under way
    sim.send_unsettled(&m, "/join-session master"); // renewed without s1's range
    sim.settle();
    sim.send(&s2, "/join-session slave");
    let frames = sim.frames(&m);
    assert_eq!(frames, vec!["!added-slave: s1", "connected: 2", "!added-slave: s2", "connected: 3"]);
}

#[test]
fn a_master_filled_by_a_link_that_falls_through_looks_again() {
    let mut sim = sim();
    let (m, _, _) = room(&mut sim, "m", 4);
    let (s, _, _) = room(&mut sim, "s", 4);
    sim.send(&m, "/join-session master");
    sim.send_unsettled(&s, "/join-session slave");
    until(&mut sim, |sim| !sim.mm.jobs.is_empty()); // matched; m is full and left the pool
    sim.close_unsettled(&s, 1000); // s's host leaves
    sim.settle();
    assert!(sim.frames(&m).is_empty(), "no link was made");
    assert!(sim.mm.searches.contains_key("m"), "m looks again");
    let (s2, _, _) = room(&mut sim, "s2", 1);
    sim.send(&s2, "/join-session slave");
    assert_eq!(sim.frames(&m), vec!["!added-slave: s2", "connected: 5"]);
}

#[test]
fn a_searching_session_that_ends_leaves_the_pool_and_the_figures() {
    let mut sim = sim();
    let (a, _, _) = room(&mut sim, "a", 1);
    let (b, _, _) = room(&mut sim, "b", 0);
    sim.send(&a, "/join-session master");
    sim.send(&b, "/join-session master");
    let (c, _, _) = room(&mut sim, "c", 0);
    sim.send(&c, "/join-session slave id=nobody");
    sim.advance(STATS_LAG_MS);
    assert_eq!(
        sim.stats(),
        r#"{"numHostsOnline":3,"numHostsLookingForSession":3,"numClientsOnline":1,"numPlayers":1}"#
    );
    sim.close(&c, 1000);
    sim.advance(Settings::default().reconnect_ms);
    for h in [&a, &b] {
        sim.close(h, 1000);
    }
    sim.advance(Settings::default().reconnect_ms + STATS_LAG_MS);
    assert!(sim.mm.searches.is_empty(), "{:?}", sim.mm.searches.keys().collect::<Vec<_>>());
    assert_eq!(
        sim.stats(),
        r#"{"numHostsOnline":0,"numHostsLookingForSession":0,"numClientsOnline":0,"numPlayers":0}"#
    );
    askutron_sim::check::heal(&mut sim, 10_000.0).unwrap();
}
