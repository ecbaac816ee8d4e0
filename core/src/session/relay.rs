//! Relaying (PROTOCOL.md sections 2, 3 and 5): frames from hosts and clients,
//! to their peers in this session and, through the link's sender, in the
//! linked ones.

use crate::calls::LinkMsg;
use crate::record::Role;
use crate::wire::{
    client_number, parse_host_frame, say, HostFrame, CLOSE_BINARY, CLOSE_HOST_UNAVAILABLE, CLOSE_RATE_LIMITED,
    CLOSE_SESSION_CLOSED, CLOSE_TOO_BIG,
};

use super::effects::Out;
use super::inputs::QueueSource;
use super::limits::{self, Verdict};
use super::{Effect, Frame, SessionCore, Token};

impl SessionCore {
    pub(super) fn frame<'a>(&mut self, now: f64, socket: Token, frame: Frame<'a>, out: &mut Out<'a>) {
        let Some(info) = self.sockets.get_mut(&socket) else { return };
        let text = match frame {
            Frame::Text(text) => text,
            Frame::Binary => return self.refuse(now, socket, CLOSE_BINARY, out),
            Frame::TooBig => return self.refuse(now, socket, CLOSE_TOO_BIG, out),
        };
        match limits::take(info, &self.settings, now, text.len()) {
            Verdict::Over => return self.refuse(now, socket, CLOSE_RATE_LIMITED, out),
            Verdict::WithinLow => out.push(Effect::Attach { socket, info: info.clone() }),
            Verdict::Within => {}
        }
        let role = info.role.clone();
        if self.extension_frame(now, socket, text, out) {
            return;
        }
        if self.record.is_none() {
            // Sockets never outlive their session; should one, it learns.
            self.close_socket(socket, CLOSE_SESSION_CLOSED, out);
            return;
        }
        match role {
            Role::Host { .. } => self.host_frame(now, socket, text, out),
            Role::Client { id, .. } => self.client_frame(now, socket, id, text, out),
        }
    }

    fn client_frame<'a>(&mut self, now: f64, socket: Token, id: u32, text: &'a str, out: &mut Out<'a>) {
        if let Some(host) = self.host {
            out.push(Effect::SendFromClient { to: host, client: id, message: text });
        } else if !self.keep(say::from_client(id, text), text.len(), QueueSource::Client(socket), out) {
            // The bound counts what clients sent, not the relay's prefixes.
            return self.refuse(now, socket, CLOSE_HOST_UNAVAILABLE, out);
        }
        // A slave's clients are the master's too (its host hears them with
        // translated ids); before the master confirms, they wait in the link.
        let forward = self.record.as_ref().and_then(|r| {
            let master = r.group.master.as_ref()?;
            Some((master.link, r.group.id_at_master(id)?.1))
        });
        if let Some((link, n)) = forward {
            self.push_link(now, link, LinkMsg::Message { id: n, text: text.to_string() }, out);
        }
    }

    fn host_frame<'a>(&mut self, now: f64, socket: Token, text: &'a str, out: &mut Out<'a>) {
        match parse_host_frame(text) {
            HostFrame::Invalid => Self::send(out, socket, say::INVALID),
            HostFrame::ToClient { client, message } => self.host_to_client(now, socket, client, message, out),
            HostFrame::ToLinkedHosts { message } => self.broadcast(now, None, message, out),
            HostFrame::Command(command) => self.command(now, socket, command, out),
        }
    }

    fn host_to_client<'a>(&mut self, now: f64, socket: Token, digits: &'a str, message: &'a str, out: &mut Out<'a>) {
        let Some(n) = client_number(digits) else { return Self::send(out, socket, say::unknown(digits)) };
        let record = self.record.as_ref().expect("checked by frame");
        if let Some(slave) = record.group.slave_holding(n) {
            if !slave.clients.contains(&n) {
                return Self::send(out, socket, say::unknown(digits));
            }
            let msg =
                LinkMsg::ToClient { rank: n - slave.offset, digits: digits.to_string(), text: message.to_string() };
            let link = slave.link;
            return self.push_link(now, link, msg, out);
        }
        match self.clients.get(&n) {
            Some(&client) => Self::send(out, client, message),
            None => Self::send(out, socket, say::unknown(digits)),
        }
    }

    /// `0: <message>` to the group's other hosts: from this session's host
    /// (`from` = None), or from the slave on link `from`, which the master
    /// passes on to its other slaves. With no link, nothing happens.
    pub(super) fn broadcast(&mut self, now: f64, from: Option<crate::calls::LinkId>, message: &str, out: &mut Out<'_>) {
        let Some(record) = self.record.as_ref() else { return };
        let mut links: Vec<_> = record.group.slaves.iter().map(|s| s.link).filter(|&l| Some(l) != from).collect();
        if from.is_none() {
            links.extend(record.group.confirmed_master().map(|m| m.link));
        }
        for link in links {
            self.push_link(now, link, LinkMsg::Broadcast { text: message.to_string() }, out);
        }
    }
}
