//! Every invariant of `askutron_sim::check` must be able to fail: each test
//! breaks one thing by hand in a healthy run and expects the check to say so.

use askutron_core::record::SessionRecord;
use askutron_sim::{check, loopback, Sim, Sock};

/// A healed run: a master `m` with a slave `s`, one client each, a searching
/// session `x`.
fn healthy() -> (Sim, Sock, Sock) {
    let mut sim = loopback(8);
    let m = sim.host("id=m").unwrap();
    let s = sim.host("id=s").unwrap();
    let x = sim.host("id=x").unwrap();
    sim.client("m", "").unwrap();
    sim.client("s", "").unwrap();
    sim.send(&m, "/join-session master");
    sim.send(&s, "/join-session slave");
    sim.send(&x, "/join-session slave id=nobody");
    check::heal(&mut sim, 5_000.0).expect("healthy");
    check::safety(&sim).expect("healthy");
    (sim, m, s)
}

/// Changes a session's stored record (its memory is dropped first, so the
/// change is what it wakes with).
fn tamper(sim: &mut Sim, sid: &str, change: impl FnOnce(&mut SessionRecord)) {
    sim.evict_now(sid);
    let slot = sim.sessions.get_mut(sid).unwrap();
    let mut record = SessionRecord::from_json(slot.record.as_deref().unwrap()).unwrap();
    change(&mut record);
    slot.record = Some(record.to_json());
}

#[test]
fn a_client_id_held_twice_is_caught() {
    let (mut sim, _, _) = healthy();
    sim.host("id=z").unwrap();
    sim.client("z", "").unwrap();
    sim.client("z", "").unwrap();
    check::safety(&sim).unwrap();
    let slot = sim.sessions.get_mut("z").unwrap();
    let ids: Vec<_> =
        slot.sockets.values_mut().filter(|s| s.attachment.as_ref().is_some_and(|a| a.client_id().is_some())).collect();
    let first = ids[0].attachment.clone();
    *ids.into_iter().nth(1).unwrap().attachment.as_mut().unwrap() = first.unwrap();
    assert!(check::safety(&sim).unwrap_err().contains("held twice"));
}

#[test]
fn a_frame_after_close_is_caught() {
    let (mut sim, m, _) = healthy();
    sim.sessions.get_mut("m").unwrap().sockets.get_mut(&m.token).unwrap().sent_after_close = 1;
    assert!(check::safety(&sim).unwrap_err().contains("after closing"));
}

#[test]
fn a_queue_over_its_bound_is_caught() {
    let (mut sim, _, _) = healthy();
    let slot = sim.sessions.get_mut("x").unwrap();
    for seq in 0..4097 {
        slot.queue.push(askutron_sim::objects::QueueRow { seq, line: "1: ".into(), counted: true, bytes: 0 });
    }
    assert!(check::safety(&sim).unwrap_err().contains("queue holds"));
}

#[test]
fn overlapping_ranges_and_a_group_over_capacity_are_caught() {
    let (mut sim, _, _) = healthy();
    tamper(&mut sim, "m", |r| r.group.slaves[0].offset = 0);
    assert!(check::safety(&sim).unwrap_err().contains("overlap"));
    let (mut sim, _, _) = healthy();
    tamper(&mut sim, "m", |r| r.group.slaves[0].span = 8);
    assert!(check::safety(&sim).unwrap_err().contains("over"));
}

#[test]
fn links_that_disagree_are_caught() {
    let (mut sim, _, _) = healthy();
    tamper(&mut sim, "s", |r| r.group.master.as_mut().unwrap().link += 1);
    assert!(check::healed(&mut sim).unwrap_err().contains("thinks s is its slave"));
    let (mut sim, _, _) = healthy();
    tamper(&mut sim, "m", |r| {
        r.group.slaves[0].clients.insert(7);
    });
    assert!(check::healed(&mut sim).unwrap_err().contains("knows"));
}

#[test]
fn a_stale_pool_entry_and_wrong_figures_are_caught() {
    let (mut sim, _, _) = healthy();
    tamper(&mut sim, "x", |r| r.group.search = None);
    assert!(check::healed(&mut sim).unwrap_err().contains("the pool holds"));
    let (mut sim, _, _) = healthy();
    let s = sim.sessions.get_mut("s").unwrap();
    let host = s.sockets.values_mut().find(|s| s.attachment.as_ref().is_some_and(|a| a.is_host())).unwrap();
    host.closed_by_peer = true; // gone, and nobody told
    assert!(check::healed(&mut sim).unwrap_err().contains("/stats says"));
}

#[test]
fn work_left_undone_is_caught() {
    let (mut sim, _, _) = healthy();
    let slot = sim.sessions.get_mut("m").unwrap();
    let mut owed: askutron_core::record::Obligations =
        slot.owed.as_deref().map(|j| serde_json::from_str(j).unwrap()).unwrap_or_default();
    owed.sid = "m".into();
    owed.cancel = Some(1);
    slot.owed = Some(owed.to_json());
    slot.core = None;
    assert!(check::healed(&mut sim).unwrap_err().contains("still owes"));
}
