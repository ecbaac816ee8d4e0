//! Storage failures reported by the executor: nobody's data is lost silently.

use crate::journal::Event;
use crate::wire::{CLOSE_REPLAY_FAILED, CLOSE_STORAGE_FAILED};

use super::*;

impl SessionCore {
    pub(super) fn storage_failed(&mut self, now: f64, failure: StorageFailure, out: &mut Out<'_>) {
        let sid = self.sid().to_string();
        match failure {
            StorageFailure::Persist(error) => {
                out.push(Effect::Log(storage_error(&sid, "persist", error)));
            }
            StorageFailure::Alarm(error) => {
                // Not known any more: the next change sets it again.
                self.alarm = None;
                self.timers_dirty = true;
                out.push(Effect::Log(storage_error(&sid, "alarm", error)));
            }
            StorageFailure::Enqueue { sender, bytes, error } => {
                if let Some(record) = self.record.as_mut() {
                    record.queued_bytes = record.queued_bytes.saturating_sub(bytes);
                    record.queued_lines = record.queued_lines.saturating_sub(1);
                }
                out.push(Effect::Log(storage_error(&sid, "enqueue", error)));
                // The sender learns that its message was not kept.
                if let Some(sender) = sender {
                    self.close_and_depart(now, sender, CLOSE_STORAGE_FAILED, out);
                }
                self.persist(out);
            }
            StorageFailure::Replay { host, bytes, lines, error } => {
                // Nothing was deleted: the messages wait for the next take-over,
                // and the host is told to make one.
                if let Some(record) = self.record.as_mut() {
                    record.queued_bytes += bytes;
                    record.queued_lines += lines;
                }
                out.push(Effect::Log(storage_error(&sid, "replay", error)));
                self.persist(out);
                if self.host == Some(host) {
                    // As if it had left: the session waits for the next take-over.
                    self.close_and_depart(now, host, CLOSE_REPLAY_FAILED, out);
                }
            }
        }
    }
}

pub(super) fn storage_error(sid: &str, op: &'static str, error: String) -> Event {
    Event::error("storage_error").with("sid", sid).with("op", op).with("error", error)
}
