//! A test bus: several `SessionCore`s and a `MatchmakerCore` in one process,
//! with the effects carried out the way the Durable Objects carry them out
//! (sockets, storage, one alarm per object, ordered calls), on a clock the
//! test moves. `evict` rebuilds a core from what storage and the attachments
//! hold, as the runtime does after hibernation.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use askutron_core::calls::{MatchmakerCall, Outcome, SessionCall};
use askutron_core::journal::Event;
use askutron_core::matchmaker::{self, JobId, MatchmakerCore};
use askutron_core::record::{SessionRecord, SocketInfo};
use askutron_core::session::{
    Answer, CallBody, Effect, Frame, Input, OutgoingCall, Peer, SessionCore, Token, EPHEMERAL,
};
use askutron_core::settings::Settings;
use askutron_core::wire::{ClientParams, Close, HostParams};

/// A socket as a test holds it: its session and token.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sock {
    pub sid: String,
    pub token: Token,
}

#[derive(Debug, Default)]
pub struct SockState {
    pub inbox: VecDeque<String>,
    pub attachment: Option<SocketInfo>,
    /// The close frame the relay sent, if any.
    pub closed_by_relay: Option<Close>,
    /// The peer closed it (the runtime no longer holds it).
    pub closed_by_peer: bool,
    /// Frames the relay sent after it had closed the socket (a bug).
    pub sent_after_close: usize,
}

#[derive(Debug)]
pub struct Slot {
    pub core: SessionCore,
    pub sockets: BTreeMap<Token, SockState>,
    pub stored: Option<String>,
    pub queue: Vec<String>,
    pub alarm: Option<f64>,
    pub outbox: VecDeque<OutgoingCall>,
    /// Make the next enqueue / replay fail, as a storage error would.
    pub fail_enqueue: bool,
    pub fail_replay: bool,
}

/// How the bus picks the next call to deliver.
pub enum Order {
    /// Oldest sender first, round robin: deterministic.
    RoundRobin,
    /// A random ready call (each sender's calls still in order).
    Random(Box<dyn FnMut(usize) -> usize>),
}

pub struct Bus {
    pub now: f64,
    pub settings: Settings,
    pub slots: BTreeMap<String, Slot>,
    pub mm: MatchmakerCore,
    /// Announcements the Matchmaker has under way: (job, to, call).
    mm_calls: VecDeque<(JobId, String, SessionCall)>,
    /// Steam friend lists of the fake Steam API.
    pub steam: HashMap<String, HashSet<String>>,
    pub log: Vec<Event>,
    pub order: Order,
    next_id: u32,
    turn: usize,
    /// The frames of sockets refused at once (4003), by session.
    pub refused: Vec<(String, Vec<String>, Close)>,
}

impl Bus {
    pub fn new(settings: Settings) -> Self {
        Bus {
            now: 1_000_000.0,
            settings,
            slots: BTreeMap::new(),
            mm: MatchmakerCore::restore(settings, true, Vec::new(), 0, Vec::new()),
            mm_calls: VecDeque::new(),
            steam: HashMap::new(),
            log: Vec::new(),
            order: Order::RoundRobin,
            next_id: 0,
            turn: 0,
            refused: Vec::new(),
        }
    }

    pub fn with_max_clients(max: u32) -> Self {
        Bus::new(Settings { max_clients: max, ..Settings::default() })
    }

    fn slot(&mut self, sid: &str) -> &mut Slot {
        let settings = self.settings;
        self.slots.entry(sid.to_string()).or_insert_with(|| Slot {
            core: SessionCore::restore(settings, None, Vec::new()),
            sockets: BTreeMap::new(),
            stored: None,
            queue: Vec::new(),
            alarm: None,
            outbox: VecDeque::new(),
            fail_enqueue: false,
            fail_replay: false,
        })
    }

