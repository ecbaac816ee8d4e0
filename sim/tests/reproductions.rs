//! The review's reproductions (`shared/reproductions/review.rs`, r1–r13),
//! rewritten as simulator scenarios. Each states what PROTOCOL.md requires of
//! a call that is lost, late or overtaken, a race at the edge of a link, a
//! queue of linked sessions, a storage fault or a bound, and failed against
//! 1.1.0. They stay, so the defects stay fixed.

use askutron_core::channel::{MAX_BUFFERED_BYTES, WINDOW};
use askutron_core::wire::CLOSE_HOST_UNAVAILABLE;
use askutron_sim::objects::Op;
use askutron_sim::{check, loopback, ObjectId, Sim, Sock};

fn sim() -> Sim {
    loopback(8)
}

/// A host with `n` clients, past its first two lines.
fn room(sim: &mut Sim, id: &str, n: usize) -> (Sock, Vec<Sock>, String) {
    let h = sim.host(&format!("id={id}")).expect("host connects");
    let secret = sim.frames(&h)[1].strip_prefix("secret: ").expect("secret line").to_string();
    let clients = (0..n).map(|_| sim.client(id, "").unwrap()).collect();
    sim.frames(&h);
    (h, clients, secret)
}

fn session(sid: &str) -> ObjectId {
    ObjectId::Session(sid.to_string())
}

/// Runs events until `done` holds.
fn until(sim: &mut Sim, mut done: impl FnMut(&Sim) -> bool) {
    while !done(sim) {
        assert!(sim.step(), "ran out of events");
    }
}

/// r1. A master that closed its search but whose cancel cannot reach the
/// Matchmaker (cut off for a while) stays in the pool; a slave matched with
/// it is refused by it, goes back in the pool in its place, and joins the
/// live master. Its host only ever hears its real master.
#[test]
fn r1_a_stale_master_in_the_pool_never_captures_a_slave() {
    let mut sim = sim();
    let (m1, _, _) = room(&mut sim, "m1", 1);
    sim.send(&m1, "/join-session master");
    sim.cut(session("m1"), 40_000.0);
    sim.send_unsettled(&m1, "/close-session");
    let (m2, _, _) = room(&mut sim, "m2", 1);
    sim.send(&m2, "/join-session master");
    let mut outcomes = Vec::new();
    for i in 0..3 {
        let (s, _, _) = room(&mut sim, &format!("s{i}"), i % 2);
        sim.send(&s, "/join-session slave");
        outcomes.push(sim.frames(&s));
    }
    assert_eq!(outcomes[0], vec!["!set-master: m2"], "{outcomes:?}");
    assert!(outcomes.iter().all(|o| o.iter().all(|f| f == "!set-master: m2")), "{outcomes:?}");
    sim.advance(60_000.0);
    sim.settle();
    assert!(!sim.mm.searches.contains_key("m1"), "the cancel arrived once the cut healed");
    check::heal(&mut sim, 10_000.0).unwrap();
}

/// r2. A `Lead` lost in transport is sent again: the link is made, both
/// sides agree, and the master's search is where its record says it is.
#[test]
fn r2_a_lost_lead_is_sent_again_and_the_master_is_never_frozen() {
    let mut sim = sim();
    let (m, _, _) = room(&mut sim, "m", 4);
    let (s, _, _) = room(&mut sim, "s", 4);
    sim.send(&m, "/join-session master");
    sim.send_unsettled(&s, "/join-session slave");
    until(&mut sim, |sim| {
        let jobs = sim.mm.core.as_ref().map(|c| c.jobs().values().cloned().collect::<Vec<_>>()).unwrap_or_default();
        jobs.iter().any(|j| matches!(j.stage, askutron_core::matchmaker::Stage::Lead { .. }))
    });
    sim.lose_next_calls_from(ObjectId::Matchmaker, 1); // the Lead
    sim.settle();
    assert_eq!(sim.frames(&m), vec!["!added-slave: s", "connected: 5", "connected: 6", "connected: 7", "connected: 8"]);
    assert_eq!(sim.frames(&s), vec!["!set-master: m"]);
    // m is full: it stopped searching, in its record and in the pool alike.
    assert!(sim.record("m").unwrap().group.search.is_none());
    check::heal(&mut sim, 10_000.0).unwrap();
    // Its slave leaves: m may search again, and is matched.
    sim.send(&s, "/leave-session");
    sim.send(&m, "/join-session master");
    let (s2, _, _) = room(&mut sim, "s2", 1);
    sim.send(&s2, "/join-session slave");
    assert_eq!(sim.frames(&s2), vec!["!set-master: m"]);
}

