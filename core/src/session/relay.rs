//! Relaying (PROTOCOL.md sections 2, 3 and 5): frames from hosts and clients,
//! rate limits, and the queue for an absent host.

use crate::calls::{SessionCall, SlaveEvent, GONE_STATUS, OK_STATUS, QUEUE_FULL_STATUS};
use crate::journal::Event;
use crate::record::{queue_admits, Role};
use crate::wire::{
    client_number, parse_host_frame, say, HostFrame, CLOSE_BINARY, CLOSE_HOST_UNAVAILABLE, CLOSE_RATE_LIMITED,
    CLOSE_TOO_BIG,
};

use super::*;

impl SessionCore {
    pub(super) fn frame<'a>(&mut self, now: f64, socket: Token, frame: Frame<'a>, out: &mut Out<'a>) {
        let Some(info) = self.sockets.get_mut(&socket) else { return };
        let text = match frame {
            Frame::Text(text) => text,
            Frame::Binary => return self.refuse(now, socket, CLOSE_BINARY, out),
            Frame::TooBig => return self.refuse(now, socket, CLOSE_TOO_BIG, out),
        };
        let limits = self.settings.limits(info.is_host());
        let (frames_before, bytes_before) = (info.bucket.tokens, info.byte_bucket.tokens);
        // Frames and bytes are both limited: a flood of small frames costs
        // events, a stream of large ones costs memory in every receiver's
        // unsent backlog, which the runtime does not let the relay see.
        let within = info.bucket.take(now, limits.per_second, limits.burst)
            && info.byte_bucket.take_n(now, text.len() as f64, limits.bytes_per_second, limits.bytes_burst);
        if !within {
            return self.refuse(now, socket, CLOSE_RATE_LIMITED, out);
        }
        // The attachment's copy of the buckets only matters after hibernation,
        // and only once one runs low (an idle socket's buckets refill anyway),
        // so the relay path rarely rewrites it.
        let low = |before: f64, after: f64, burst: f64| after < burst / 2.0 && before >= burst / 2.0;
        if low(frames_before, info.bucket.tokens, limits.burst)
            || low(bytes_before, info.byte_bucket.tokens, limits.bytes_burst)
        {
            out.push(Effect::Attach { socket, info: info.clone() });
        }
        match info.role {
            Role::Host { .. } => self.host_frame(socket, text, out),
            Role::Client { id, .. } => self.client_frame(now, socket, id, text, out),
        }
    }

    pub(super) fn client_frame<'a>(&mut self, now: f64, socket: Token, id: u32, text: &'a str, out: &mut Out<'a>) {
        if let Some(host) = self.host {
            out.push(Effect::SendFromClient { to: host, client: id, message: text });
        } else {
            let line = say::from_client(id, text);
            let record = self.record.as_mut().expect("a socket implies a session");
            // The bound counts what clients sent, not the relay's prefixes.
            if !queue_admits(record.queued_bytes, text.len()) {
                return self.refuse(now, socket, CLOSE_HOST_UNAVAILABLE, out);
            }
            record.queued_bytes += text.len();
            record.queued_lines += 1;
            out.push(Effect::Enqueue { line, sender: Some(socket), bytes: text.len() });
            self.persist(out);
        }
        if let Some((master, n)) = self.record.as_ref().and_then(|r| r.group.id_at_master(id)) {
            let event = SlaveEvent::Message(n, text.to_string());
            Self::call_peer(
                out,
                master,
                SessionCall::SlaveEvent { slave: self.sid().to_string(), event },
                Purpose::Forwarded { sender: socket },
            );
        }
    }

    pub(super) fn host_frame<'a>(&mut self, socket: Token, text: &'a str, out: &mut Out<'a>) {
        if let Some(record) = self.record.as_mut().filter(|r| !r.used) {
            record.used = true;
            self.persist(out);
        }
        match parse_host_frame(text) {
            HostFrame::Invalid => Self::send(out, socket, say::INVALID),
            HostFrame::ToClient { client, message } => self.host_to_client(socket, client, message, out),
            HostFrame::ToLinkedHosts { message } => {
                let record = self.record.as_ref().expect("a socket implies a session");
                if let Some(master) = &record.group.master {
                    let call = SessionCall::Broadcast { from: record.id.clone(), message: message.to_string() };
                    Self::call_peer(out, &master.sid, call, Purpose::Linked);
                }
                self.broadcast_to_slaves(None, message, out);
            }
            HostFrame::Command(command) => self.command(socket, command, out),
        }
    }

    pub(super) fn host_to_client<'a>(&self, socket: Token, digits: &'a str, message: &'a str, out: &mut Out<'a>) {
        let Some(n) = client_number(digits) else { return Self::send(out, socket, say::unknown(digits)) };
        let record = self.record.as_ref().expect("a socket implies a session");
        if let Some(slave) = record.group.slave_holding(n) {
            if !slave.clients.contains(&n) {
                return Self::send(out, socket, say::unknown(digits));
            }
            let call = SessionCall::ToClient { id: n - slave.offset, message: message.to_string() };
            return Self::call_peer(out, &slave.sid, call, Purpose::ToSlaveClient { digits: digits.to_string() });
        }
        match self.clients.get(&n) {
            Some(&client) => Self::send(out, client, message),
            None => Self::send(out, socket, say::unknown(digits)),
        }
    }

    pub(super) fn broadcast_to_slaves(&self, except: Option<&str>, message: &str, out: &mut Out<'_>) {
        let record = self.record.as_ref().expect("a socket implies a session");
        for slave in record.group.slaves.iter().filter(|s| Some(s.sid.as_str()) != except) {
            let call = SessionCall::DeliverToHost { line: say::from_client(0, message), queue: true };
            Self::call_peer(out, &slave.sid, call, Purpose::Linked);
        }
    }

    /// A line for the host: sent now, or kept for the take-over. Returns the
    /// status for the caller.
    pub(super) fn deliver(&mut self, line: String, queue: bool, out: &mut Out<'_>) -> u16 {
        if self.host.is_some() {
            self.tell_host(out, line);
            return OK_STATUS;
        }
        if !queue {
            return OK_STATUS;
        }
        let Some(record) = self.record.as_mut() else { return GONE_STATUS };
        if !queue_admits(record.queued_bytes, line.len()) {
            out.push(Effect::Log(Event::warn("queue_full").with("sid", record.id.as_str()).with("bytes", line.len())));
            return QUEUE_FULL_STATUS;
        }
        record.queued_bytes += line.len();
        record.queued_lines += 1;
        let bytes = line.len();
        out.push(Effect::Enqueue { line, sender: None, bytes });
        self.persist(out);
        OK_STATUS
    }
}
