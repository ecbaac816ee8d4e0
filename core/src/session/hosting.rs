//! The host (PROTOCOL.md section 2): connect, take-over, leaving, the
//! reconnect window and the end of a session.

use std::collections::BTreeSet;

use crate::channel::Outbound;
use crate::journal::Event;
use crate::record::{admit_host, HostAdmission, HostRejection, Role, SessionRecord, SocketInfo};
use crate::wire::{http, say, HostParams, ParamError, CLOSE_SESSION_CLOSED, CLOSE_TAKEN_OVER};

use super::effects::Out;
use super::{new_token, refuse_http, Answer, Effect, SessionCore, Token};

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    HostLeftWithoutReconnect,
    ReconnectWindowExpired,
}

impl EndReason {
    fn as_str(self) -> &'static str {
        match self {
            EndReason::HostLeftWithoutReconnect => "host left (reconnect=false)",
            EndReason::ReconnectWindowExpired => "reconnect window expired",
        }
    }
}

impl SessionCore {
    /// The record, after ending it if its reconnect window has run out.
    pub(super) fn live_record(&mut self, now: f64, out: &mut Out<'_>) -> bool {
        if self.record.as_ref().is_some_and(|r| r.expired(now)) {
            self.end_session(now, EndReason::ReconnectWindowExpired, out);
        }
        self.record.is_some()
    }

    pub(super) fn host_connect(&mut self, now: f64, params: HostParams, fresh_secret: String, out: &mut Out<'_>) {
        // The router always names the session; without it there is nothing to open.
        let Some(sid) = params.id.clone() else {
            return refuse_http(out, 400, &ParamError::SessionId { in_path: false }.to_string());
        };
        self.live_record(now, out);
        // A session waits for its host for the whole reconnect window, even
        // one its host left before using it: only the secret takes it over.
        let admission = match admit_host(self.record.as_ref(), params.secret.as_deref()) {
            Ok(a) => a,
            Err(HostRejection::AlreadyExists) => return refuse_http(out, 409, http::SESSION_EXISTS),
            Err(HostRejection::NotFoundOrBadSecret) => return refuse_http(out, 404, http::COULD_NOT_CONNECT),
        };
        let take_over = admission == HostAdmission::TakeOver;
        if take_over {
            if let Some(old) = self.host {
                self.close_socket(old, CLOSE_TAKEN_OVER, out);
            }
            out.push(Effect::Log(Event::info("host_took_over").with("sid", sid.as_str())));
        } else {
            self.record = Some(SessionRecord::new(sid.clone(), fresh_secret, params.reconnect));
            out.push(Effect::Log(Event::info("session_created").with("sid", sid.as_str())));
        }
        let record = self.record.as_mut().expect("admitted or created above");
        if take_over {
            record.host_generation += 1;
        }
        record.reconnect = params.reconnect;
        record.host_away_until = None;
        let token = new_token(&mut self.last_token, now);
        let role = Role::Host { generation: record.host_generation };
        let mut info = SocketInfo::new(role, token, params.keep_alive, now, &self.settings);
        info.resume = params.resume.is_some();
        out.push(Effect::Accept { socket: token, info: Some(info.clone()) });
        self.sockets.insert(token, info);
        self.host = Some(token);
        let record = self.record.as_ref().expect("exists");
        // Connect lines: never part of a resume stream's numbering.
        out.push(Effect::SendUncounted { to: token, text: say::session(&record.id) });
        out.push(Effect::SendUncounted { to: token, text: say::secret(&record.secret) });
        match params.resume {
            // Section 7: a host that resumes gets what it missed, or, after a
            // gap, the view of a take-over; the queue after either.
            Some(request) => {
                let key = super::resume::host_stream();
                if !take_over {
                    self.forget_stream(now, key);
                }
                let gap = self.resume_stream(now, token, key, request.have, out);
                if take_over && gap {
                    self.replay_session(token, out);
                } else if take_over {
                    self.replay_queue(token, out);
                }
            }
            None => {
                self.forget_stream(now, super::resume::host_stream());
                if take_over {
                    self.replay_session(token, out);
                }
            }
        }
        self.persist(out);
        self.stats_changed(now);
        out.push(Effect::Respond(Answer::Upgrade { socket: token }));
    }

