//! Storage failures reported by the executor: nobody's data is lost
//! silently. Someone learns: the sender, the host, the caller, or the log.

use crate::calls::UNAVAILABLE_STATUS;
use crate::journal::Event;
use crate::wire::{CLOSE_REPLAY_FAILED, CLOSE_STORAGE_FAILED};

use super::effects::Out;
use super::inputs::QueueSource;
use super::links::Ending;
use super::{refuse_http, respond, Effect, Input, SessionCore, StorageFailure};

/// How soon an object whose storage could not be read tries again.
const UNREADABLE_RETRY_MS: f64 = 1_000.0;

pub(super) const STORAGE_UNAVAILABLE: &str = "Storage unavailable: try again";

impl SessionCore {
    pub(super) fn storage_failed(&mut self, now: f64, failure: StorageFailure, out: &mut Out<'_>) {
        let sid = self.sid().to_string();
        match failure {
            StorageFailure::Persist(error) => {
                out.push(Effect::Log(storage_error(&sid, "persist", error)));
                // Written again at the next event (at the latest a second
                // from now); a caller whose messages were applied but not
                // stored sends them again.
                self.persist_again = Some(now + UNREADABLE_RETRY_MS);
                self.timers_dirty = true;
                if self.answering_call {
                    respond(out, UNAVAILABLE_STATUS, STORAGE_UNAVAILABLE);
                }
            }
            StorageFailure::Alarm(error) => {
                // Not known any more: the next change sets it again.
                self.alarm = None;
                self.timers_dirty = true;
                out.push(Effect::Log(storage_error(&sid, "alarm", error)));
            }
            StorageFailure::Enqueue { source, bytes, error } => {
                out.push(Effect::Log(storage_error(&sid, "enqueue", error)));
                if let Some(record) = self.record.as_mut() {
                    match source {
                        QueueSource::Notice => record.queued_notices = record.queued_notices.saturating_sub(1),
                        _ => {
                            record.queued_bytes = record.queued_bytes.saturating_sub(bytes);
                            record.queued_lines = record.queued_lines.saturating_sub(1);
                        }
                    }
                }
                self.persist(out);
                match source {
                    // The sender learns that its message was not kept.
                    QueueSource::Client(sender) => {
                        self.frame_not_handled(now, sender);
                        self.close_and_depart(now, sender, CLOSE_STORAGE_FAILED, out);
                    }
                    // A linked session's message not kept ends that link:
                    // both hosts hear of it.
                    QueueSource::Link(link) => self.end_link(now, link, Ending::Broken, out),
                    QueueSource::Notice => {}
                }
            }
            StorageFailure::Replay { host, bytes, lines, notices, error } => {
                // Nothing was sent or deleted: the messages wait for the next
                // take-over, and the host is told to make one.
                if let Some(record) = self.record.as_mut() {
                    record.queued_bytes += bytes;
                    record.queued_lines += lines;
                    record.queued_notices += notices;
                }
                out.push(Effect::Log(storage_error(&sid, "replay", error)));
                self.persist(out);
                if self.host == Some(host) {
                    // As if it had left: the session waits for the next take-over.
                    self.close_and_depart(now, host, CLOSE_REPLAY_FAILED, out);
                }
            }
            StorageFailure::QueueNotCleared { through, error } => {
                // Delivered, but still stored: never again.
                out.push(Effect::Log(storage_error(&sid, "queue delete", error)));
                if let Some(record) = self.record.as_mut() {
                    record.queue_delivered_through = record.queue_delivered_through.max(through);
                }
                self.persist(out);
            }
        }
    }
}

impl SessionCore {
    /// While the stored state cannot be read, nothing is decided from a
    /// guess: connects are refused `503`, calls too (their senders try
    /// again), and the alarm brings the object back to read again. A frame's
    /// sender is closed `1011` (its message was not kept); for a client, its
    /// host (known from the sockets' attachments) hears `disconnected:`, so
    /// it never believes in a client that is gone.
    pub(super) fn while_unreadable(&mut self, now: f64, error: &str, input: Input<'_>, out: &mut Out<'_>) {
        match input {
            Input::HostConnect { .. } | Input::ClientConnect { .. } => refuse_http(out, 503, STORAGE_UNAVAILABLE),
            Input::Call(_) => respond(out, UNAVAILABLE_STATUS, STORAGE_UNAVAILABLE),
            Input::Frame { socket, .. } => {
                if let Some((info, current)) = self.close_socket(socket, CLOSE_STORAGE_FAILED, out) {
                    if let (Some(id), true) = (info.client_id(), current) {
                        self.tell_host(out, crate::wire::say::disconnected(id));
                    }
                }
            }
            Input::Closed { socket, .. } | Input::Errored { socket } => {
                if let Some((info, current)) = self.forget(socket) {
                    if let (Some(id), true) = (info.client_id(), current) {
                        self.tell_host(out, crate::wire::say::disconnected(id));
                    }
                }
            }
            Input::Answer { .. } | Input::StorageFailed(_) | Input::Alarm | Input::Replayed { .. } => {}
        }
        out.push(Effect::Log(storage_error("", "read", error.to_string())));
        out.push(Effect::SetAlarm(Some(now + UNREADABLE_RETRY_MS)));
    }
}

pub(super) fn storage_error(sid: &str, op: &'static str, error: String) -> Event {
    Event::error("storage_error").with("sid", sid).with("op", op).with("error", error)
}
