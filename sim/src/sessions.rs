//! The Session objects as the simulation runs them: an input in, the core's
//! effects carried out the way `worker/src/executor` carries them out, with
//! storage that fails when the physics say so.

use askutron_core::record::SessionRecord;
use askutron_core::session::{Answer, CallBody, Effect, Input, StorageFailure, EPHEMERAL};

use crate::objects::{Op, QueueRow, SessionObject};
use crate::physics::ObjectId;
use crate::world::{owned, Body, Caller, Event2, Sim};

impl Sim {
    pub(crate) fn session_mut(&mut self, sid: &str) -> &mut SessionObject {
        let version = self.version;
        self.sessions.entry(sid.to_string()).or_insert_with(|| SessionObject::new(sid, version))
    }

    /// Feeds one input to a session object (rebuilding its core first if its
    /// memory is gone) and carries out the effects; returns the HTTP answer.
    pub fn input(&mut self, sid: &str, input: Input<'_>) -> Option<Answer> {
        self.events += 1;
        let now = self.now;
        let settings = self.settings;
        let needs_core = self.session_mut(sid).core.as_ref().is_none_or(|c| c.is_unreadable());
        if needs_core {
            let readable = !self.session_op_fails(sid, Op::Read);
            self.session_mut(sid).restore(settings, readable);
        }
        let effects: Vec<Effect<'static>> = {
            let slot = self.session_mut(sid);
            slot.core.as_mut().expect("restored").handle(now, input).into_iter().map(owned).collect()
        };
        let (mut answer, follow_ups) = self.run_session(sid, effects);
        for input in follow_ups {
            if let Some(a) = self.input(sid, input) {
                answer = Some(a);
            }
        }
        answer
    }

    pub(crate) fn run_session(
        &mut self,
        sid: &str,
        effects: Vec<Effect<'static>>,
    ) -> (Option<Answer>, Vec<Input<'static>>) {
        let mut answer = None;
        let mut failures = Vec::new();
        // Lines a numbered replay sent, handed back to be numbered.
        let mut replayed: Vec<Input<'static>> = Vec::new();
        let now = self.now;
        let events = self.events;
        let keep = self.keep_history;
        // The record is written once, where the batch's last `Persist` stands.
        let last_persist = effects.iter().rposition(|e| matches!(e, Effect::Persist));
        for (i, effect) in effects.into_iter().enumerate() {
            match effect {
                Effect::Persist if Some(i) != last_persist => {}
                Effect::Persist => {
                    if self.session_op_fails(sid, Op::Persist) {
                        failures.push(StorageFailure::Persist("disk on fire".into()));
                        continue;
                    }
                    let slot = self.session_mut(sid);
                    let core = slot.core.as_ref().expect("running");
                    let (record, owed) = core.stored();
                    slot.record = record.map(SessionRecord::to_json);
                    slot.owed = (!owed.is_empty()).then(|| owed.to_json());
                }
                Effect::Accept { socket, info } => {
                    let slot = self.session_mut(sid);
                    let fresh = crate::sockets::SockState { attachment: info, ..Default::default() };
                    let old = slot.sockets.insert(socket, fresh);
                    assert!(old.is_none() || socket == EPHEMERAL, "token {socket} handed out twice");
                }
                Effect::SendUncounted { to, text } => {
                    let slot = self.session_mut(sid);
                    let sock = slot.sockets.get_mut(&to).expect("send to a socket that was never accepted");
                    sock.receive_keeping(text, false, now, events, keep);
                }
                Effect::SaveStreams(streams) => {
                    if self.storage_fails() {
                        self.log.push(askutron_core::journal::Event::error("storage_error").with("op", "streams"));
                        continue;
                    }
                    let slot = self.session_mut(sid);
                    for (key, stream) in streams {
                        match stream {
                            Some(stream) => slot.streams.insert(key, serde_json::to_string(&stream).unwrap()),
                            None => slot.streams.remove(&key),
                        };
                    }
                }
                Effect::Send { to, text } => {
                    let slot = self.session_mut(sid);
                    let sock = slot.sockets.get_mut(&to).expect("send to a socket that was never accepted");
                    sock.receive_keeping(text.into_owned(), false, now, events, keep);
                }
                Effect::SendFromClient { .. } => unreachable!("owned() turns it into a Send"),
                Effect::Close { to, close } => {
                    let slot = self.session_mut(sid);
                    if let Some(sock) = slot.sockets.get_mut(&to) {
                        sock.closed_by_relay.get_or_insert(close);
                    }
                }
                Effect::Attach { socket, info } => {
                    let slot = self.session_mut(sid);
                    slot.sockets.get_mut(&socket).expect("attach to an unknown socket").attachment = Some(info);
                }
                Effect::EraseQueue => self.session_mut(sid).queue.clear(),
                Effect::Enqueue { line, source, bytes } => {
                    if self.session_op_fails(sid, Op::Enqueue) {
                        failures.push(StorageFailure::Enqueue { source, bytes, error: "disk on fire".into() });
                        continue;
                    }
                    let slot = self.session_mut(sid);
                    let counted = source != askutron_core::session::QueueSource::Notice;
                    let seq = slot.next_row;
                    slot.next_row += 1;
                    slot.queue.push(QueueRow { seq, line, counted, bytes });
                }
                Effect::Replay { to, after, bytes, lines, notices, numbered } => {
                    if self.session_op_fails(sid, Op::ReplayRead) {
                        failures.push(StorageFailure::Replay {
                            host: to,
                            bytes,
                            lines,
                            notices,
                            error: "read failed".into(),
                        });
                        continue;
                    }
                    let delete_fails = self.session_op_fails(sid, Op::ReplayDelete);
                    let slot = self.session_mut(sid);
                    let rows: Vec<QueueRow> = slot.queue.iter().filter(|r| r.seq > after).cloned().collect();
                    if let Some(sock) = slot.sockets.get_mut(&to) {
                        for row in &rows {
                            sock.receive_keeping(row.line.clone(), true, now, events, keep);
                        }
                    }
                    if numbered {
                        let lines = rows.iter().map(|r| r.line.clone()).collect();
                        replayed.push(Input::Replayed { host: to, lines });
                    }
                    let through = rows.last().map_or(after, |r| r.seq);
                    if delete_fails {
                        failures.push(StorageFailure::QueueNotCleared { through, error: "delete failed".into() });
                    } else {
                        slot.queue.retain(|r| r.seq > through);
                    }
                }
                Effect::Call { id, to, body } => {
                    let body = match body {
                        CallBody::Session(c) => Body::Session(c),
                        CallBody::Matchmaker(c) => Body::Matchmaker(c),
                        CallBody::Aggregator(c) => Body::Aggregator(c),
                    };
                    let from = ObjectId::Session(sid.to_string());
                    self.send_call(from, Caller::Session(sid.to_string(), id), ObjectId::of(&to), body);
                }
                Effect::SetAlarm(at) => {
                    if self.session_op_fails(sid, Op::Alarm) {
                        failures.push(StorageFailure::Alarm("alarm write failed".into()));
                        continue;
                    }
                    self.set_alarm(ObjectId::Session(sid.to_string()), at);
                }
                Effect::Respond(a) => answer = Some(a),
                Effect::Log(e) => {
                    self.trace.note(now, || format!("  log {}", e.to_json()));
                    self.log.push(e);
                }
            }
        }
        let slot = self.session_mut(sid);
        if let Some(state) = slot.sockets.remove(&EPHEMERAL) {
            let frames: Vec<String> = state.inbox.iter().map(|r| r.text.clone()).collect();
            let close = state.closed_by_relay.expect("an ephemeral socket is closed at once");
            self.refused.push((sid.to_string(), frames, close));
        }
        replayed.extend(failures.into_iter().map(Input::StorageFailed));
        (answer, replayed)
    }

    pub(crate) fn life_mut(&mut self, obj: &ObjectId) -> &mut crate::objects::Life {
        match obj {
            ObjectId::Session(sid) => &mut self.session_mut(sid).life,
            ObjectId::Matchmaker => &mut self.mm.life,
            ObjectId::Aggregator(role) => &mut self.aggregator_mut(*role).life,
        }
    }

    pub(crate) fn set_alarm(&mut self, obj: ObjectId, at: Option<f64>) {
        self.life_mut(&obj).alarm = at;
        if let Some(at) = at {
            self.schedule(at, Event2::Alarm { obj, at });
        }
    }
}
