//! The heartbeat and acknowledged-resume extension (docs/PROTOCOL.md
//! section 7), as a session runs it for the sockets that opted in: frames
//! numbered both ways, kept until acknowledged, stored at most once a second
//! while something is unacknowledged, and a resume that gets exactly what is
//! missing, or the gap that can no longer be filled.

use std::collections::BTreeSet;

use crate::record::HOST_STREAM;
use crate::stream::{Resume, Stream};
use crate::wire::{ext, say, CLOSE_NO_HEARTBEAT};

use super::effects::Out;
use super::{Effect, SessionCore, Token};

/// What is unacknowledged is stored at most this often.
pub const STREAMS_STORE_MS: f64 = 1_000.0;

impl SessionCore {
    /// The stream a socket belongs to, if it opted in.
    fn stream_of(&self, socket: Token) -> Option<String> {
        self.sockets.get(&socket).and_then(|i| i.stream_key())
    }

    /// Numbers and keeps every frame this event sent to a resume socket
    /// (extension lines, keep-alives and connect lines go uncounted).
    pub(super) fn count_sent(&mut self, now: f64, out: &[Effect<'_>]) {
        if self.streams.is_empty() {
            return;
        }
        for effect in out {
            let (to, text) = match effect {
                Effect::Send { to, text } => (*to, std::borrow::Cow::Borrowed(text.as_ref())),
                Effect::SendFromClient { to, client, message } => {
                    (*to, std::borrow::Cow::Owned(say::from_client(*client, message)))
                }
                _ => continue,
            };
            if let Some(key) = self.stream_of(to) {
                if let Some(stream) = self.streams.get_mut(&key) {
                    stream.sent_frame(&text, now);
                    self.stream_changed(now, key);
                }
            }
        }
    }

    /// Lines the executor sent from the queue to a resume host: numbered
    /// after everything before them.
    pub(super) fn replayed(&mut self, now: f64, host: Token, lines: Vec<String>) {
        let Some(key) = self.stream_of(host) else { return };
        let Some(stream) = self.streams.get_mut(&key) else { return };
        for line in lines {
            stream.sent_frame(&line, now);
        }
        self.stream_changed(now, key);
    }

    fn stream_changed(&mut self, now: f64, key: String) {
        self.streams_dirty.insert(key);
        if self.streams_due.is_none() {
            self.streams_due = Some(now + STREAMS_STORE_MS);
            self.timers_dirty = true;
        }
    }

    /// A frame from a socket: the extension's lines are handled here (true:
    /// nothing more to do); any other frame of a resume socket is counted.
    pub(super) fn extension_frame(&mut self, now: f64, socket: Token, text: &str, out: &mut Out<'_>) -> bool {
        if text == ext::PING {
            // The runtime answers heartbeats itself; should one reach the
            // object (a runtime without auto-response), it answers the same.
            out.push(Effect::SendUncounted { to: socket, text: ext::PONG.to_string() });
            return true;
        }
        let Some(key) = self.stream_of(socket) else { return false };
        let Some(stream) = self.streams.get_mut(&key) else { return false };
        if !ext::is_ext(text) {
            stream.received += 1;
            self.stream_changed(now, key);
            return false;
        }
        if let Some(n) = ext::parse_ack(text) {
            stream.acked(n);
            // What survives a reset (see `Stream::durable`); the socket asks
            // again within a second, after the next store.
            let durable = stream.durable;
            out.push(Effect::SendUncounted { to: socket, text: ext::ack(durable) });
            self.stream_changed(now, key);
        }
        true
    }

    /// The socket's last frame, counted as handled when it came, was not
    /// kept after all (its enqueue failed). Section 7 counts only what the
    /// relay relayed, queued or answered: left counted, the resume after the
    /// sender's close would say `␁resume <m>` past it and the socket would
    /// forget a message nobody got.
    pub(super) fn frame_not_handled(&mut self, now: f64, socket: Token) {
        let Some(key) = self.stream_of(socket) else { return };
        let Some(stream) = self.streams.get_mut(&key) else { return };
        stream.received = stream.received.saturating_sub(1);
        stream.durable = stream.durable.min(stream.received);
        self.stream_changed(now, key);
    }

    /// A socket resumes its stream `key` having every frame up to `have`:
    /// `␁resume <m>`, then what it misses. Returns true when it had a gap (its
    /// view must start afresh). A stream the relay does not know starts anew.
    pub(super) fn resume_stream(&mut self, now: f64, socket: Token, key: &str, have: u64, out: &mut Out<'_>) -> bool {
        let Some(stream) = self.streams.get_mut(key) else {
            self.streams.insert(key.to_string(), Stream::default());
            out.push(Effect::SendUncounted { to: socket, text: ext::resume(0, false) });
            self.stream_came_alive(now, key);
            return false;
        };
        stream.trim(now);
        out.push(Effect::SendUncounted {
            to: socket,
            text: ext::resume(stream.received, stream.unaccounted.is_some()),
        });
        let gap = match stream.resume(have) {
            Resume::Frames(frames) => {
                for kept in frames {
                    out.push(Effect::SendUncounted { to: socket, text: kept.text });
                }
                false
            }
            Resume::Gap { from, to } => {
                out.push(Effect::SendUncounted { to: socket, text: ext::gap(from, to) });
                // What follows is numbered after the gap.
                stream.forget_through(to);
                true
            }
        };
        stream.unaccounted = None;
        self.stream_came_alive(now, key);
        gap
    }

    /// A stream has a live socket again (or for the first time): it is
    /// stored with this event, not within the second, so that storage holds
    /// a reservation before any frame is numbered or handled on it. Stored
    /// settled (its socket had left) or not at all (new), a reset in that
    /// second would bring it back as it was: the next resume would say
    /// `␁resume <m>` without `reset` (frames handled twice) and number again
    /// what had been sent.
    fn stream_came_alive(&mut self, now: f64, key: &str) {
        self.stream_changed(now, key.to_string());
        self.streams_due = Some(now);
        self.timers_dirty = true;
    }

    /// A host that takes over (or makes a session) without `resume=1` starts
    /// the host stream afresh: the old one is forgotten.
    pub(super) fn forget_stream(&mut self, now: f64, key: &str) {
        if self.streams.remove(key).is_some() {
            self.stream_changed(now, key.to_string());
        }
    }

    /// Stores the streams that changed, at most once a second (and at once
    /// for a stream whose socket left: stored settled, it is exact after any
    /// wake-up).
    pub(super) fn store_streams(&mut self, now: f64, out: &mut Out<'_>) {
        let settled: BTreeSet<String> = self
            .streams_dirty
            .iter()
            .filter(|k| !self.sockets.values().any(|i| i.stream_key().as_deref() == Some(k.as_str())))
            .cloned()
            .collect();
        let due = self.streams_due.is_some_and(|at| at <= now);
        if !due && settled.is_empty() {
            return;
        }
        let keys: Vec<String> = if due {
            std::mem::take(&mut self.streams_dirty).into_iter().collect()
        } else {
            settled.into_iter().collect()
        };
        if keys.is_empty() {
            self.streams_due = None;
            return;
        }
        for key in &keys {
            self.streams_dirty.remove(key);
        }
        let sockets = &self.sockets;
        let saves = keys
            .into_iter()
            .map(|key| {
                let live = sockets.values().any(|i| i.stream_key().as_deref() == Some(key.as_str()));
                // Settled only once its socket left: while it is connected,
                // frames may be sent and received before the next store, even
                // when everything so far was acknowledged, and a reset must
                // then report them (a gap, `reset`) rather than number them
                // again.
                let stored = self.streams.get_mut(&key).map(|s| {
                    s.durable = s.received;
                    s.to_store(!live)
                });
                (key, stored)
            })
            .collect();
        out.push(Effect::SaveStreams(saves));
        if self.streams_dirty.is_empty() {
            self.streams_due = None;
        }
        self.timers_dirty = true;
    }

    /// When the streams are next stored.
    pub(super) fn streams_deadline(&self) -> Option<f64> {
        self.streams_due
    }

    /// Streams changed since they were stored: the object is not idle until
    /// its alarm stores them (within a second; the runtime hibernates an
    /// object only after seconds without events).
    pub fn streams_unstored(&self) -> bool {
        self.streams_due.is_some()
    }

    /// After a wake-up: resume sockets whose heartbeat stopped are dead.
    pub(super) fn bury_silent_sockets(&mut self, now: f64, out: &mut Out<'_>) {
        let dead: Vec<Token> = self
            .sockets
            .values()
            .filter(|i| i.resume && now - i.heartbeat.unwrap_or(i.since).max(i.since) > ext::DEAD_AFTER_MS)
            .map(|i| i.token)
            .collect();
        for token in dead {
            self.refuse(now, token, CLOSE_NO_HEARTBEAT, out);
        }
    }

    /// The session ended: its streams go with it.
    pub(super) fn end_streams(&mut self, now: f64) {
        let keys: Vec<String> = self.streams.keys().cloned().collect();
        for key in keys {
            self.forget_stream(now, &key);
        }
        self.streams_due = Some(now);
    }
}

/// The host stream's key.
pub(super) fn host_stream() -> &'static str {
    HOST_STREAM
}
