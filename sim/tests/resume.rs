//! docs/PROTOCOL.md section 7 (heartbeat and acknowledged resume) on the
//! simulator: numbering, acknowledgements, windows, resumes across silent
//! deaths, eviction and resets, and the gap where a window cannot help.

use askutron_core::stream::{RESERVED, WINDOW_BYTES};
use askutron_core::wire::ext;
use askutron_sim::objects::Op;
use askutron_sim::{loopback, ObjectId, Sim, Sock};

/// `␁`-lines and the rest, apart.
fn split(frames: Vec<String>) -> (Vec<String>, Vec<String>) {
    frames.into_iter().partition(|f| ext::is_ext(f))
}

/// A resume host on `sid` with `n` resume clients (uuids `u1`, `u2`, …).
fn room(sim: &mut Sim, sid: &str, n: usize) -> (Sock, String, Vec<Sock>) {
    let h = sim.host(&format!("id={sid}&resume=1")).unwrap();
    let frames = sim.frames(&h);
    assert_eq!(frames[0], format!("session: {sid}"));
    let secret = frames[1].strip_prefix("secret: ").unwrap().to_string();
    assert_eq!(frames[2..], [ext::resume(0, false)]);
    let clients = (1..=n)
        .map(|i| {
            let c = sim.client(sid, &format!("client=u{i}&resume=1")).unwrap();
            assert_eq!(sim.frames(&c), vec![ext::resume(0, false)]);
            c
        })
        .collect();
    sim.frames(&h);
    (h, secret, clients)
}

#[test]
fn opting_in_needs_a_client_uuid_and_a_number() {
    let mut sim = loopback(8);
    sim.host("id=r").unwrap();
    assert_eq!(sim.client("r", "resume=1"), Err((400, "Invalid parameter resume: needs client=<uuid>".into())));
    assert_eq!(
        sim.client("r", "client=u&resume=1&have=x"),
        Err((400, "Invalid parameter have: must be a decimal number".into()))
    );
    assert_eq!(sim.client("r", "client=u&resume=yes"), Err((400, "Invalid parameter resume: must be 1 or 0".into())));
}

#[test]
fn a_socket_that_did_not_opt_in_sees_sections_1_to_6_and_a_pong() {
    let mut sim = loopback(8);
    let h = sim.host("id=plain").unwrap();
    sim.frames(&h);
    let c = sim.client("plain", "").unwrap();
    sim.send(&c, "hi");
    sim.send(&h, ext::PING);
    sim.send(&h, &ext::ack(1));
    assert_eq!(sim.frames(&h), vec!["connected: 1".to_string(), "1: hi".into(), ext::PONG.into(), "invalid".into()]);
}

#[test]
fn a_host_that_died_silently_resumes_with_exactly_what_it_missed() {
    let mut sim = loopback(8);
    let (h, secret, clients) = room(&mut sim, "r", 2);
    sim.send(&clients[0], "one");
    sim.send(&clients[1], "two");
    assert_eq!(sim.frames(&h), vec!["1: one", "2: two"]);
    // The host's network dies without a close: what the relay sends now is lost.
    sim.send(&clients[0], "three");
    sim.send(&clients[1], "four");
    sim.frames(&h);
    // It had frames 1..=4 (two connected lines, two messages) and sent
    // none; it comes back.
    let h2 = sim.host(&format!("id=r&secret={secret}&resume=1&have=4")).unwrap();
    let (ext_lines, frames) = split(sim.frames(&h2));
    assert_eq!(ext_lines, vec![ext::resume(0, false)]);
    assert_eq!(
        frames,
        vec!["session: r".to_string(), format!("secret: {secret}"), "1: three".into(), "2: four".into()]
    );
    assert_eq!(sim.closed(&h).map(|c| c.code), Some(4001));
    // Numbering goes on.
    sim.send(&clients[0], "five");
    sim.send(&h2, &ext::ack(5));
    assert_eq!(sim.frames(&h2), vec!["1: five".to_string(), ext::ack(0)]);
}

