//! The host's commands (PROTOCOL.md section 4): `/join-session`,
//! `/close-session`, `/leave-session`, `/stats`, `/version`.

use std::collections::BTreeSet;

use crate::calls::{MatchmakerCall, SessionCall};
use crate::matchmaker::pool::Search;
use crate::wire::{say, HostCommand};

use super::*;

impl SessionCore {
    pub(super) fn command(&mut self, socket: Token, command: HostCommand, out: &mut Out<'_>) {
        let sid = self.sid().to_string();
        match command {
            HostCommand::Version => Self::send(out, socket, say::version(crate::VERSION)),
            HostCommand::Stats => Self::call_matchmaker(out, MatchmakerCall::Stats, Purpose::Stats),
            HostCommand::JoinSession(options) => {
                let own: Vec<u32> = self.clients.keys().copied().collect();
                let record = self.record.as_mut().expect("a socket implies a session");
                // A session joins one master at most, and never itself.
                if record.group.master.is_some() || options.target.as_deref() == Some(sid.as_str()) {
                    return Self::send(out, socket, say::INVALID);
                }
                let frozen = record.group.frozen.get_or_insert(own).clone();
                let top = frozen.last().copied().unwrap_or(0);
                let used =
                    std::iter::once((0, top)).chain(record.group.slaves.iter().map(|s| (s.offset, s.span))).collect();
                let search = Search::new(&sid, &options, used, frozen.len() as u32);
                record.group.search = Some(options);
                self.persist(out);
                Self::call_matchmaker(out, MatchmakerCall::Search { search }, Purpose::Search);
            }
            HostCommand::CloseSession => {
                let record = self.record.as_mut().expect("a socket implies a session");
                if record.group.search.take().is_some() {
                    Self::call_matchmaker(out, MatchmakerCall::Cancel { sid }, Purpose::Notice);
                }
                record.group.thaw_if_idle();
                self.persist(out);
            }
            HostCommand::LeaveSession => {
                self.leave_links("left", out);
                self.persist(out);
            }
        }
    }

    /// `/leave-session`, also run when a session ends: every link ends, the
    /// search stops and the session admits clients again.
    pub(super) fn leave_links(&mut self, why: &'static str, out: &mut Out<'_>) {
        let Some(record) = self.record.as_mut() else { return };
        let sid = record.id.clone();
        let slaves = std::mem::take(&mut record.group.slaves);
        let master = record.group.master.take();
        let searching = record.group.search.take().is_some();
        record.group.frozen = None;
        // The master's host no longer reaches its slaves' clients.
        let gone: BTreeSet<u32> = slaves.iter().flat_map(|s| s.clients.iter().copied()).collect();
        for n in gone {
            self.tell_host(out, say::disconnected(n));
        }
        for slave in slaves {
            Self::call_peer(out, &slave.sid, SessionCall::MasterLeft { master: sid.clone() }, Purpose::Notice);
            out.push(Effect::Log(link_ended(&sid, &slave.sid, why)));
        }
        if let Some(master) = master {
            Self::call_peer(out, &master.sid, SessionCall::SlaveLeft { slave: sid.clone() }, Purpose::Notice);
            out.push(Effect::Log(link_ended(&master.sid, &sid, why)));
        }
        if searching {
            Self::call_matchmaker(out, MatchmakerCall::Cancel { sid }, Purpose::Notice);
        }
    }

    pub(super) fn stop_searching(&mut self, out: &mut Out<'_>) {
        let Some(record) = self.record.as_mut() else { return };
        if record.group.search.take().is_some() {
            Self::call_matchmaker(out, MatchmakerCall::Cancel { sid: record.id.clone() }, Purpose::Notice);
        }
    }
}
