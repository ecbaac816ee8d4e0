//! The queue for an absent host (PROTOCOL.md section 5): client messages and
//! what the host would hear from its links, in arrival order, within 256 KiB
//! and 4,096 messages; link lines outside that bound. Replayed, once, to the
//! host that takes over.

use crate::journal::Event;
use crate::record::queue_admits;

use super::effects::Out;
use super::inputs::QueueSource;
use super::{Effect, SessionCore, Token};

/// What became of a message for the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Delivery {
    Sent,
    Kept,
    /// The host is away and the queue is full.
    NoRoom,
}

impl SessionCore {
    /// A message for the host (`bytes` of it count against the bound): sent
    /// now, or kept for the take-over if it fits.
    pub(super) fn deliver_message(
        &mut self,
        line: String,
        bytes: usize,
        source: QueueSource,
        out: &mut Out<'_>,
    ) -> Delivery {
        if self.tell_host(out, line.clone()) {
            return Delivery::Sent;
        }
        if self.keep(line, bytes, source, out) {
            Delivery::Kept
        } else {
            Delivery::NoRoom
        }
    }

    /// Puts a message in the queue if it fits the bound.
    pub(super) fn keep(&mut self, line: String, bytes: usize, source: QueueSource, out: &mut Out<'_>) -> bool {
        let Some(record) = self.record.as_mut() else { return false };
        if !queue_admits(record.queued_bytes, record.queued_lines, bytes) {
            out.push(Effect::Log(Event::warn("queue_full").with("sid", record.id.as_str()).with("bytes", bytes)));
            return false;
        }
        record.queued_bytes += bytes;
        record.queued_lines += 1;
        out.push(Effect::Enqueue { line, source, bytes });
        self.persist(out);
        true
    }

    /// A link line (`!slave-left:`, `!master-left`, and the `disconnected:`
    /// lines that go with them) for the host: sent now (true), or always kept.
    pub(super) fn deliver_notice(&mut self, line: String, out: &mut Out<'_>) -> bool {
        if self.tell_host(out, line.clone()) {
            return true;
        }
        let Some(record) = self.record.as_mut() else { return false };
        record.queued_notices += 1;
        out.push(Effect::Enqueue { line, source: QueueSource::Notice, bytes: 0 });
        self.persist(out);
        false
    }

    /// Sends the whole queue to the host that took over, in order.
    pub(super) fn replay_queue(&mut self, host: Token, out: &mut Out<'_>) {
        let record = self.record.as_ref().expect("taken over");
        let (bytes, lines, notices) = (record.queued_bytes, record.queued_lines, record.queued_notices);
        if lines + notices == 0 {
            return;
        }
        let after = record.queue_delivered_through;
        let numbered = self.sockets.get(&host).is_some_and(|i| i.resume);
        out.push(Effect::Replay { to: host, after, bytes, lines, notices, numbered });
        let record = self.record.as_mut().expect("taken over");
        record.queued_bytes = 0;
        record.queued_lines = 0;
        record.queued_notices = 0;
        // The host hears every `disconnected:` now: those ids are free again.
        record.unheard_gone.clear();
    }
}