#[test]
fn frames_the_relay_handled_are_not_sent_again() {
    let mut sim = loopback(8);
    let (h, secret, clients) = room(&mut sim, "r", 1);
    sim.send(&h, "1: a");
    sim.send(&h, "1: b");
    // Acknowledged once stored (within a second): see the reset scenarios.
    sim.send(&h, &ext::ack(0));
    assert_eq!(sim.frames(&h), vec![ext::ack(0)]);
    sim.advance(1_000.0);
    sim.send(&h, &ext::ack(0));
    assert_eq!(sim.frames(&h), vec![ext::ack(2)]);
    assert_eq!(sim.frames(&clients[0]), vec!["a", "b"]);
    let h2 = sim.host(&format!("id=r&secret={secret}&resume=1&have=1")).unwrap();
    assert_eq!(sim.frames(&h2)[2..], [ext::resume(2, false)]);
}

#[test]
fn a_client_resumes_without_a_word_to_its_host() {
    let mut sim = loopback(8);
    let (h, _, clients) = room(&mut sim, "r", 1);
    sim.send(&h, "1: x");
    sim.send(&h, "1: y");
    assert_eq!(sim.frames(&clients[0]), vec!["x", "y"]);
    sim.send(&h, "1: lost on the dead socket");
    let back = sim.client("r", "client=u1&resume=1&have=2").unwrap();
    assert_eq!(sim.frames(&back), vec![ext::resume(0, false), "lost on the dead socket".into()]);
    assert_eq!(sim.closed(&clients[0]).map(|c| c.code), Some(4002));
    assert!(sim.frames(&h).is_empty(), "to the host, the client never left");
    sim.send(&back, "after");
    assert_eq!(sim.frames(&h), vec!["1: after"]);
}

#[test]
fn a_client_counted_gone_comes_back_as_a_connect() {
    let mut sim = loopback(8);
    let (h, _, clients) = room(&mut sim, "r", 1);
    sim.send(&h, "1: x");
    sim.close(&clients[0], 1006);
    assert_eq!(sim.frames(&h), vec!["disconnected: 1"]);
    let back = sim.client("r", "client=u1&resume=1&have=0").unwrap();
    assert_eq!(sim.frames(&back), vec![ext::resume(0, false), "x".into()]);
    assert_eq!(sim.frames(&h), vec!["connected: 1"]);
}

#[test]
fn beyond_the_window_the_resume_reports_a_gap_and_a_fresh_view() {
    let mut sim = loopback(8);
    let (_h, secret, clients) = room(&mut sim, "r", 1);
    let chunk = "z".repeat(100 * 1024);
    for _ in 0..4 {
        sim.send(&clients[0], &chunk);
        sim.advance(1_000.0);
    }
    let sent = 4;
    assert!(sent * chunk.len() > WINDOW_BYTES);
    let h2 = sim.host(&format!("id=r&secret={secret}&resume=1&have=0")).unwrap();
    let frames: Vec<String> = sim.frames(&h2).into_iter().map(|f| f.chars().take(20).collect()).collect();
    // Frames 1 (connected: 1) to 5 (the fourth chunk): the first ones left
    // the window, so all of them count as lost, and the view starts afresh.
    assert_eq!(frames[2], ext::resume(0, false));
    assert_eq!(frames[3], ext::gap(1, 5));
    assert_eq!(frames[4..], ["connected: 1".to_string()], "the view of a take-over, after the gap");
    // Numbered on from the gap.
    sim.send(&clients[0], "next");
    sim.send(&h2, &ext::ack(6));
    assert_eq!(sim.frames(&h2), vec!["1: next".to_string(), ext::ack(0)]);
}

#[test]
fn a_stream_survives_hibernation() {
    let mut sim = loopback(8);
    let (h, secret, clients) = room(&mut sim, "r", 1);
    sim.send(&clients[0], "kept");
    sim.advance(2_000.0); // stored within a second
    sim.evict_now("r");
    let h2 = sim.host(&format!("id=r&secret={secret}&resume=1&have=1")).unwrap();
    assert_eq!(sim.frames(&h2)[2..], [ext::resume(0, false), "1: kept".into()]);
    let _ = h;
}

#[test]
fn a_reset_reports_the_numbers_it_cannot_account_for() {
    let mut sim = loopback(8);
    let (h, secret, clients) = room(&mut sim, "r", 1);
    sim.send(&clients[0], "stored");
    sim.advance(2_000.0);
    sim.send(&clients[0], "in the last second");
    sim.reset(&ObjectId::Session("r".into()));
    assert!(sim.state(&h).unwrap().closed_by_reset);
    // The host had frames 1 (connected: 1) to 3.
    let h2 = sim.host(&format!("id=r&secret={secret}&resume=1&have=3")).unwrap();
    let frames = sim.frames(&h2);
    assert_eq!(frames[2], ext::resume(0, true), "frames may have been handled before the reset");
    assert_eq!(frames[3], ext::gap(4, 2 + RESERVED));
}

