//! The calls that carry this session's links (ARCHITECTURE.md, "Calls
//! between objects"): each link's sender batches what is queued for the
//! partner into the next call, keeps a few calls in flight, and sends again
//! what was not acknowledged. What the partner's answer means for the link.

use crate::calls::{LinkAck, LinkId, LinkMsg, Outcome, SessionCall, GONE_STATUS, STALE_STATUS};
use crate::channel::Delivery;
use crate::journal::Event;

use super::effects::Out;
use super::links::Ending;
use super::{CallBody, Effect, InFlight, Peer, SessionCore};

/// How long stored work may go without news before the object checks on it.
const CHECKUP_MS: f64 = 15_000.0;

impl SessionCore {
    /// Queues a message for the partner on `link`. Relayed text that does
    /// not fit the link's bound ends the link (PROTOCOL.md section 5: the
    /// hosts hear `!master-left` and `!slave-left:`, nothing goes silently).
    pub(super) fn push_link(&mut self, now: f64, link: LinkId, msg: LinkMsg, out: &mut Out<'_>) {
        let durable = msg.is_durable();
        let sid = self.sid().to_string();
        let Some(channel) = self.channels.get_mut(&link).filter(|c| !c.is_closing()) else { return };
        match channel.push(msg) {
            Ok(_) if durable => self.persist(out),
            Ok(_) => {}
            Err(overflow) => {
                let (messages, bytes) = channel.buffered();
                out.push(Effect::Log(
                    Event::warn("link_overflow")
                        .with("sid", sid)
                        .with("peer", channel.peer.as_str())
                        .with("messages", messages)
                        .with("bytes", bytes)
                        .with("bound", format!("{overflow:?}")),
                ));
                self.end_link(now, link, Ending::Broken, out);
            }
        }
    }

    /// Ends whichever link of this session `link` is.
    pub(super) fn end_link(&mut self, now: f64, link: LinkId, how: Ending, out: &mut Out<'_>) {
        let group = self.record.as_ref().map(|r| &r.group);
        if group.is_some_and(|g| g.master.as_ref().is_some_and(|m| m.link == link)) {
            self.end_master_link(now, how, out);
        } else if group.is_some_and(|g| g.slave_by_link(link).is_some()) {
            self.end_slave_link(now, link, how, out);
        }
    }

    /// Makes every call that is due: each link's next batch, the search
    /// state for the Matchmaker, the figures for the aggregator.
    pub(super) fn flush_calls(&mut self, now: f64, out: &mut Out<'_>) {
        let sid = self.sid().to_string();
        let links: Vec<LinkId> = self.channels.keys().copied().collect();
        for link in links {
            while let Some(batch) = self.channels.get_mut(&link).and_then(|c| c.next_batch(&sid, now)) {
                let peer = Peer::Session(self.channels[&link].peer.clone());
                self.call(peer, CallBody::Session(SessionCall::Link(batch)), InFlight::Link(link), out);
            }
        }
        self.sync_search(now, out);
        self.sync_figures(now, out);
        // Stored work under way: an alarm checks on it, so that a reset
        // (which drops the answers with the memory) cannot leave it asleep.
        let stored_work = !self.owed.closing.is_empty()
            || self.owed.cancel.is_some()
            || self.search_unsynced()
            || self.channels.values().any(|c| c.has_durable() && !c.is_paused());
        if !stored_work {
            if self.checkup_at.take().is_some() {
                self.timers_dirty = true;
            }
        } else if self.checkup_at.is_none_or(|at| at <= now) {
            self.checkup_at = Some(now + CHECKUP_MS);
            self.timers_dirty = true;
        }
    }

    /// When a link's sender next wants to send (a retry).
    pub(super) fn links_deadline(&self) -> Option<f64> {
        self.channels.values().filter_map(|c| c.deadline()).reduce(f64::min)
    }

    pub(super) fn link_answered(&mut self, now: f64, link: LinkId, outcome: Outcome, out: &mut Out<'_>) {
        let sid = self.sid().to_string();
        let Some(channel) = self.channels.get_mut(&link) else { return };
        let closing = channel.is_closing();
        let ack = outcome.ok_body().and_then(|body| serde_json::from_str::<LinkAck>(body).ok());
        let delivery = match (&ack, &outcome) {
            (Some(ack), _) => channel.acked(ack.ack, now),
            // The partner does not hold this link (any more): it is over.
            (None, Outcome::Status(STALE_STATUS | GONE_STATUS, _)) => {
                if closing {
                    return self.drop_closing(link, out);
                }
                return self.end_link(now, link, Ending::Broken, out);
            }
            (None, _) => channel.failed(now),
        };
        match delivery {
            // Everything delivered (perhaps by an earlier call than this one).
            Delivery::Acked | Delivery::Retrying if closing && channel.is_idle() => self.drop_closing(link, out),
            Delivery::Acked | Delivery::Retrying => {}
            Delivery::TimedOut if closing => {
                out.push(Effect::Log(
                    Event::error("link_end_undelivered").with("sid", sid).with("peer", channel.peer.as_str()),
                ));
                self.drop_closing(link, out);
            }
            Delivery::TimedOut => {
                out.push(Effect::Log(
                    Event::warn("link_timed_out").with("sid", sid).with("peer", channel.peer.as_str()),
                ));
                self.end_link(now, link, Ending::Broken, out);
            }
        }
    }

    /// A link that ended here has told its partner: nothing more is owed.
    fn drop_closing(&mut self, link: LinkId, out: &mut Out<'_>) {
        self.channels.remove(&link);
        self.owed.closing.retain(|c| c.link != link);
        self.persist(out);
    }
}