/// r3. A master that never heard its slave leave (cut off) and keeps writing
/// to it cannot reach the clients or the host of a session that has joined
/// another group meanwhile: every message names its link, and the slave
/// refuses a link it does not hold. The stale master then learns.
#[test]
fn r3_a_stale_master_never_reaches_a_session_of_another_group() {
    let mut sim = sim();
    let (m, _, _) = room(&mut sim, "m", 1);
    let (s, sc, _) = room(&mut sim, "s", 1);
    sim.send(&m, "/join-session master");
    sim.send(&s, "/join-session slave");
    assert_eq!(sim.frames(&m), vec!["!added-slave: s", "connected: 2"]);
    sim.frames(&s);
    sim.cut(session("m"), 5_000.0);
    sim.send_unsettled(&s, "/leave-session");
    let (m2, _, _) = room(&mut sim, "m2", 1);
    sim.send(&m2, "/join-session master");
    sim.send(&s, "/join-session slave id=m2");
    assert_eq!(sim.frames(&s), vec!["!set-master: m2"]);
    sim.advance(6_000.0);
    sim.send(&m, "2: from the old master");
    sim.send(&m, "0: old master's broadcast");
    assert!(sim.frames(&sc[0]).is_empty(), "a session m is not linked to must not reach s's client");
    assert!(sim.frames(&s).is_empty(), "nor its host");
    let heard = sim.frames(&m);
    assert!(heard.contains(&"!slave-left: s".to_string()), "{heard:?}");
    check::heal(&mut sim, 10_000.0).unwrap();
}

/// r4. A link that reaches a master after `/close-session` is refused (stop
/// being joinable), even with a slave already linked; the slave's host never
/// hears of it, and it searches on.
#[test]
fn r4_a_link_in_flight_is_refused_after_close_session() {
    let mut sim = sim();
    let (m, _, _) = room(&mut sim, "m", 1);
    let (s1, _, _) = room(&mut sim, "s1", 1);
    let (s2, _, _) = room(&mut sim, "s2", 1);
    sim.send(&m, "/join-session master");
    sim.send(&s1, "/join-session slave");
    sim.frames(&m);
    sim.send_unsettled(&s2, "/join-session slave");
    until(&mut sim, |sim| sim.record("s2").unwrap().group.master.is_some());
    sim.send_unsettled(&m, "/close-session");
    sim.settle();
    let frames = sim.frames(&m);
    assert!(!frames.iter().any(|f| f.starts_with("!added-slave")), "m stopped being joinable: {frames:?}");
    assert!(sim.frames(&s2).is_empty());
    assert!(sim.mm.searches.contains_key("s2"));
    check::heal(&mut sim, 10_000.0).unwrap();
}

/// r5. The same race with the master's host away: the master stopped
/// searching when its host left, so the link is refused; a take-over hears
/// no `!added-slave:` (and no `connected:` line of that slave before it).
#[test]
fn r5_a_link_in_flight_while_the_masters_host_leaves_is_refused() {
    let mut sim = sim();
    let (m, _, secret) = room(&mut sim, "m", 1);
    let (s1, _, _) = room(&mut sim, "s1", 1);
    let (s2, _, _) = room(&mut sim, "s2", 1);
    sim.send(&m, "/join-session master");
    sim.send(&s1, "/join-session slave");
    sim.frames(&m);
    sim.send_unsettled(&s2, "/join-session slave");
    until(&mut sim, |sim| sim.record("s2").unwrap().group.master.is_some());
    sim.close(&m, 1006);
    let h2 = sim.host(&format!("id=m&secret={secret}")).unwrap();
    let frames = sim.frames(&h2);
    assert_eq!(frames[2..], ["!added-slave: s1".to_string(), "connected: 1".into(), "connected: 2".into()]);
    assert!(sim.frames(&s2).is_empty());
}