#[test]
fn a_socket_whose_heartbeat_stopped_is_closed_when_the_object_wakes() {
    let mut sim = loopback(8);
    let (h, _, clients) = room(&mut sim, "r", 2);
    for _ in 0..20 {
        sim.send(&h, ext::PING);
        sim.send(&clients[0], ext::PING);
        sim.advance(3_000.0);
    }
    sim.evict_now("r");
    sim.send(&clients[0], "wakes it");
    assert!(sim.is_open(&h) && sim.is_open(&clients[0]));
    assert_eq!(sim.closed(&clients[1]).map(|c| (c.code, c.reason)), Some((4005, "no heartbeat")));
    assert_eq!(sim.frames(&h).last().unwrap(), "1: wakes it");
}

// Found by sim/tests/resume_properties.rs (seeds 0, 1, 29, 59, 141, 5 before
// each fix): a reset must never make the relay's count of a socket's frames,
// or its own numbering, go back on what it already told the socket.

#[test]
fn a_reset_never_resumes_below_an_acknowledgement() {
    let mut sim = loopback(8);
    let (h, secret, _clients) = room(&mut sim, "r", 1);
    sim.send(&h, "1: a");
    sim.advance(1_000.0);
    sim.send(&h, "1: b");
    sim.send(&h, &ext::ack(0));
    // `b` is handled but not yet stored: only `a` is acknowledged, since the
    // socket forgets what is acknowledged and a reset would lose `b`'s count.
    assert_eq!(sim.frames(&h), vec![ext::ack(1)]);
    sim.reset(&ObjectId::Session("r".into()));
    let h2 = sim.host(&format!("id=r&secret={secret}&resume=1&have=0")).unwrap();
    assert_eq!(sim.frames(&h2)[2], ext::resume(1, true), "b is sent again: at least once");
}

#[test]
fn a_stream_is_stored_as_its_socket_connects() {
    let mut sim = loopback(8);
    let (h, _, _) = room(&mut sim, "r", 0);
    let c = sim.client("r", "client=u1&resume=1").unwrap();
    sim.send(&c, "x");
    assert_eq!(sim.frames(&h), vec!["connected: 1", "1: x"]);
    // Within the stream's first second: it was stored as it came, so the
    // resume knows a reset may have lost what was handled (not `␁resume 0`
    // of a stream never heard of, which would deliver `x` twice unflagged).
    sim.advance(10.0); // (socket tokens come from the clock)
    sim.reset(&ObjectId::Session("r".into()));
    let back = sim.client("r", "client=u1&resume=1&have=0").unwrap();
    assert_eq!(sim.frames(&back)[0], ext::resume(0, true));
}

#[test]
fn a_stream_that_comes_back_is_stored_with_a_reservation_again() {
    let mut sim = loopback(8);
    let (h, _, clients) = room(&mut sim, "r", 1);
    sim.advance(2_000.0);
    sim.close(&clients[0], 1006); // its stream is stored settled
    let c = sim.client("r", "client=u1&resume=1&have=0").unwrap();
    sim.frames(&c);
    sim.send(&h, "1: y");
    assert_eq!(sim.frames(&c), vec!["y"]);
    sim.advance(10.0);
    sim.reset(&ObjectId::Session("r".into()));
    let back = sim.client("r", "client=u1&resume=1&have=1").unwrap();
    let frames = sim.frames(&back);
    assert_eq!(frames[0], ext::resume(0, true));
    assert_eq!(frames[1], ext::gap(2, RESERVED), "y's number is not used again");
}

