//! The host (PROTOCOL.md section 2): connect, take-over, leaving, the
//! reconnect window and the end of a session.

use std::collections::BTreeSet;

use crate::calls::MatchmakerCall;
use crate::journal::Event;
use crate::record::{admit_host, HostAdmission, HostRejection, Role, SessionRecord, SocketInfo};
use crate::stats::SessionCounts;
use crate::wire::{http, say, HostParams, ParamError, CLOSE_SESSION_CLOSED, CLOSE_TAKEN_OVER};

use super::*;

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    HostLeftWithoutReconnect,
    ReconnectWindowExpired,
    NeverUsed,
}

impl EndReason {
    fn as_str(self) -> &'static str {
        match self {
            EndReason::HostLeftWithoutReconnect => "host left (reconnect=false)",
            EndReason::ReconnectWindowExpired => "reconnect window expired",
            EndReason::NeverUsed => "host gone before using it; id claimed again",
        }
    }
}

impl SessionCore {
    /// The record, after ending it if its reconnect window has run out.
    pub(super) fn live_record(&mut self, now: f64, out: &mut Out<'_>) -> bool {
        if self.record.as_ref().is_some_and(|r| r.expired(now)) {
            self.end_session(EndReason::ReconnectWindowExpired, out);
        }
        self.record.is_some()
    }

    pub(super) fn host_connect(&mut self, now: f64, params: HostParams, fresh_secret: String, out: &mut Out<'_>) {
        // The router always names the session; without it there is nothing to open.
        let Some(sid) = params.id.clone() else {
            return refuse_http(out, 400, &ParamError::SessionId { in_path: false }.to_string());
        };
        self.live_record(now, out);
        let abandoned = self.host.is_none() && self.record.as_ref().is_some_and(|r| !r.used);
        if abandoned && params.secret.is_none() {
            // Nobody ever used it and its host is gone: the id is free.
            self.end_session(EndReason::NeverUsed, out);
        }
        let admission = match admit_host(self.record.as_ref(), params.secret.as_deref()) {
            Ok(a) => a,
            Err(HostRejection::AlreadyExists) => return refuse_http(out, 409, http::SESSION_EXISTS),
            Err(HostRejection::NotFoundOrBadSecret) => return refuse_http(out, 404, http::COULD_NOT_CONNECT),
        };
        if admission == HostAdmission::TakeOver {
            if let Some(old) = self.host {
                self.close_socket(old, CLOSE_TAKEN_OVER, out);
            }
            out.push(Effect::Log(Event::info("host_took_over").with("sid", sid.as_str())));
        } else {
            let record = SessionRecord::new(sid.clone(), fresh_secret, params.reconnect);
            self.record = Some(record);
            out.push(Effect::Log(Event::info("session_created").with("sid", sid.as_str())));
        }
        let record = self.record.as_mut().expect("admitted or created above");
        if admission == HostAdmission::TakeOver {
            record.host_generation += 1;
            record.used = true;
        }
        record.reconnect = params.reconnect;
        record.host_away_until = None;
        let token = new_token(&mut self.last_token, now);
        let info = SocketInfo::new(
            Role::Host { generation: record.host_generation },
            token,
            params.keep_alive,
            now,
            &self.settings,
        );
        let (session_line, secret_line) = (say::session(&record.id), say::secret(&record.secret));
        let (queued_bytes, queued_lines) = (record.queued_bytes, record.queued_lines);
        out.push(Effect::Accept { socket: token, info: Some(info.clone()) });
        self.sockets.insert(token, info);
        self.host = Some(token);
        Self::send(out, token, session_line);
        Self::send(out, token, secret_line);
        if admission == HostAdmission::TakeOver {
            // Every client it can address: its own and its slaves'.
            let mut ids: BTreeSet<u32> = self.clients.keys().copied().collect();
            if let Some(record) = &self.record {
                ids.extend(record.group.slave_clients());
            }
            for id in ids {
                Self::send(out, token, say::connected(id));
            }
            if queued_lines > 0 {
                out.push(Effect::Replay { to: token, bytes: queued_bytes, lines: queued_lines });
                let record = self.record.as_mut().expect("exists");
                record.queued_bytes = 0;
                record.queued_lines = 0;
            }
        }
        self.persist(out);
        self.stats_changed(now);
        out.push(Effect::Respond(Answer::Upgrade { socket: token }));
    }

    pub(super) fn host_left(&mut self, now: f64, out: &mut Out<'_>) {
        let Some(record) = self.record.as_mut() else { return };
        if !record.reconnect {
            return self.end_session(EndReason::HostLeftWithoutReconnect, out);
        }
        record.host_away_until = Some(now + self.settings.reconnect_ms);
        out.push(Effect::Log(
            Event::info("host_left")
                .with("sid", record.id.as_str())
                .with("reconnect_seconds", self.settings.reconnect_ms / 1000.0),
        ));
        // A search whose host has gone must not be matched.
        self.stop_searching(out);
        if let Some(record) = self.record.as_mut() {
            record.group.thaw_if_idle();
        }
        self.persist(out);
        self.stats_changed(now);
    }

    pub(super) fn end_session(&mut self, why: EndReason, out: &mut Out<'_>) {
        let tokens: Vec<Token> = self.sockets.keys().copied().collect();
        for token in tokens {
            self.close_socket(token, CLOSE_SESSION_CLOSED, out);
        }
        self.leave_links("session ended", out);
        let Some(record) = self.record.take() else { return };
        if !record.stats_reported.is_zero() {
            let counts = SessionCounts::default();
            Self::call_matchmaker(out, MatchmakerCall::Report { sid: record.id.clone(), counts }, Purpose::Notice);
        }
        out.push(Effect::Erase);
        out.push(Effect::Log(
            Event::info("session_ended").with("sid", record.id.as_str()).with("reason", why.as_str()),
        ));
        self.timers_dirty = true;
    }

    /// After a restart, the record may say a host is connected although the
    /// runtime holds no host socket (its close was never delivered).
    pub(super) fn reconcile(&mut self, now: f64, out: &mut Out<'_>) {
        let orphaned = self.host.is_none() && self.record.as_ref().is_some_and(|r| r.host_away_until.is_none());
        if orphaned {
            self.host_left(now, out);
        }
    }
}
