//! The invariants a simulated run must keep: safety after every step, and
//! liveness once faults stop and the relay had time to heal. Each returns
//! what is wrong, so a failure names it (with the seed and the trace).

use std::collections::{BTreeMap, BTreeSet};

use askutron_core::record::SessionRecord;
use askutron_core::stats::RelayStats;
use askutron_core::wire::{MAX_QUEUED_BYTES, MAX_QUEUED_MESSAGES};

use crate::world::Sim;

/// What must hold after every step, whatever the faults.
pub fn safety(sim: &Sim) -> Result<(), String> {
    let max = sim.settings.max_clients;
    for (sid, slot) in &sim.sessions {
        for (token, state) in &slot.sockets {
            if state.sent_after_close > 0 {
                return Err(format!("{sid}: sent on socket {token} after closing it"));
            }
        }
        // No client id held twice among the open sockets.
        let mut ids = BTreeSet::new();
        for (token, state) in &slot.sockets {
            if let (true, Some(id)) = (state.is_open(), state.attachment.as_ref().and_then(|a| a.client_id())) {
                if !ids.insert(id) {
                    return Err(format!("{sid}: client id {id} held twice (socket {token})"));
                }
            }
        }
        // The queue, as stored, within its bound.
        let counted: Vec<_> = slot.queue.iter().filter(|r| r.counted).collect();
        let bytes: usize = counted.iter().map(|r| r.bytes).sum();
        if counted.len() > MAX_QUEUED_MESSAGES || bytes > MAX_QUEUED_BYTES {
            return Err(format!("{sid}: queue holds {} messages, {bytes} bytes", counted.len()));
        }
        let Some(record) = slot.session() else { continue };
        if let Some(core) = slot.core.as_ref().filter(|c| !c.is_unreadable()) {
            if core.record().is_some() && ids != core.connected_ids() {
                return Err(format!(
                    "{sid}: the core's clients {:?} are not the open sockets {ids:?}",
                    core.connected_ids()
                ));
            }
        }
        group_shape(sid, &record, max)?;
    }
    Ok(())
}

/// A group's ranges never overlap and stay within capacity.
fn group_shape(sid: &str, record: &SessionRecord, max: u32) -> Result<(), String> {
    let group = &record.group;
    if group.master.is_some() && !group.slaves.is_empty() {
        return Err(format!("{sid} is master and slave at once"));
    }
    if group.slaves.len() as u32 > max {
        return Err(format!("{sid} leads {} slaves", group.slaves.len()));
    }
    let own_top = group.frozen.as_ref().and_then(|f| f.last().copied()).unwrap_or(0);
    let mut ranges: Vec<(u32, u32)> = group.slaves.iter().map(|s| (s.offset, s.span)).collect();
    ranges.sort();
    let mut end = own_top;
    let mut count = group.frozen.as_ref().map_or(0, |f| f.len() as u32);
    for (offset, span) in ranges {
        if offset < end {
            return Err(format!("{sid}: slave ranges overlap at {offset}"));
        }
        end = offset + span;
        count += span;
    }
    if count > max {
        return Err(format!("{sid}: group of {count} clients over {max}"));
    }
    Ok(())
}

/// Stops every fault, lets the relay run for `ms` (long enough for its
/// timers: figures, retries, leases), then checks that it healed.
pub fn heal(sim: &mut Sim, ms: f64) -> Result<(), String> {
    sim.set_faults(crate::physics::Faults::NONE);
    sim.network = crate::physics::Network { lose_request: 0.0, lose_answer: 0.0, duplicate: 0.0, ..sim.network };
    sim.advance(ms);
    sim.settle();
    healed(sim)
}

