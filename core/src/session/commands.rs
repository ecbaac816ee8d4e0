//! The host's commands (PROTOCOL.md section 4): `/join-session`,
//! `/close-session`, `/leave-session`, `/stats`, `/version`.

use crate::calls::AggregatorCall;
use crate::wire::{say, HostCommand, JoinOptions};

use super::effects::Out;
use super::{CallBody, InFlight, Peer, SessionCore, Token};

impl SessionCore {
    pub(super) fn command(&mut self, now: f64, socket: Token, command: HostCommand, out: &mut Out<'_>) {
        match command {
            HostCommand::Version => Self::send(out, socket, say::version(crate::VERSION)),
            HostCommand::Stats => {
                let body = CallBody::Aggregator(AggregatorCall::Stats);
                self.call(Peer::Root, body, InFlight::StatsQuery, out);
            }
            HostCommand::JoinSession(options) => self.join_session(now, socket, options, out),
            HostCommand::CloseSession => {
                self.stop_search(now, out);
                if let Some(record) = self.record.as_mut() {
                    record.group.thaw_if_idle();
                }
                self.persist(out);
            }
            HostCommand::LeaveSession => {
                self.leave_links(now, out);
                self.stop_search(now, out);
                if let Some(record) = self.record.as_mut() {
                    record.group.frozen = None;
                }
                self.persist(out);
            }
        }
    }

    fn join_session(&mut self, now: f64, socket: Token, options: JoinOptions, out: &mut Out<'_>) {
        let own: Vec<u32> = self.clients.keys().copied().collect();
        let record = self.record.as_mut().expect("a host implies a session");
        // A session joins one master at most (also one that is on its way),
        // and never itself.
        if record.group.master.is_some() || options.target.as_deref() == Some(record.id.as_str()) {
            return Self::send(out, socket, say::INVALID);
        }
        record.group.frozen.get_or_insert(own);
        record.group.search = Some(options);
        // A new epoch names this search: from the clock, so it is newer than
        // any search this id had before, even one of an earlier session.
        record.group.search_epoch = (record.group.search_epoch + 1).max(now as u64);
        self.search_retry.succeeded();
        self.persist(out);
    }
}
