//! Linked sessions (PROTOCOL.md section 4): calls from other objects, the
//! answers to this session's calls, and the end of a link.

use std::collections::BTreeSet;

use crate::calls::{
    MatchmakerCall, Outcome, SessionCall, SlaveEvent, CLIENT_UNKNOWN, CONFLICT_STATUS, GONE_STATUS, NOT_LINKED_YET,
    OK_STATUS, POOL_FULL_STATUS, QUEUE_FULL_STATUS,
};
use crate::group::{MasterLink, SlaveLink};
use crate::journal::Event;
use crate::wire::{http, say, CLOSE_HOST_UNAVAILABLE};

use super::*;

impl SessionCore {
    pub(super) fn call(&mut self, call: SessionCall, out: &mut Out<'_>) {
        if self.record.is_none() {
            return respond(out, GONE_STATUS, http::SESSION_NOT_FOUND);
        }
        self.on_call(call, out);
    }

    pub(super) fn call_peer(out: &mut Out<'_>, sid: &str, call: SessionCall, purpose: Purpose) {
        out.push(Effect::Call(OutgoingCall {
            to: Peer::Session(sid.to_string()),
            body: CallBody::Session(call),
            purpose,
            attempt: 0,
            retry_at: None,
        }));
    }

    pub(super) fn call_matchmaker(out: &mut Out<'_>, call: MatchmakerCall, purpose: Purpose) {
        out.push(Effect::Call(OutgoingCall {
            to: Peer::Matchmaker,
            body: CallBody::Matchmaker(call),
            purpose,
            attempt: 0,
            retry_at: None,
        }));
    }

    pub(super) fn on_call(&mut self, call: SessionCall, out: &mut Out<'_>) {
        let sid = self.sid().to_string();
        match call {
            SessionCall::DeliverToHost { line, queue } => {
                let status = self.deliver(line, queue, out);
                respond(out, status, "");
            }
            SessionCall::SlaveEvent { slave, event } => {
                let record = self.record.as_mut().expect("checked");
                let Some(link) = record.group.slave_mut(&slave) else {
                    return respond(out, NOT_LINKED_YET, "not linked yet");
                };
                match event {
                    SlaveEvent::Connected(n) => {
                        if link.holds(n) && link.clients.insert(n) {
                            self.tell_host(out, say::connected(n));
                            self.persist(out);
                        }
                        respond(out, OK_STATUS, "ok");
                    }
                    SlaveEvent::Disconnected(n) => {
                        if link.clients.remove(&n) {
                            self.tell_host(out, say::disconnected(n));
                            self.persist(out);
                        }
                        respond(out, OK_STATUS, "ok");
                    }
                    SlaveEvent::Message(n, text) => {
                        let status = self.deliver(say::from_client(n, &text), true, out);
                        respond(out, status, "");
                    }
                }
            }
            SessionCall::ToClient { id, message } => {
                let client =
                    self.record.as_ref().and_then(|r| r.group.client_at_rank(id)).and_then(|c| self.clients.get(&c));
                match client {
                    Some(&token) => {
                        Self::send(out, token, message);
                        respond(out, OK_STATUS, "ok");
                    }
                    None => respond(out, OK_STATUS, CLIENT_UNKNOWN),
                }
            }
            SessionCall::Broadcast { from, message } => {
                let known = self.record.as_ref().is_some_and(|r| r.group.slaves.iter().any(|s| s.sid == from));
                if !known {
                    return respond(out, NOT_LINKED_YET, "not linked yet");
                }
                self.deliver(say::from_client(0, &message), true, out);
                self.broadcast_to_slaves(Some(&from), &message, out);
                respond(out, OK_STATUS, "ok");
            }
            SessionCall::LinkedAsSlave { master, offset } => {
                let record = self.record.as_mut().expect("checked");
                // It may have left its search, or linked otherwise, meanwhile.
                if record.group.search.is_none() || record.group.is_linked() {
                    return respond(out, CONFLICT_STATUS, "not searching");
                }
                record.group.search = None;
                record.group.master = Some(MasterLink { sid: master.clone(), offset });
                let clients: Vec<u32> =
                    self.clients.keys().filter_map(|&id| record.group.id_at_master(id).map(|(_, n)| n)).collect();
                self.persist(out);
                self.deliver(say::set_master(&master), true, out);
                out.push(Effect::Log(link_made(&master, &sid, offset)));
                respond(out, OK_STATUS, &serde_json::to_string(&clients).expect("numbers serialise"));
            }
            SessionCall::LinkedAsMaster { slave, offset, span, clients, searching } => {
                let own: Vec<u32> = self.clients.keys().copied().collect();
                let record = self.record.as_mut().expect("checked");
                if record.group.master.is_some()
                    || record.group.frozen.is_none()
                    || record.group.slaves.iter().any(|s| s.sid == slave)
                {
                    return respond(out, CONFLICT_STATUS, "cannot lead");
                }
                let clients: BTreeSet<u32> =
                    clients.into_iter().filter(|&n| n > offset && n <= offset + span).collect();
                record.group.slaves.push(SlaveLink { sid: slave.clone(), offset, span, clients: clients.clone() });
                if !searching {
                    record.group.search = None;
                }
                record.group.frozen.get_or_insert(own);
                self.persist(out);
                self.deliver(say::added_slave(&slave), true, out);
                for n in clients {
                    self.tell_host(out, say::connected(n));
                }
                respond(out, OK_STATUS, "ok");
            }
            SessionCall::MasterLeft { master } => {
                self.master_gone(&master, "master left", out);
                respond(out, OK_STATUS, "ok");
            }
            SessionCall::SlaveLeft { slave } => {
                let known = self.record.as_ref().is_some_and(|r| r.group.slaves.iter().any(|s| s.sid == slave));
                if !known {
                    // Its link may still be on its way here: the slave asks again.
                    return respond(out, NOT_LINKED_YET, "not linked yet");
                }
                self.slave_gone(&slave, "slave left", out);
                respond(out, OK_STATUS, "ok");
            }
        }
    }

