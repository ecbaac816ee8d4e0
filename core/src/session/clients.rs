//! The clients (PROTOCOL.md section 3): ids, uuids, replacement, a full session.

use std::collections::BTreeSet;

use crate::calls::LinkMsg;
use crate::journal::Event;
use crate::record::{admit_client, Role, SocketInfo};
use crate::wire::{http, say, ClientParams, CLOSE_REPLACED, CLOSE_SESSION_FULL};

use super::effects::Out;
use super::{new_token, refuse_http, Answer, Effect, SessionCore, EPHEMERAL};

/// A client came or went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Announcement {
    Connected,
    Disconnected,
}

impl SessionCore {
    pub(super) fn client_connect(&mut self, now: f64, params: ClientParams, out: &mut Out<'_>) {
        if !self.live_record(now, out) {
            return refuse_http(out, 404, http::SESSION_NOT_FOUND);
        }
        let connected = self.connected_ids();
        let record = self.record.as_ref().expect("live");
        let admission = match admit_client(record, &connected, params.uuid.as_deref(), self.settings.max_clients) {
            Ok(a) => a,
            Err(_) => {
                // Told why, then closed; never hibernated, never counted.
                out.push(Effect::Accept { socket: EPHEMERAL, info: None });
                Self::send(out, EPHEMERAL, say::NO_SLOTS);
                out.push(Effect::Close { to: EPHEMERAL, close: CLOSE_SESSION_FULL });
                out.push(Effect::Log(
                    Event::info("socket_refused")
                        .with("sid", record.id.as_str())
                        .with("role", "client")
                        .with("code", CLOSE_SESSION_FULL.code)
                        .with("reason", CLOSE_SESSION_FULL.reason),
                ));
                out.push(Effect::Respond(Answer::Upgrade { socket: EPHEMERAL }));
                return;
            }
        };
        let id = admission.id;
        // Section 7: a client that resumes its stream takes over its older
        // socket without a word to its host (to the host it never left).
        let seamless = params.resume.is_some() && admission.replaces;
        if admission.replaces {
            if let Some(&old) = self.clients.get(&id) {
                self.close_socket(old, CLOSE_REPLACED, out);
                if !seamless {
                    self.announce(now, id, Announcement::Disconnected, out);
                }
            }
        }
        let token = new_token(&mut self.last_token, now);
        let mut info = SocketInfo::new(
            Role::Client { id, uuid: params.uuid.clone() },
            token,
            params.keep_alive,
            now,
            &self.settings,
        );
        info.resume = params.resume.is_some();
        out.push(Effect::Accept { socket: token, info: Some(info.clone()) });
        if info.keep_alive.is_some() {
            self.timers_dirty = true;
        }
        self.sockets.insert(token, info);
        self.clients.insert(id, token);
        // Only a new uuid changes what is stored: a plain connect costs no
        // storage write.
        let new_uuid = admission.reserve.is_some();
        if let Some(uuid) = admission.reserve {
            self.record.as_mut().expect("live").reserved.insert(uuid, id);
            self.persist(out);
        }
        if let (Some(request), Some(uuid)) = (params.resume, params.uuid.as_deref()) {
            let key = format!("c:{uuid}");
            if new_uuid {
                // A uuid new to the session: its stream starts afresh.
                self.forget_stream(now, &key);
            }
            self.resume_stream(now, token, &key, request.have, out);
        }
        if !seamless {
            self.announce(now, id, Announcement::Connected, out);
        }
        self.stats_changed(now);
        out.push(Effect::Respond(Answer::Upgrade { socket: token }));
    }

    /// Tells this session's host about one of its clients, and the master
    /// too (with the id translated) when this session is, or is becoming, a
    /// slave. Not queued: a host that takes over is told who is connected then.
    pub(super) fn announce(&mut self, now: f64, id: u32, what: Announcement, out: &mut Out<'_>) {
        let line = match what {
            Announcement::Connected => say::connected(id),
            Announcement::Disconnected => say::disconnected(id),
        };
        self.tell_host(out, line);
        let Some((link, n)) = self.record.as_ref().and_then(|r| {
            let master = r.group.master.as_ref()?;
            Some((master.link, r.group.id_at_master(id)?.1))
        }) else {
            return;
        };
        let master = self.record.as_mut().and_then(|r| r.group.master.as_mut()).expect("checked");
        let msg = match what {
            Announcement::Connected => {
                master.told.insert(n);
                LinkMsg::Connected { id: n }
            }
            Announcement::Disconnected => {
                master.told.remove(&n);
                LinkMsg::Disconnected { id: n }
            }
        };
        self.push_link(now, link, msg, out);
    }

    /// After a restart: clients whose sockets were closed without a word (a
    /// reset closes every socket), or that came while the master was not told,
    /// are told to the master now.
    pub(super) fn square_roster_with_master(&mut self, now: f64, out: &mut Out<'_>) {
        let Some(record) = self.record.as_ref() else { return };
        let Some(master) = record.group.master.as_ref() else { return };
        let actual: BTreeSet<u32> =
            self.clients.keys().filter_map(|&id| record.group.id_at_master(id).map(|(_, n)| n)).collect();
        if actual == master.told {
            return;
        }
        let link = master.link;
        let gone: Vec<u32> = master.told.difference(&actual).copied().collect();
        let came: Vec<u32> = actual.difference(&master.told).copied().collect();
        self.record.as_mut().and_then(|r| r.group.master.as_mut()).expect("checked").told = actual;
        for n in gone {
            self.push_link(now, link, LinkMsg::Disconnected { id: n }, out);
        }
        for n in came {
            self.push_link(now, link, LinkMsg::Connected { id: n }, out);
        }
        self.persist(out);
    }
}