#[test]
fn a_reset_is_reported_to_the_socket_however_many_follow() {
    let mut sim = loopback(8);
    let (h, secret, clients) = room(&mut sim, "r", 1);
    sim.send(&h, "1: z");
    sim.advance(2_000.0);
    sim.reset(&ObjectId::Session("r".into()));
    // The object wakes (the host resumes) and stores the client's stream
    // with nobody connected to it; a second reset follows.
    let h2 = sim.host(&format!("id=r&secret={secret}&resume=1&have=1")).unwrap();
    sim.advance(2_000.0);
    sim.reset(&ObjectId::Session("r".into()));
    let _ = (h2, clients);
    let back = sim.client("r", "client=u1&resume=1&have=1").unwrap();
    let frames = sim.frames(&back);
    assert_eq!(frames[0], ext::resume(0, true));
    assert!(frames[1].starts_with(&ext::gap(2, 0)[..ext::gap(2, 0).len() - 1]), "{frames:?}");
}

#[test]
fn a_renumbered_stream_is_stored_before_another_reset() {
    let mut sim = loopback(8);
    let (_, secret, clients) = room(&mut sim, "r", 1);
    sim.advance(2_000.0);
    sim.reset(&ObjectId::Session("r".into()));
    let h2 = sim.host(&format!("id=r&secret={secret}&resume=1&have=1")).unwrap();
    let frames = sim.frames(&h2);
    assert_eq!(frames[3], ext::gap(2, 1 + RESERVED));
    // Numbered past the reservation (the view after the gap), then reset
    // again within the second: the new numbers are not used twice.
    let have = 1 + RESERVED + (frames.len() as u64 - 4);
    sim.advance(10.0);
    sim.reset(&ObjectId::Session("r".into()));
    let h3 = sim.host(&format!("id=r&secret={secret}&resume=1&have={have}")).unwrap();
    let frames = sim.frames(&h3);
    assert!(frames[3].starts_with(&format!("{}{} ", ext::MARK, "gap")), "{frames:?}");
    let _ = clients;
}

#[test]
fn a_frame_whose_enqueue_failed_is_asked_for_again() {
    let mut sim = loopback(8);
    let (h, _, clients) = room(&mut sim, "r", 1);
    sim.close(&h, 1006); // the host is away: client frames are queued
    sim.sessions.get_mut("r").unwrap().fail.insert(Op::Enqueue);
    sim.send(&clients[0], "not kept");
    assert_eq!(sim.closed(&clients[0]).map(|c| c.code), Some(1011));
    let back = sim.client("r", "client=u1&resume=1&have=0").unwrap();
    assert_eq!(sim.frames(&back)[0], ext::resume(0, false), "the socket sends it again");
}

#[test]
fn a_socket_back_with_less_than_it_acknowledged_gets_the_gap_and_a_fresh_view() {
    let mut sim = loopback(8);
    let (_h, secret, clients) = room(&mut sim, "r", 1);
    // Frames 1 (connected: 1) and 2, both acknowledged: the relay forgets them.
    sim.send(&clients[0], "one");
    sim.send(&_h, &ext::ack(2));
    sim.frames(&_h);
    // A new page takes over with nothing (have=0): frames 1 and 2 are gone.
    let h2 = sim.host(&format!("id=r&secret={secret}&resume=1&have=0")).unwrap();
    let frames = sim.frames(&h2);
    assert_eq!(frames[2..], [ext::resume(0, false), ext::gap(1, 2), "connected: 1".into()]);
    sim.send(&clients[0], "two");
    assert_eq!(sim.frames(&h2), vec!["1: two"]);
}

#[test]
fn a_reset_in_a_streams_first_second_is_reported_not_taken_for_a_new_stream() {
    let mut sim = loopback(8);
    let (h, secret, clients) = room(&mut sim, "r", 1);
    // Within the stream's first second: frames both ways, none stored since
    // the stream was made.
    sim.send(&h, "1: to the client");
    sim.send(&clients[0], "to the host");
    sim.reset(&ObjectId::Session("r".into()));
    assert!(sim.state(&h).unwrap().closed_by_reset);
    sim.advance(100.0); // the host notices and comes back
                        // The host had frames 1 (connected: 1) and 2, and sent one frame.
    let h2 = sim.host(&format!("id=r&secret={secret}&resume=1&have=2")).unwrap();
    let frames = sim.frames(&h2);
    assert_eq!(frames[2], ext::resume(0, true), "its frame may have been handled: it is sent again, at least once");
    // Last stored when the client's stream was made (at once, as the host's
    // was), after frame 1: numbers up to 1 + RESERVED may have been used.
    assert_eq!(frames[3], ext::gap(3, 1 + RESERVED), "numbers the relay may have used after the stream was stored");
}