    /// Feeds one input to a session and carries out its effects; returns the
    /// HTTP answer if there was one.
    pub fn input(&mut self, sid: &str, input: Input<'_>) -> Option<Answer> {
        let now = self.now;
        let effects: Vec<Effect<'static>> = {
            let slot = self.slot(sid);
            slot.core.handle(now, input).into_iter().map(owned).collect()
        };
        self.run(sid, effects)
    }

    fn run(&mut self, sid: &str, effects: Vec<Effect<'static>>) -> Option<Answer> {
        let mut answer = None;
        let mut failures = Vec::new();
        let mut log = Vec::new();
        {
            let slot = self.slot(sid);
            for effect in effects {
                match effect {
                    Effect::Accept { socket, info } => {
                        let fresh = SockState { attachment: info, ..Default::default() };
                        let old = slot.sockets.insert(socket, fresh);
                        assert!(old.is_none() || socket == EPHEMERAL, "token {socket} handed out twice");
                    }
                    Effect::Send { to, text } => {
                        let sock = slot.sockets.get_mut(&to).expect("send to a socket that was never accepted");
                        if sock.closed_by_relay.is_some() && to != EPHEMERAL {
                            sock.sent_after_close += 1;
                        } else {
                            sock.inbox.push_back(text.into_owned());
                        }
                    }
                    Effect::SendFromClient { .. } => unreachable!("owned() turns it into a Send"),
                    Effect::Close { to, close } => {
                        let sock = slot.sockets.get_mut(&to).expect("close of a socket never accepted");
                        sock.closed_by_relay.get_or_insert(close);
                    }
                    Effect::Attach { socket, info } => {
                        slot.sockets.get_mut(&socket).expect("attach to an unknown socket").attachment = Some(info);
                    }
                    Effect::Persist => slot.stored = slot.core.record().map(SessionRecord::to_json),
                    Effect::Erase => {
                        slot.stored = None;
                        slot.queue.clear();
                    }
                    Effect::Enqueue { line, sender, bytes } => {
                        if slot.fail_enqueue {
                            slot.fail_enqueue = false;
                            failures.push(askutron_core::session::StorageFailure::Enqueue {
                                sender,
                                bytes,
                                error: "disk on fire".into(),
                            });
                        } else {
                            slot.queue.push(line);
                        }
                    }
                    Effect::Replay { to, bytes, lines } => {
                        if slot.fail_replay {
                            slot.fail_replay = false;
                            failures.push(askutron_core::session::StorageFailure::Replay {
                                host: to,
                                bytes,
                                lines,
                                error: "disk on fire".into(),
                            });
                        } else {
                            let sock = slot.sockets.get_mut(&to).expect("replay to an unknown socket");
                            sock.inbox.extend(slot.queue.drain(..));
                        }
                    }
                    Effect::Call(call) => {
                        if call.retry_at.is_some() {
                            slot.outbox.push_front(call);
                        } else {
                            slot.outbox.push_back(call);
                        }
                    }
                    Effect::SetAlarm(at) => slot.alarm = at,
                    Effect::Respond(a) => answer = Some(a),
                    Effect::Log(e) => log.push(e),
                }
            }
            if let Some(state) = slot.sockets.get(&EPHEMERAL) {
                let frames: Vec<String> = state.inbox.iter().cloned().collect();
                let close = state.closed_by_relay.expect("an ephemeral socket is closed at once");
                slot.sockets.remove(&EPHEMERAL);
                self.refused.push((sid.to_string(), frames, close));
            }
        }
        self.log.extend(log);
        for failure in failures {
            self.input(sid, Input::StorageFailed(failure));
        }
        answer
    }

    // ---- what tests do ------------------------------------------------------------

    fn fresh_id(&mut self) -> String {
        self.next_id += 1;
        format!("s{}", self.next_id)
    }

    /// A host connect with a query like `id=x&secret=y&keepAlive=k`.
    pub fn host(&mut self, query: &str) -> Result<Sock, (u16, String)> {
        let mut params = HostParams::from_query(pairs(query)).map_err(|e| (400, e.to_string()))?;
        let sid = params.id.clone().unwrap_or_else(|| self.fresh_id());
        params.id = Some(sid.clone());
        self.next_id += 1;
        let fresh_secret = format!("secret-{}", self.next_id);
        let answer = self.input(&sid, Input::HostConnect { params, fresh_secret });
        self.settle();
        match answer {
            Some(Answer::Upgrade { socket }) => Ok(Sock { sid, token: socket }),
            Some(Answer::Text { status, body }) => Err((status, body)),
            None => panic!("a connect must be answered"),
        }
    }

    /// A client connect. A socket refused at once (4003) is `Ok` with token 0.
    pub fn client(&mut self, sid: &str, query: &str) -> Result<Sock, (u16, String)> {
        let params = ClientParams::from_query(pairs(query)).map_err(|e| (400, e.to_string()))?;
        let answer = self.input(sid, Input::ClientConnect { params });
        self.settle();
        match answer {
            Some(Answer::Upgrade { socket }) => Ok(Sock { sid: sid.to_string(), token: socket }),
            Some(Answer::Text { status, body }) => Err((status, body)),
            None => panic!("a connect must be answered"),
        }
    }

    pub fn send(&mut self, sock: &Sock, text: &str) {
        self.frame(sock, Frame::Text(text));
    }

    /// A text frame whose consequences (calls between objects) are left
    /// pending, for tests that interleave them by hand with `step`.
    pub fn send_unsettled(&mut self, sock: &Sock, text: &str) {
        self.input(&sock.sid, Input::Frame { socket: sock.token, frame: Frame::Text(text) });
    }

    pub fn frame(&mut self, sock: &Sock, frame: Frame<'_>) {
        if self.is_open(sock) {
            self.input(&sock.sid, Input::Frame { socket: sock.token, frame });
        }
        self.settle();
    }

    /// The peer closes its socket.
    pub fn close(&mut self, sock: &Sock, code: u16) {
        let Some(state) = self.slots.get_mut(&sock.sid).and_then(|s| s.sockets.get_mut(&sock.token)) else { return };
        if state.closed_by_peer {
            return;
        }
        state.closed_by_peer = true;
        self.input(&sock.sid, Input::Closed { socket: sock.token, code });
        self.settle();
    }

    /// True while neither side has closed the socket.
    pub fn is_open(&self, sock: &Sock) -> bool {
        self.state(sock).is_some_and(|s| !s.closed_by_peer && s.closed_by_relay.is_none())
    }

    pub fn state(&self, sock: &Sock) -> Option<&SockState> {
        self.slots.get(&sock.sid).and_then(|s| s.sockets.get(&sock.token))
    }

    /// Every frame the socket received since the last call.
    pub fn frames(&mut self, sock: &Sock) -> Vec<String> {
        let state = self.slots.get_mut(&sock.sid).and_then(|s| s.sockets.get_mut(&sock.token)).expect("known socket");
        state.inbox.drain(..).collect()
    }

    pub fn closed(&self, sock: &Sock) -> Option<Close> {
        self.state(sock).and_then(|s| s.closed_by_relay)
    }

    /// The runtime drops the object's memory; the next event rebuilds it.
    pub fn evict(&mut self, sid: &str) {
        // Eviction follows idleness; it never happens within the millisecond.
        self.now += 1.0;
        let settings = self.settings;
        let slot = self.slot(sid);
        assert!(slot.outbox.is_empty(), "an object with calls under way is not evicted");
        let record = slot.stored.as_deref().map(|json| SessionRecord::from_json(json).expect("stored record reads"));
        let sockets =
            slot.sockets.values().filter(|s| !s.closed_by_peer).filter_map(|s| s.attachment.clone()).collect();
        slot.core = SessionCore::restore(settings, record, sockets);
    }

    /// Moves the clock, firing every alarm that falls due on the way.
    pub fn advance(&mut self, ms: f64) {
        let end = self.now + ms;
        loop {
            let due = self
                .slots
                .iter()
                .filter_map(|(sid, s)| s.alarm.map(|t| (t, sid.clone())))
                .filter(|(t, _)| *t <= end)
                .min_by(|a, b| a.0.total_cmp(&b.0));
            let Some((at, sid)) = due else { break };
            self.now = self.now.max(at);
            self.slot(&sid).alarm = None;
            self.input(&sid, Input::Alarm);
            self.settle();
        }
        self.now = end;
    }

    // ---- calls between objects ------------------------------------------------------

    /// Delivers calls until none is left.
    pub fn settle(&mut self) {
        let mut guard = 0;
        while self.step() {
            guard += 1;
            assert!(guard < 100_000, "calls never settle");
        }
    }

    /// Delivers one call; false when none was ready.
    pub fn step(&mut self) -> bool {
        let mut ready: Vec<Option<String>> =
            self.slots.iter().filter(|(_, s)| !s.outbox.is_empty()).map(|(sid, _)| Some(sid.clone())).collect();
        if !self.mm_calls.is_empty() {
            ready.push(None);
        }
        if ready.is_empty() {
            return false;
        }
        let pick = match &mut self.order {
            Order::RoundRobin => {
                self.turn = self.turn.wrapping_add(1);
                self.turn % ready.len()
            }
            Order::Random(choose) => choose(ready.len()),
        };
        match ready.swap_remove(pick.min(ready.len() - 1)) {
            Some(sid) => self.deliver_session_call(&sid),
            None => self.deliver_mm_call(),
        }
        true
    }

    fn deliver_session_call(&mut self, from: &str) {
        let mut call = self.slot(from).outbox.pop_front().expect("ready");
        if let Some(at) = call.retry_at.take() {
            self.now = self.now.max(at);
        }
        let outcome = match &call.body {
            CallBody::Session(c) => {
                let Peer::Session(to) = &call.to else { unreachable!("session calls go to sessions") };
                let to = to.clone();
                if self.slots.get(&to).is_none_or(|s| s.stored.is_none() && s.core.record().is_none()) {
                    Outcome::Status(410, "Session not found".into())
                } else {
                    self.input(&to, Input::Call(c.clone())).expect("calls are answered").outcome()
                }
            }
            CallBody::Matchmaker(c) => self.matchmaker(c.clone()),
        };
        self.input(from, Input::Answer { call, outcome });
    }

    fn matchmaker(&mut self, call: MatchmakerCall) -> Outcome {
        let mut effects = self.mm.handle(self.now, matchmaker::Input::Call(call));
        loop {
            let mut answer = None;
            let mut follow = None;
            for effect in effects {
                match effect {
                    matchmaker::Effect::Respond { status, body } => answer = Some(Outcome::Status(status, body)),
                    matchmaker::Effect::FetchFriends { search } => {
                        let id = search.steam_user_id.clone().unwrap_or_default();
                        let result = self.steam.get(&id).cloned().ok_or_else(|| "no such user".to_string());
                        follow = Some(matchmaker::Input::Friends { search, result });
                    }
                    matchmaker::Effect::Tell { job, to, call } => self.mm_calls.push_back((job, to, call)),
                    matchmaker::Effect::Log(e) => self.log.push(e),
                    _ => {}
                }
            }
            match follow {
                Some(input) => effects = self.mm.handle(self.now, input),
                None => return answer.expect("the matchmaker answers every call"),
            }
        }
    }

    fn deliver_mm_call(&mut self) {
        let (job, to, call) = self.mm_calls.pop_front().expect("ready");
        let outcome = if self.slots.get(&to).is_none_or(|s| s.core.record().is_none()) {
            Outcome::Status(410, "Session not found".into())
        } else {
            self.input(&to, Input::Call(call)).expect("calls are answered").outcome()
        };
        let effects = self.mm.handle(self.now, matchmaker::Input::Told { job, outcome });
        for effect in effects {
            match effect {
                matchmaker::Effect::Tell { job, to, call } => self.mm_calls.push_back((job, to, call)),
                matchmaker::Effect::Log(e) => self.log.push(e),
                _ => {}
            }
        }
    }
}

/// Effects outlive the frame they borrowed from in the bus.
fn owned(effect: Effect<'_>) -> Effect<'static> {
    match effect {
        Effect::Send { to, text } => Effect::Send { to, text: text.into_owned().into() },
        Effect::SendFromClient { to, client, message } => {
            Effect::Send { to, text: askutron_core::wire::say::from_client(client, message).into() }
        }
        Effect::Accept { socket, info } => Effect::Accept { socket, info },
        Effect::Close { to, close } => Effect::Close { to, close },
        Effect::Attach { socket, info } => Effect::Attach { socket, info },
        Effect::Persist => Effect::Persist,
        Effect::Erase => Effect::Erase,
        Effect::Enqueue { line, sender, bytes } => Effect::Enqueue { line, sender, bytes },
        Effect::Replay { to, bytes, lines } => Effect::Replay { to, bytes, lines },
        Effect::Call(c) => Effect::Call(c),
        Effect::SetAlarm(t) => Effect::SetAlarm(t),
        Effect::Respond(a) => Effect::Respond(a),
        Effect::Log(e) => Effect::Log(e),
    }
}

fn pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_string(), v.to_string())
        })
        .collect()
}