    /// This slave's master is gone: the link ends here.
    pub(super) fn master_gone(&mut self, master: &str, why: &'static str, out: &mut Out<'_>) {
        let Some(record) = self.record.as_mut() else { return };
        if record.group.master.as_ref().is_none_or(|m| m.sid != master) {
            return;
        }
        record.group.master = None;
        let sid = record.id.clone();
        self.stop_searching(out);
        if let Some(record) = self.record.as_mut() {
            record.group.thaw_if_idle();
        }
        self.persist(out);
        self.deliver(say::MASTER_LEFT.to_string(), true, out);
        out.push(Effect::Log(link_ended(master, &sid, why)));
    }

    /// One of this master's slaves is gone: its clients first, then the notice.
    pub(super) fn slave_gone(&mut self, slave: &str, why: &'static str, out: &mut Out<'_>) {
        let Some(record) = self.record.as_mut() else { return };
        let Some(pos) = record.group.slaves.iter().position(|s| s.sid == slave) else { return };
        let link = record.group.slaves.remove(pos);
        let sid = record.id.clone();
        for n in &link.clients {
            self.tell_host(out, say::disconnected(*n));
        }
        self.stop_searching(out);
        if let Some(record) = self.record.as_mut() {
            record.group.thaw_if_idle();
        }
        self.persist(out);
        self.deliver(say::slave_left(slave), true, out);
        out.push(Effect::Log(link_ended(&sid, slave, why)));
    }

    pub(super) fn answer(&mut self, now: f64, call: OutgoingCall, outcome: Outcome, out: &mut Out<'_>) {
        if self.record.is_none() {
            return;
        }
        let peer = match &call.to {
            Peer::Session(sid) => Some(sid.clone()),
            Peer::Matchmaker => None,
        };
        let status = match &outcome {
            Outcome::Status(status, _) => Some(*status),
            Outcome::Failed(_) => None,
        };
        if let Outcome::Failed(error) = &outcome {
            out.push(Effect::Log(
                Event::error("call_failed")
                    .with("sid", self.sid())
                    .with("to", peer.clone().unwrap_or_else(|| "matchmaker".into()))
                    .with("error", error.as_str()),
            ));
        }
        // A slave's call got to its master before the link did: again, in order.
        if status == Some(NOT_LINKED_YET) {
            if call.attempt < LINK_RETRIES {
                let retry = OutgoingCall { attempt: call.attempt + 1, retry_at: Some(now + LINK_RETRY_MS), ..call };
                out.push(Effect::Call(retry));
            } else if let Some(master) = peer {
                // The master never heard of the link: it is not a link.
                out.push(Effect::Log(
                    Event::warn("link_unconfirmed").with("sid", self.sid()).with("master", master.as_str()),
                ));
                self.master_gone(&master, "link never confirmed", out);
            }
            return;
        }
        if status == Some(GONE_STATUS) {
            if let Some(peer) = &peer {
                self.peer_gone(peer, out);
            }
        }
        match call.purpose {
            Purpose::Notice | Purpose::Linked => {}
            Purpose::Search => {
                if status != Some(OK_STATUS) {
                    // Refused (the Matchmaker's list is full) or lost: the search
                    // is off and the host hears `invalid`, the protocol's "not done".
                    let record = self.record.as_mut().expect("checked");
                    if record.group.search.take().is_some() {
                        record.group.thaw_if_idle();
                        self.persist(out);
                        self.tell_host(out, say::INVALID);
                        let why = if status == Some(POOL_FULL_STATUS) {
                            "too many searches"
                        } else {
                            "matchmaker unavailable"
                        };
                        out.push(Effect::Log(
                            Event::warn("search_refused").with("sid", self.sid()).with("reason", why),
                        ));
                    }
                }
            }
            Purpose::Stats => {
                if let Outcome::Status(OK_STATUS, body) = &outcome {
                    self.tell_host(out, say::stats(body));
                }
            }
            Purpose::ToSlaveClient { digits } => {
                let delivered = matches!(&outcome, Outcome::Status(OK_STATUS, body) if body != CLIENT_UNKNOWN);
                if !delivered {
                    self.tell_host(out, say::unknown(&digits));
                }
            }
            Purpose::Forwarded { sender } => {
                if status == Some(QUEUE_FULL_STATUS) && self.sockets.contains_key(&sender) {
                    self.refuse(now, sender, CLOSE_HOST_UNAVAILABLE, out);
                }
            }
        }
    }

    /// A linked session answered that it does not exist: the link ends as if
    /// it had left.
    pub(super) fn peer_gone(&mut self, peer: &str, out: &mut Out<'_>) {
        let Some(record) = self.record.as_ref() else { return };
        if record.group.master.as_ref().is_some_and(|m| m.sid == peer) {
            self.master_gone(peer, "master gone", out);
        } else if record.group.slaves.iter().any(|s| s.sid == peer) {
            self.slave_gone(peer, "slave gone", out);
        }
    }
}

pub(super) fn link_made(master: &str, slave: &str, offset: u32) -> Event {
    Event::info("link_made").with("master", master).with("slave", slave).with("offset", offset)
}

pub(super) fn link_ended(master: &str, slave: &str, why: &'static str) -> Event {
    Event::info("link_ended").with("master", master).with("slave", slave).with("reason", why)
}