/// What must hold once faults have stopped and the relay had time to heal:
/// every link agrees on both sides, nothing is left to deliver, the pool
/// holds exactly the sessions that search, and `/stats` is exact.
pub fn healed(sim: &mut Sim) -> Result<(), String> {
    let records: BTreeMap<String, SessionRecord> =
        sim.sessions.keys().filter_map(|sid| sim.record(sid).map(|r| (sid.clone(), r))).collect();
    for (sid, record) in &records {
        let group = &record.group;
        if let Some(master) = &group.master {
            if !master.confirmed {
                return Err(format!("{sid}: link to {} still unconfirmed", master.sid));
            }
            let m = records.get(&master.sid).ok_or(format!("{sid}'s master {} does not exist", master.sid))?;
            let link =
                m.group.slave_by_link(master.link).ok_or(format!("{}: does not know its slave {sid}", master.sid))?;
            if link.offset != master.offset || link.sid != *sid {
                return Err(format!("{sid} and {} disagree on their link", master.sid));
            }
        }
        for slave in &group.slaves {
            let s = records.get(&slave.sid).ok_or(format!("{sid}'s slave {} does not exist", slave.sid))?;
            if s.group.master.as_ref().is_none_or(|m| m.link != slave.link || m.sid != *sid) {
                return Err(format!("{sid} thinks {} is its slave; it is not", slave.sid));
            }
            // The master knows exactly the slave's clients.
            let truth: BTreeSet<u32> = connected(sim, &slave.sid)
                .into_iter()
                .filter_map(|id| s.group.id_at_master(id).map(|(_, n)| n))
                .collect();
            if truth != slave.clients {
                return Err(format!("{sid} knows {:?} of {}'s clients, which are {truth:?}", slave.clients, slave.sid));
            }
        }
    }
    for (sid, slot) in &sim.sessions {
        if let Some(core) = &slot.core {
            if core.busy() {
                return Err(format!("{sid}: still has work under way ({} calls)", core.calls_in_flight()));
            }
        }
        let (_, owed) = slot.read();
        if !owed.closing.is_empty() || owed.cancel.is_some() {
            return Err(format!("{sid}: still owes {owed:?}"));
        }
    }
    let jobs = sim.mm.announcing(sim.now);
    if jobs > 0 {
        let detail =
            sim.mm.core.as_ref().map(|c| format!("{:?}", c.jobs().values().collect::<Vec<_>>())).unwrap_or_default();
        return Err(format!("the Matchmaker still announces {jobs} links: {detail}"));
    }
    // The pool holds exactly the sessions that search.
    let searching: BTreeSet<String> = records
        .iter()
        .filter(|(_, r)| r.group.search.is_some() && r.group.master.is_none())
        .map(|(sid, _)| sid.clone())
        .collect();
    // The pool the Matchmaker works with: its memory, or what it would load
    // (a row whose lease ended is dropped as it loads).
    let pool: BTreeSet<String> = match &sim.mm.core {
        Some(core) => core.pool().searches.keys().cloned().collect(),
        None => sim
            .mm
            .searches
            .iter()
            .filter(|(_, json)| {
                serde_json::from_str::<askutron_core::matchmaker::Search>(json).is_ok_and(|s| s.expires > sim.now)
            })
            .map(|(sid, _)| sid.clone())
            .collect(),
    };
    if searching != pool {
        let odd: Vec<String> = pool
            .symmetric_difference(&searching)
            .map(|sid| {
                let group = records.get(sid).map(|r| &r.group);
                format!(
                    "{sid}: record {:?}, pool {:?}",
                    group.map(|g| (
                        g.search.is_some(),
                        g.search_epoch,
                        g.search_synced,
                        g.master.as_ref().map(|m| (&m.sid, m.confirmed))
                    )),
                    sim.mm.searches.get(sid)
                )
            })
            .collect();
        return Err(format!("the pool holds {pool:?}; searching are {searching:?}; {odd:?}"));
    }
    let truth = true_stats(sim, &records, pool.len());
    let stats: RelayStats = serde_json::from_str(&sim.stats()).expect("stats are JSON");
    if stats != truth {
        let held: Vec<String> = sim
            .aggregators
            .values()
            .flat_map(|a| a.entries.iter().map(move |(k, e)| format!("{}:{k}={:?}@{}", a.role.name(), e.totals, e.at)))
            .collect();
        return Err(format!("/stats says {stats:?}; the truth is {truth:?}; stored {held:?}"));
    }
    Ok(())
}

fn connected(sim: &Sim, sid: &str) -> BTreeSet<u32> {
    sim.sessions[sid]
        .sockets
        .values()
        .filter(|s| s.is_open())
        .filter_map(|s| s.attachment.as_ref().and_then(|a| a.client_id()))
        .collect()
}

/// The figures as they are.
pub fn true_stats(sim: &Sim, records: &BTreeMap<String, SessionRecord>, searching: usize) -> RelayStats {
    let mut stats = RelayStats::default();
    for (sid, slot) in &sim.sessions {
        if !records.contains_key(sid) {
            continue;
        }
        let host = slot.sockets.values().any(|s| s.is_open() && s.attachment.as_ref().is_some_and(|a| a.is_host()));
        let clients = connected(sim, sid).len() as u64;
        stats.num_hosts_online += host as u64;
        stats.num_clients_online += clients;
        stats.num_players += if host { clients } else { 0 };
    }
    stats.num_hosts_looking_for_session = searching as u64;
    stats
}
