//! docs/PROTOCOL.md section 7 (heartbeat and acknowledged resume) on the
//! simulator: numbering, acknowledgements, windows, resumes across silent
//! deaths, eviction and resets, and the gap where a window cannot help.

use askutron_core::stream::{RESERVED, WINDOW_BYTES};
use askutron_core::wire::ext;
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
    let (h, secret, clients) = room(&mut sim, "r", 1);
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