/// r6. A master's host away for a while never closes the slave's clients
/// with 1013: their own host is connected and hears every message. What
/// does not fit the master's queue ends the link instead, with notice.
#[test]
fn r6_slave_clients_are_never_closed_because_the_masters_host_is_away() {
    let mut sim = sim();
    let (m, _, msecret) = room(&mut sim, "m", 1);
    let (s, sc, _) = room(&mut sim, "s", 1);
    sim.send(&m, "/join-session master");
    sim.send(&s, "/join-session slave");
    sim.frames(&s);
    sim.close(&m, 1006); // the master's host has a network blip
    let chunk = "x".repeat(64 * 1024);
    for _ in 0..5 {
        sim.send(&sc[0], &chunk);
        sim.advance(1_000.0);
    }
    assert_eq!(sim.closed(&sc[0]), None, "the slave's own host is connected and got every message");
    let heard = sim.frames(&s);
    assert_eq!(heard.iter().filter(|f| f.starts_with("1: x")).count(), 5);
    assert_eq!(heard.last().unwrap(), "!master-left", "the fifth did not fit the master's queue");
    let m2 = sim.host(&format!("id=m&secret={msecret}")).unwrap();
    let frames: Vec<String> = sim.frames(&m2).into_iter().map(|f| f.chars().take(20).collect()).collect();
    assert_eq!(frames.iter().filter(|f| f.starts_with("2: x")).count(), 4);
    assert_eq!(frames[frames.len() - 2..], ["disconnected: 2".to_string(), "!slave-left: s".into()]);
    assert_ne!(sim.closed(&sc[0]), Some(CLOSE_HOST_UNAVAILABLE));
}

/// r7. Link lines are kept outside the queue's bound: a full queue never
/// drops `!slave-left:`.
#[test]
fn r7_slave_left_is_kept_when_the_masters_queue_is_full() {
    let mut sim = sim();
    let (m, mc, secret) = room(&mut sim, "m", 1);
    let (s, _, _) = room(&mut sim, "s", 1);
    sim.send(&m, "/join-session master");
    sim.send(&s, "/join-session slave");
    sim.close(&m, 1006);
    let chunk = "x".repeat(64 * 1024);
    for _ in 0..4 {
        sim.send(&mc[0], &chunk); // exactly 256 KiB: all kept
    }
    assert!(sim.is_open(&mc[0]));
    sim.send(&s, "/leave-session");
    let h2 = sim.host(&format!("id=m&secret={secret}")).unwrap();
    let frames: Vec<String> = sim.frames(&h2).into_iter().map(|f| f.chars().take(20).collect()).collect();
    assert_eq!(frames.last().map(String::as_str), Some("!slave-left: s"), "{frames:?}");
    assert!(frames.contains(&"disconnected: 2".to_string()));
}

