//! A partner's messages over a link (PROTOCOL.md section 4), as this session
//! applies them: in order and once (`channel::accept`), each one changing the
//! link's state or reaching this host, and the answer that acknowledges them.

use crate::calls::{LinkBatch, LinkId, LinkMsg, STALE_STATUS};
use crate::channel::{accept, Accept};

use crate::wire::say;

use super::effects::Out;
use super::inputs::QueueSource;
use super::links::{link_made, Ending};
use super::queue::Delivery;
use super::{respond, Effect, SessionCore};

impl SessionCore {
    /// Applies a batch of the partner's messages in order and once, and
    /// answers with the highest one applied. A batch for a link this session
    /// does not hold (any more) is refused as stale.
    pub(super) fn on_link_batch(&mut self, now: f64, batch: LinkBatch, out: &mut Out<'_>) {
        let Some(record) = self.record.as_ref() else { return respond(out, STALE_STATUS, "no such link") };
        let group = &record.group;
        let as_slave = group.master.as_ref().filter(|m| m.link == batch.link && m.sid == batch.from);
        let as_master = group.slave_by_link(batch.link).filter(|s| s.sid == batch.from);
        let applied = match (as_slave, as_master) {
            (Some(m), _) => m.applied,
            (None, Some(s)) => s.applied,
            (None, None) => return respond(out, STALE_STATUS, "no such link"),
        };
        let slave_side = as_slave.is_some();
        let start = match accept(applied, &batch) {
            Accept::Gap => return respond(out, 200, &ack_json(applied)),
            Accept::From(i) => i,
        };
        let link = batch.link;
        let mut last = applied;
        for entry in batch.entries.into_iter().skip(start) {
            last = entry.seq;
            let still = if slave_side {
                self.from_master(now, link, entry.msg, out)
            } else {
                self.from_slave(now, link, entry.msg, out)
            };
            if !still {
                // The link is over: nothing after this applies, and the
                // partner need not send it again.
                return respond(out, 200, &ack_json(u64::MAX));
            }
        }
        if let Some(record) = self.record.as_mut() {
            if let Some(m) = record.group.master.as_mut().filter(|m| m.link == link) {
                m.applied = last;
            } else if let Some(s) = record.group.slave_by_link_mut(link) {
                s.applied = last;
            }
        }
        // Applied once, even across a reset: stored before the answer leaves.
        self.persist(out);
        respond(out, 200, &ack_json(last));
    }

    /// One message from this slave's master; false once the link is over.
    fn from_master(&mut self, now: f64, link: LinkId, msg: LinkMsg, out: &mut Out<'_>) -> bool {
        match msg {
            LinkMsg::Welcome => {
                let record = self.record.as_mut().expect("linked");
                let group = &mut record.group;
                let master = group.master.as_mut().expect("linked");
                if !master.confirmed {
                    master.confirmed = true;
                    let master_sid = master.sid.clone();
                    let offset = master.offset;
                    // The Matchmaker took this search out of its pool.
                    group.search = None;
                    group.search_synced = Some((group.search_epoch, false));
                    let sid = record.id.clone();
                    if let Some(channel) = self.channels.get_mut(&link) {
                        channel.resume();
                    }
                    self.deliver_notice(say::set_master(&master_sid), out);
                    out.push(Effect::Log(link_made(&master_sid, &sid, offset)));
                }
            }
            LinkMsg::ToClient { rank, digits, text } => {
                let record = self.record.as_ref().expect("linked");
                match record.group.client_at_rank(rank).and_then(|c| self.clients.get(&c)) {
                    Some(&token) => Self::send(out, token, text),
                    None => self.push_link(now, link, LinkMsg::Unknown { digits }, out),
                }
            }
            LinkMsg::Broadcast { text } => {
                let line = say::from_client(0, &text);
                if self.deliver_message(line, text.len(), QueueSource::Link(link), out) == Delivery::NoRoom {
                    self.end_master_link(now, Ending::Broken, out);
                    return false;
                }
            }
            LinkMsg::Left => {
                self.end_master_link(now, Ending::PartnerLeft, out);
                return false;
            }
            // Only a slave sends these.
            LinkMsg::Connected { .. }
            | LinkMsg::Disconnected { .. }
            | LinkMsg::Message { .. }
            | LinkMsg::Unknown { .. } => {}
        }
        true
    }

    /// One message from one of this master's slaves; false once that link is over.
    fn from_slave(&mut self, now: f64, link: LinkId, msg: LinkMsg, out: &mut Out<'_>) -> bool {
        match msg {
            LinkMsg::Connected { id } => {
                let slave = self.record.as_mut().and_then(|r| r.group.slave_by_link_mut(link)).expect("linked");
                if slave.holds(id) && slave.clients.insert(id) {
                    self.tell_host(out, say::connected(id));
                }
            }
            LinkMsg::Disconnected { id } => {
                let slave = self.record.as_mut().and_then(|r| r.group.slave_by_link_mut(link)).expect("linked");
                if slave.clients.remove(&id) {
                    self.tell_host(out, say::disconnected(id));
                }
            }
            LinkMsg::Message { id, text } => {
                let line = say::from_client(id, &text);
                if self.deliver_message(line, text.len(), QueueSource::Link(link), out) == Delivery::NoRoom {
                    self.end_slave_link(now, link, Ending::Broken, out);
                    return false;
                }
            }
            LinkMsg::Unknown { digits } => {
                self.tell_host(out, say::unknown(&digits));
            }
            LinkMsg::Broadcast { text } => {
                let line = say::from_client(0, &text);
                if self.deliver_message(line, text.len(), QueueSource::Link(link), out) == Delivery::NoRoom {
                    self.end_slave_link(now, link, Ending::Broken, out);
                    return false;
                }
                self.broadcast(now, Some(link), &text, out);
            }
            LinkMsg::Left => {
                self.end_slave_link(now, link, Ending::PartnerLeft, out);
                return false;
            }
            // Only a master sends these.
            LinkMsg::Welcome | LinkMsg::ToClient { .. } => {}
        }
        true
    }
}

fn ack_json(ack: u64) -> String {
    format!("{{\"ack\":{ack}}}")
}