    /// What a host that takes over must know (PROTOCOL.md section 2): the
    /// links as they stand, every client it can address, then the queue.
    fn replay_session(&mut self, host: Token, out: &mut Out<'_>) {
        let record = self.record.as_ref().expect("taken over");
        if let Some(master) = record.group.confirmed_master() {
            Self::send(out, host, say::set_master(&master.sid));
        }
        for slave in &record.group.slaves {
            Self::send(out, host, say::added_slave(&slave.sid));
        }
        let mut ids: BTreeSet<u32> = self.clients.keys().copied().collect();
        ids.extend(record.group.slave_clients());
        for id in ids {
            Self::send(out, host, say::connected(id));
        }
        self.replay_queue(host, out);
    }

    pub(super) fn host_left(&mut self, now: f64, out: &mut Out<'_>) {
        let Some(record) = self.record.as_mut() else { return };
        if !record.reconnect {
            return self.end_session(now, EndReason::HostLeftWithoutReconnect, out);
        }
        record.host_away_until = Some(now + self.settings.reconnect_ms);
        out.push(Effect::Log(
            Event::info("host_left")
                .with("sid", record.id.as_str())
                .with("reconnect_seconds", self.settings.reconnect_ms / 1000.0),
        ));
        // A search whose host has gone must not be matched.
        self.stop_search(now, out);
        if let Some(record) = self.record.as_mut() {
            record.group.thaw_if_idle();
        }
        self.persist(out);
        self.stats_changed(now);
    }

    /// The session ends: its clients are closed `4004`, its links end as in
    /// `/leave-session`, and the id is free again. What it still owes others
    /// (its links' last messages, the end of its search, zero figures) stays
    /// in storage until delivered.
    pub(super) fn end_session(&mut self, now: f64, why: EndReason, out: &mut Out<'_>) {
        let tokens: Vec<Token> = self.sockets.keys().copied().collect();
        for token in tokens {
            self.close_socket(token, CLOSE_SESSION_CLOSED, out);
        }
        self.leave_links(now, out);
        self.owe_search_end();
        self.owe_zero_figures(now);
        let Some(record) = self.record.take() else { return };
        // What is owed names the session: calls made after it ended carry it.
        self.owed.sid = record.id.clone();
        out.push(Effect::EraseQueue);
        self.persist(out);
        out.push(Effect::Log(
            Event::info("session_ended").with("sid", record.id.as_str()).with("reason", why.as_str()),
        ));
        self.stats_due = None;
        self.end_streams(now);
        self.timers_dirty = true;
    }

    /// After a wake-up: the links' senders are rebuilt from what was stored,
    /// and a host whose close never arrived (a restart lost it) has left.
    pub(super) fn reconcile(&mut self, now: f64, out: &mut Out<'_>) {
        if let Some(record) = &self.record {
            if let Some(master) = &record.group.master {
                let mut channel = Outbound::restore(&master.sid, master.link, master.outbox.clone(), false, now);
                if !master.confirmed {
                    channel.pause();
                }
                self.channels.insert(master.link, channel);
            }
            for slave in &record.group.slaves {
                let channel = Outbound::restore(&slave.sid, slave.link, slave.outbox.clone(), false, now);
                self.channels.insert(slave.link, channel);
            }
        }
        // A link that ended here and has nothing left to deliver is done.
        let delivered = self.owed.closing.iter().any(|c| c.outbox.is_empty());
        self.owed.closing.retain(|c| !c.outbox.is_empty());
        if delivered {
            self.persist(out);
        }
        for closing in &self.owed.closing {
            let channel = Outbound::restore(&closing.peer, closing.link, closing.outbox.clone(), true, now);
            self.channels.insert(closing.link, channel);
        }
        self.bury_silent_sockets(now, out);
        self.square_roster_with_master(now, out);
        let orphaned = self.host.is_none() && self.record.as_ref().is_some_and(|r| r.host_away_until.is_none());
        if orphaned {
            self.host_left(now, out);
        } else if self.record.as_ref().is_some_and(|r| r.stats_reported != self.counts()) {
            self.stats_changed(now);
        }
    }
}