/// r8. The queue is sent, then deleting it fails: it is never sent again.
#[test]
fn r8_a_failed_delete_after_a_replay_never_duplicates_the_queue() {
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

/// r9. A link the master refused holds nothing up: no call to it is sent at
/// all (a slave sends nothing until its master confirms), and the slave's
/// other calls are answered at once.
#[test]
fn r9_a_refused_link_holds_nothing_up() {
    let mut sim = sim();
    let (m, _, _) = room(&mut sim, "m", 1);
    let (s, sc, _) = room(&mut sim, "s", 1);
    sim.send(&m, "/join-session master");
    sim.send_unsettled(&s, "/join-session slave");
    until(&mut sim, |sim| sim.record("s").unwrap().group.master.is_some());
    for i in 0..5 {
        sim.send_unsettled(&sc[0], &format!("early {i}"));
    }
    sim.send_unsettled(&m, "/leave-session"); // m will refuse the link
    sim.send_unsettled(&s, "/stats");
    let start = sim.now;
    sim.settle();
    let heard = sim.frames(&s);
    assert!(heard.iter().any(|f| f.starts_with("!stats ")), "{heard:?}");
    assert!(sim.now - start < 1_000.0, "settled after {} ms", sim.now - start);
    assert!(!sim.frames(&m).iter().any(|f| f.contains("early")));
}

/// r10. A host that drops before using its session keeps it for the whole
/// reconnect window: `409` to anyone without the secret.
#[test]
fn r10_an_unused_session_in_its_reconnect_window_cannot_be_claimed() {
    let mut sim = sim();
    let h = sim.host("id=ROOM42").unwrap();
    let secret = sim.frames(&h)[1].strip_prefix("secret: ").unwrap().to_string();
    sim.close(&h, 1006); // a 2 s Wi-Fi blip before the first player joined
    sim.advance(2_000.0);
    assert_eq!(sim.host("id=ROOM42").err().map(|e| e.0), Some(409));
    assert!(sim.host(&format!("id=ROOM42&secret={secret}")).is_ok());
}

/// r11. A link's calls are batched, pipelined and bounded: a burst of 500
/// frames of 8 KiB from a slave's client, all at once (no answer comes back
/// meanwhile), makes at most `WINDOW` calls in flight and holds at most
/// 1 MiB; what does not fit ends the link with notice. The client is never
/// closed, its own host hears all 500.
#[test]
fn r11_a_links_calls_are_batched_and_bounded() {
    let mut sim = sim();
    let (m, _, _) = room(&mut sim, "m", 1);
    let (s, sc, _) = room(&mut sim, "s", 1);
    sim.send(&m, "/join-session master");
    sim.send(&s, "/join-session slave");
    sim.frames(&m);
    sim.frames(&s);
    let payload = "y".repeat(8 * 1024);
    let mut most = 0;
    for _ in 0..500 {
        sim.send_unsettled(&sc[0], &payload);
        let core = sim.sessions["s"].core.as_ref().unwrap();
        most = most.max(core.calls_in_flight());
        for channel in core.channels().values() {
            assert!(channel.buffered().1 <= MAX_BUFFERED_BYTES);
        }
    }
    assert!(most <= WINDOW, "{most} calls in flight");
    assert!(sim.is_open(&sc[0]));
    sim.settle();
    let own = sim.frames(&s);
    assert_eq!(own.iter().filter(|f| f.starts_with("1: y")).count(), 500);
    let at_master = sim.frames(&m);
    let relayed = at_master.iter().filter(|f| f.starts_with("2: y")).count();
    // No time passes during the burst: the first call leaves at once, the
    // next ones wait for the link's pace (channel.rs) while the bound fills.
    assert!(relayed >= 1 && relayed < 500, "{relayed} relayed before the bound");
    assert_eq!(at_master[relayed..], ["disconnected: 2".to_string(), "!slave-left: s".into()]);
    assert_eq!(own.iter().filter(|f| *f == "!master-left").count(), 1, "the slave's host is told too");
}

/// r11, paced: the same 500 frames as a game sends them (answers come back
/// in between) all cross the link, in order, with at most `WINDOW` calls in
/// flight and many frames per call once the window is full.
#[test]
fn r11_a_paced_stream_crosses_the_link_whole() {
    let mut sim = sim();
    let (m, _, _) = room(&mut sim, "m", 1);
    let (s, sc, _) = room(&mut sim, "s", 1);
    sim.send(&m, "/join-session master");
    sim.send(&s, "/join-session slave");
    sim.frames(&m);
    sim.frames(&s);
    for i in 0..500 {
        sim.send_unsettled(&sc[0], &format!("{i} {}", "y".repeat(8 * 1024)));
        if i % 10 == 9 {
            // An answer comes back now and then.
            sim.step();
            sim.step();
        }
        assert!(sim.sessions["s"].core.as_ref().unwrap().calls_in_flight() <= WINDOW);
    }
    sim.settle();
    // Each exactly once, in order.
    let got: Vec<String> =
        sim.frames(&m).into_iter().map(|f| f.split(' ').take(2).collect::<Vec<_>>().join(" ")).collect();
    let expected: Vec<String> = (0..500).map(|i| format!("2: {i}")).collect();
    assert!(got == expected, "{} frames, first {:?}", got.len(), &got[..got.len().min(5)]);
    assert!(sim.frames(&s).iter().all(|f| f.starts_with("1: ")), "the link stood");
}

/// r12. Empty messages count: the queue for an absent host holds at most
/// 4,096 messages, whatever their size.
#[test]
fn r12_empty_frames_are_queued_within_the_bound() {
    let mut sim = sim();
    let (h, c, _) = room(&mut sim, "e", 1);
    sim.close(&h, 1006);
    for _ in 0..50 {
        for _ in 0..200 {
            sim.send(&c[0], "");
        }
        sim.advance(1000.0);
    }
    let r = sim.record("e").unwrap();
    assert!(r.queued_lines <= 4096 && sim.sessions["e"].queue.len() <= 4096);
    assert_eq!(sim.closed(&c[0]), Some(CLOSE_HOST_UNAVAILABLE));
}

/// r13. A master takes at most `MAX_CLIENTS` slaves, empty ones included.
#[test]
fn r13_a_master_takes_at_most_max_clients_slaves() {
    let mut sim = sim();
    let (m, _, _) = room(&mut sim, "m", 1);
    sim.send(&m, "/join-session master private");
    for i in 0..40 {
        let (s, _, _) = room(&mut sim, &format!("z{i}"), 0);
        sim.send(&s, "/join-session slave id=m");
    }
    assert_eq!(sim.record("m").unwrap().group.slaves.len(), 8);
}
