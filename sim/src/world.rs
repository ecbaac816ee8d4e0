//! The simulated relay: every object, the network between them, the clock,
//! and the faults, driven by one seed. Effects are carried out the way the
//! Worker's executors carry them out (`worker/src/executor`), against the
//! physics in `physics`.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};

use askutron_core::aggregator::{self, Role};
use askutron_core::calls::{
    AggregatorCall, MatchmakerCall, Outcome, SessionCall, CALLS_VERSION, GONE_STATUS, UPGRADING_STATUS,
};
use askutron_core::journal::Event;
use askutron_core::matchmaker::{self, Search};
use askutron_core::record::SessionRecord;
use askutron_core::session::{Answer, CallBody, CallId, Effect, Input, StorageFailure, EPHEMERAL};
use askutron_core::settings::Settings;
use askutron_core::wire::Close;

use crate::meter::Meter;
use crate::objects::{AggregatorObject, MatchmakerObject, Op, QueueRow, SessionObject};
use crate::physics::{Faults, Geography, Network, ObjectId};
use crate::rng::Rng;
use crate::trace::Trace;

/// The simulated clock starts here (epoch ms), so times look like real ones.
pub const EPOCH: f64 = 1_000_000.0;

/// Who made a call, to hand it the answer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Caller {
    Session(String, CallId),
    Matchmaker(matchmaker::CallId),
    MatchmakerToRoot,
    Leaf(Role),
    /// A repeated delivery: its answer goes nowhere.
    Nobody,
}

#[derive(Debug, Clone)]
pub(crate) enum Body {
    Session(SessionCall),
    Matchmaker(MatchmakerCall),
    Aggregator(AggregatorCall),
}

#[derive(Debug, Clone)]
pub(crate) struct Flight {
    from: ObjectId,
    incarnation: u64,
    version: u32,
    caller: Caller,
    to: ObjectId,
    body: Body,
    sent_at: f64,
}

#[derive(Debug, Clone)]
pub(crate) enum Event2 {
    Deliver(Box<Flight>),
    Answer { to: ObjectId, incarnation: u64, caller: Caller, outcome: Outcome },
    Alarm { obj: ObjectId, at: f64 },
    Steam { search: Box<Search>, result: Result<HashSet<String>, String> },
    /// Faults strike now and then.
    Tick,
    /// A deploy reaches one object.
    Upgrade(ObjectId),
}

impl Event2 {
    fn is_network(&self) -> bool {
        matches!(self, Event2::Deliver(_) | Event2::Answer { .. } | Event2::Steam { .. })
    }
}

struct Scheduled {
    at: f64,
    seq: u64,
    event: Event2,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        self.seq == other.seq
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.at.total_cmp(&other.at).then(self.seq.cmp(&other.seq))
    }
}

/// How a simulation is set up.
#[derive(Debug, Clone)]
pub struct Config {
    pub seed: u64,
    pub settings: Settings,
    pub network: Network,
    pub faults: Faults,
    /// Steps of the trace kept for a failure's report.
    pub trace: usize,
}

impl Config {
    pub fn new(settings: Settings) -> Self {
        Config { seed: 1, settings, network: Network::LOOPBACK, faults: Faults::NONE, trace: 0 }
    }
}

/// The simulated relay.
pub struct Sim {
    pub now: f64,
    pub settings: Settings,
    pub network: Network,
    pub faults: Faults,
    pub(crate) rng: Rng,
    fault_rng: Rng,
    geo: Geography,
    pub sessions: BTreeMap<String, SessionObject>,
    pub mm: MatchmakerObject,
    pub aggregators: BTreeMap<Role, AggregatorObject>,
    queue: BinaryHeap<Reverse<Scheduled>>,
    seq: u64,
    network_pending: usize,
    /// Steam friend lists of the fake Steam API.
    pub steam: HashMap<String, HashSet<String>>,
    pub log: Vec<Event>,
    pub trace: Trace,
    /// The frames of sockets refused at once (4003), by session.
    pub refused: Vec<(String, Vec<String>, Close)>,
    /// The relay's code version (a deploy raises it).
    pub version: u32,
    pub meter: Option<Meter>,
    pub(crate) next_id: u32,
    ticking: bool,
    /// Objects cut off from the network until a time: calls to or from them are lost.
    cuts: HashMap<ObjectId, f64>,
    /// Calls from an object to lose, one by one, whatever they are.
    lose_next: HashMap<ObjectId, usize>,
    /// Every reset so far: when, and which object.
    pub resets: Vec<(f64, ObjectId)>,
    /// Events handled without the clock moving (a loop guard).
    same_time: u64,
    /// Events handled so far (inputs and steps): a logical clock.
    pub events: u64,
}

impl Sim {
    pub fn new(config: Config) -> Self {
        let mut rng = Rng::new(config.seed);
        let fault_rng = rng.fork();
        let mut sim = Sim {
            now: EPOCH,
            settings: config.settings,
            network: config.network,
            faults: config.faults,
            rng,
            fault_rng,
            geo: Geography::new(),
            sessions: BTreeMap::new(),
            mm: MatchmakerObject::new(),
            aggregators: BTreeMap::new(),
            queue: BinaryHeap::new(),
            seq: 0,
            network_pending: 0,
            steam: HashMap::new(),
            log: Vec::new(),
            trace: Trace::new(config.trace),
            refused: Vec::new(),
            version: 1,
            meter: None,
            next_id: 0,
            ticking: false,
            cuts: HashMap::new(),
            lose_next: HashMap::new(),
            resets: Vec::new(),
            same_time: 0,
            events: 0,
        };
        sim.mm.life.version = sim.version;
        sim.set_faults(config.faults);
        sim
    }

    /// Changes the faults from now on (e.g. none, to check the relay heals).
    pub fn set_faults(&mut self, faults: Faults) {
        self.faults = faults;
        let any = faults.resets_per_second > 0.0 || faults.evictions_per_second > 0.0;
        if any && !self.ticking {
            self.ticking = true;
            self.schedule(self.now + TICK_MS, Event2::Tick);
        }
    }

    pub(crate) fn schedule(&mut self, at: f64, event: Event2) {
        if event.is_network() {
            self.network_pending += 1;
        }
        self.seq += 1;
        self.queue.push(Reverse(Scheduled { at, seq: self.seq, event }));
    }

    fn storage_fails(&mut self) -> bool {
        let p = self.faults.storage;
        self.fault_rng.chance(p)
    }

    /// A session's storage operation fails: on purpose (a test's plan), or by chance.
    fn session_op_fails(&mut self, sid: &str, op: crate::objects::Op) -> bool {
        self.session_mut(sid).fail.remove(&op) || self.storage_fails()
    }

    // ---- sessions -----------------------------------------------------------------

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
        let (mut answer, failures) = self.run_session(sid, effects);
        for failure in failures {
            if let Some(a) = self.input(sid, Input::StorageFailed(failure)) {
                answer = Some(a);
            }
        }
        answer
    }

    fn run_session(&mut self, sid: &str, effects: Vec<Effect<'static>>) -> (Option<Answer>, Vec<StorageFailure>) {
        let mut answer = None;
        let mut failures = Vec::new();
        let now = self.now;
        let events = self.events;
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
                Effect::Send { to, text } => {
                    let slot = self.session_mut(sid);
                    let sock = slot.sockets.get_mut(&to).expect("send to a socket that was never accepted");
                    sock.receive(text.into_owned(), false, now, events);
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
                Effect::Replay { to, after, bytes, lines, notices } => {
                    if self.session_op_fails(sid, Op::ReplayRead) {
                        failures.push(StorageFailure::Replay { host: to, bytes, lines, notices, error: "read failed".into() });
                        continue;
                    }
                    let delete_fails = self.session_op_fails(sid, Op::ReplayDelete);
                    let slot = self.session_mut(sid);
                    let rows: Vec<QueueRow> = slot.queue.iter().filter(|r| r.seq > after).cloned().collect();
                    if let Some(sock) = slot.sockets.get_mut(&to) {
                        for row in &rows {
                            sock.receive(row.line.clone(), true, now, events);
                        }
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
        (answer, failures)
    }

    fn life_mut(&mut self, obj: &ObjectId) -> &mut crate::objects::Life {
        match obj {
            ObjectId::Session(sid) => &mut self.session_mut(sid).life,
            ObjectId::Matchmaker => &mut self.mm.life,
            ObjectId::Aggregator(role) => &mut self.aggregator_mut(*role).life,
        }
    }

    fn set_alarm(&mut self, obj: ObjectId, at: Option<f64>) {
        self.life_mut(&obj).alarm = at;
        if let Some(at) = at {
            self.schedule(at, Event2::Alarm { obj, at });
        }
    }

    // ---- the Matchmaker and the aggregators -----------------------------------------

    fn mm_input(&mut self, input: matchmaker::Input) -> Option<(u16, String)> {
        if self.mm.core.is_none() {
            let settings = self.settings;
            self.mm.restore(settings, true);
        }
        let now = self.now;
        let effects = self.mm.core.as_mut().expect("restored").handle(now, input);
        let mut answer = None;
        let mut write_failed = false;
        for effect in effects {
            match effect {
                matchmaker::Effect::Respond { status, body } => answer = Some((status, body)),
                matchmaker::Effect::FetchFriends { search } => {
                    let id = search.steam_user_id.clone().unwrap_or_default();
                    let result = self.steam.get(&id).cloned().ok_or_else(|| "no such user".to_string());
                    let at = self.now + self.network.round_trip_ms.1.max(1.0);
                    self.schedule(at, Event2::Steam { search: Box::new(search), result });
                }
                matchmaker::Effect::Call { id, to, steps } => {
                    let body = Body::Session(SessionCall::Steps { v: CALLS_VERSION, steps });
                    self.send_call(ObjectId::Matchmaker, Caller::Matchmaker(id), ObjectId::Session(to), body);
                }
                matchmaker::Effect::CallRoot(call) => {
                    let to = ObjectId::Aggregator(Role::Root);
                    self.send_call(ObjectId::Matchmaker, Caller::MatchmakerToRoot, to, Body::Aggregator(call));
                }
                matchmaker::Effect::SaveSearch(search) => {
                    if self.mm_storage_fails() {
                        write_failed = true;
                    } else {
                        self.mm.searches.insert(search.sid.clone(), serde_json::to_string(&search).unwrap());
                    }
                }
                matchmaker::Effect::DeleteSearch(sid) => {
                    if self.mm_storage_fails() {
                        write_failed = true;
                    } else {
                        self.mm.searches.remove(&sid);
                    }
                }
                matchmaker::Effect::SaveJob(job) => {
                    if self.mm_storage_fails() {
                        write_failed = true;
                    } else {
                        self.mm.jobs.insert(job.link, serde_json::to_string(&job).unwrap());
                    }
                }
                matchmaker::Effect::DeleteJob(link) => {
                    if self.mm_storage_fails() {
                        write_failed = true;
                    } else {
                        self.mm.jobs.remove(&link);
                    }
                }
                matchmaker::Effect::SaveMeta { next_seq, next_link } => {
                    self.mm.next_seq = next_seq;
                    self.mm.next_link = next_link;
                }
                matchmaker::Effect::SetAlarm(at) => self.set_alarm(ObjectId::Matchmaker, at),
                matchmaker::Effect::Log(e) => self.log.push(e),
            }
        }
        // A write that failed: the caller is told to try again (as the Worker does).
        if write_failed && answer.is_some() {
            answer = Some((503, "storage unavailable".into()));
        }
        answer
    }

    /// A failed write of the Matchmaker's is logged (as the Worker does).
    fn mm_storage_fails(&mut self) -> bool {
        let fails = self.storage_fails();
        if fails {
            self.log.push(Event::error("storage_error").with("op", "matchmaker"));
        }
        fails
    }

    pub(crate) fn aggregator_mut(&mut self, role: Role) -> &mut AggregatorObject {
        let version = self.version;
        self.aggregators.entry(role).or_insert_with(|| {
            let mut agg = AggregatorObject::new(role);
            agg.life.version = version;
            agg
        })
    }

    fn aggregator_input(&mut self, role: Role, input: aggregator::Input) -> Option<(u16, String)> {
        if self.aggregator_mut(role).core.is_none() {
            self.aggregator_mut(role).restore();
        }
        let now = self.now;
        let effects = self.aggregator_mut(role).core.as_mut().expect("restored").handle(now, input);
        let mut answer = None;
        let mut write_failed = false;
        for effect in effects {
            match effect {
                aggregator::Effect::Respond { status, body } => answer = Some((status, body)),
                aggregator::Effect::Save { key, entry } => {
                    if self.storage_fails() {
                        self.log.push(Event::error("storage_error").with("op", "aggregator"));
                        write_failed = true;
                        continue;
                    }
                    let agg = self.aggregator_mut(role);
                    match entry {
                        Some(entry) => agg.entries.insert(key, entry),
                        None => agg.entries.remove(&key),
                    };
                }
                aggregator::Effect::CallRoot(call) => {
                    let from = ObjectId::Aggregator(role);
                    self.send_call(from, Caller::Leaf(role), ObjectId::Aggregator(Role::Root), Body::Aggregator(call));
                }
                aggregator::Effect::SetAlarm(at) => self.set_alarm(ObjectId::Aggregator(role), at),
                aggregator::Effect::Log(e) => self.log.push(e),
            }
        }
        if write_failed && answer.is_some() {
            answer = Some((503, "storage unavailable".into()));
        }
        answer
    }

    // ---- the network ------------------------------------------------------------------

    fn send_call(&mut self, from: ObjectId, caller: Caller, to: ObjectId, body: Body) {
        let (incarnation, version) = {
            let life = self.life_mut(&from);
            (life.incarnation, life.version)
        };
        let flight = Flight { from: from.clone(), incarnation, version, caller, to: to.clone(), body, sent_at: self.now };
        self.trace.note(self.now, || format!("call {} -> {}: {}", from.name(), to.name(), short(&flight.body)));
        let net = self.network;
        let cut = |obj: &ObjectId| self.cuts.get(obj).is_some_and(|&until| until > self.now);
        let planned = match self.lose_next.get_mut(&from) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        };
        if planned || cut(&from) || cut(&to) || self.rng.chance(net.lose_request) {
            self.trace.note(self.now, || "  (request lost)".into());
            let at = self.now + net.timeout_ms;
            let Flight { from, incarnation, caller, .. } = flight;
            return self.schedule(at, Event2::Answer { to: from, incarnation, caller, outcome: lost() });
        }
        let there = self.geo.one_way(&net, &mut self.rng, &from, &to);
        if self.rng.chance(net.duplicate) {
            let again = self.geo.one_way(&net, &mut self.rng, &from, &to) + self.rng.between(0.0, 50.0);
            let twin = Flight { caller: Caller::Nobody, ..flight.clone() };
            self.schedule(self.now + again, Event2::Deliver(Box::new(twin)));
        }
        self.schedule(self.now + there, Event2::Deliver(Box::new(flight)));
    }

    fn deliver(&mut self, flight: Flight) {
        let Flight { from, incarnation, version, caller, to, body, sent_at } = flight;
        if let Some(meter) = self.meter.as_mut() {
            meter.call(self.now, &to);
        }
        let reset_since = self.life_mut(&to).reset_at > sent_at;
        let outcome = if reset_since {
            Outcome::Failed("Durable Object reset because its code was updated".into())
        } else if version > self.life_mut(&to).version {
            Outcome::Status(UPGRADING_STATUS, "older version".into())
        } else {
            match (&to, body) {
                (ObjectId::Session(sid), Body::Session(call)) => {
                    if self.sessions.get(sid).is_none_or(|s| s.record.is_none() && s.owed.is_none() && s.core.is_none()) {
                        Outcome::Status(GONE_STATUS, "Session not found".into())
                    } else {
                        let answer = self.input(sid, Input::Call(call)).expect("calls are answered");
                        answer.outcome()
                    }
                }
                (ObjectId::Matchmaker, Body::Matchmaker(call)) => {
                    let (status, body) = self.mm_input(matchmaker::Input::Call(call)).expect("answered");
                    Outcome::Status(status, body)
                }
                (ObjectId::Aggregator(role), Body::Aggregator(call)) => {
                    let (status, body) = self.aggregator_input(*role, aggregator::Input::Call(call)).expect("answered");
                    Outcome::Status(status, body)
                }
                (to, body) => panic!("{} cannot take {}", to.name(), short(&body)),
            }
        };
        if caller == Caller::Nobody {
            return;
        }
        let net = self.network;
        let at = if self.rng.chance(net.lose_answer) {
            self.trace.note(self.now, || format!("  answer from {} lost", to.name()));
            return self.schedule(
                (sent_at + net.timeout_ms).max(self.now),
                Event2::Answer { to: from, incarnation, caller, outcome: lost() },
            );
        } else {
            self.now + self.geo.one_way(&net, &mut self.rng, &to, &from)
        };
        self.schedule(at, Event2::Answer { to: from, incarnation, caller, outcome });
    }

    fn answer(&mut self, to: ObjectId, incarnation: u64, caller: Caller, outcome: Outcome) {
        if self.life_mut(&to).incarnation != incarnation {
            // Its memory is gone: nobody waits for this answer any more.
            return;
        }
        self.trace.note(self.now, || format!("answer to {}: {:?}", to.name(), clip(&outcome)));
        match caller {
            Caller::Session(sid, id) => {
                // An answer only reaches the incarnation that made the call.
                if self.sessions.get(&sid).is_some_and(|s| s.core.is_some()) {
                    self.input(&sid, Input::Answer { id, outcome });
                }
            }
            Caller::Matchmaker(id) => {
                if self.mm.core.is_some() {
                    self.mm_input(matchmaker::Input::Answer { id, outcome });
                }
            }
            Caller::MatchmakerToRoot => {
                if self.mm.core.is_some() {
                    self.mm_input(matchmaker::Input::RootAnswer(outcome));
                }
            }
            Caller::Leaf(role) => {
                if self.aggregators.get(&role).is_some_and(|a| a.core.is_some()) {
                    self.aggregator_input(role, aggregator::Input::Answer(outcome));
                }
            }
            Caller::Nobody => {}
        }
    }

    // ---- time -------------------------------------------------------------------------

    /// Handles the next event; false when none is left.
    pub fn step(&mut self) -> bool {
        let Some(Reverse(next)) = self.queue.pop() else { return false };
        self.events += 1;
        if next.event.is_network() {
            self.network_pending -= 1;
        }
        if next.at > self.now {
            self.same_time = 0;
        } else {
            self.same_time += 1;
            assert!(self.same_time < 200_000, "an event loop that never lets time pass:\n{}", self.trace.tail());
        }
        self.now = self.now.max(next.at);
        match next.event {
            Event2::Deliver(flight) => self.deliver(*flight),
            Event2::Answer { to, incarnation, caller, outcome } => self.answer(to, incarnation, caller, outcome),
            Event2::Alarm { obj, at } => self.alarm(obj, at),
            Event2::Steam { search, result } => {
                self.mm_input(matchmaker::Input::Friends { search: *search, result });
            }
            Event2::Tick => self.tick(),
            Event2::Upgrade(obj) => self.reset(&obj),
        }
        true
    }

    fn alarm(&mut self, obj: ObjectId, at: f64) {
        if self.life_mut(&obj).alarm != Some(at) {
            return; // replaced since
        }
        self.life_mut(&obj).alarm = None;
        let why = match &obj {
            ObjectId::Session(sid) => self.sessions[sid].core.as_ref().map(|c| c.deadlines()).unwrap_or_default(),
            _ => String::new(),
        };
        self.trace.note(self.now, || format!("alarm {} {why}", obj.name()));
        match obj {
            ObjectId::Session(sid) => {
                self.input(&sid, Input::Alarm);
            }
            ObjectId::Matchmaker => {
                self.mm_input(matchmaker::Input::Alarm);
            }
            ObjectId::Aggregator(role) => {
                self.aggregator_input(role, aggregator::Input::Alarm);
            }
        }
    }

    /// Runs until no call is under way and no object has work that finishes
    /// by itself (retries, link messages, obligations): what the relay does
    /// on its own after a user's action. Time moves as the calls take it.
    pub fn settle(&mut self) {
        let mut guard = 0u64;
        loop {
            let busy_alarm = self.network_pending == 0 && self.busy_alarm().is_some();
            if self.network_pending == 0 && !busy_alarm {
                break;
            }
            if !self.step() {
                break;
            }
            guard += 1;
            if guard >= 5_000_000 {
                let busy: Vec<String> = self
                    .sessions
                    .iter()
                    .filter(|(_, s)| s.busy())
                    .map(|(sid, s)| {
                        let channels = s.core.as_ref().map(|c| {
                            c.channels().values().map(|ch| format!("{}:{}:{:?}:{}:{}", ch.link, ch.in_flight(), ch.buffered(), ch.is_paused(), ch.is_closing())).collect::<Vec<_>>()
                        });
                        format!("{sid} core={} busy={:?} channels={channels:?} owed={:?}", s.core.is_some(), s.core.as_ref().map(|c| c.busy()), s.owed)
                    })
                    .collect();
                let jobs = self.mm.core.as_ref().map(|c| format!("{:?}", c.jobs())).unwrap_or_default();
                panic!("the relay never settles: busy {busy:?}, jobs {jobs}\n{}", self.trace.tail());
            }
        }
    }

    /// The earliest alarm of an object with work under way.
    fn busy_alarm(&self) -> Option<f64> {
        let sessions = self.sessions.values().filter(|s| s.busy()).filter_map(|s| s.life.alarm);
        let mm = self.mm.life.alarm.filter(|_| self.mm.busy(self.now));
        sessions.chain(mm).reduce(f64::min)
    }

    /// Moves the clock, handling every event that falls due on the way.
    pub fn advance(&mut self, ms: f64) {
        let end = self.now + ms;
        while self.queue.peek().is_some_and(|Reverse(s)| s.at <= end) {
            self.step();
        }
        self.now = end;
    }

    /// Calls under way.
    pub fn calls_in_flight(&self) -> usize {
        self.network_pending
    }

    // ---- faults -----------------------------------------------------------------------

    fn tick(&mut self) {
        let faults = self.faults;
        let seconds = TICK_MS / 1000.0;
        let objects = self.objects();
        if faults.resets_per_second > 0.0 {
            for obj in &objects {
                if self.fault_rng.chance(faults.resets_per_second * seconds) {
                    self.reset(obj);
                }
            }
        }
        if faults.evictions_per_second > 0.0 {
            let sids: Vec<String> = self.sessions.keys().cloned().collect();
            for sid in sids {
                if self.fault_rng.chance(faults.evictions_per_second * seconds) {
                    self.evict(&sid);
                }
            }
        }
        if faults.resets_per_second > 0.0 || faults.evictions_per_second > 0.0 {
            self.schedule(self.now + TICK_MS, Event2::Tick);
        } else {
            self.ticking = false;
        }
    }

    fn objects(&self) -> Vec<ObjectId> {
        let mut all: Vec<ObjectId> = self.sessions.keys().map(|s| ObjectId::Session(s.clone())).collect();
        all.push(ObjectId::Matchmaker);
        all.extend(self.aggregators.keys().map(|r| ObjectId::Aggregator(*r)));
        all
    }

    /// The runtime drops an idle object's memory (hibernation): the next
    /// event rebuilds it from storage and the sockets' attachments. An
    /// object with calls under way is not idle.
    pub fn evict(&mut self, sid: &str) {
        let Some(slot) = self.sessions.get_mut(sid) else { return };
        if slot.core.as_ref().is_some_and(|c| c.calls_in_flight() > 0) {
            return;
        }
        self.now += 1.0;
        slot.core = None;
        self.trace.note(self.now, || format!("evict {sid}"));
    }

    /// A reset (a deploy, a crash): the object's memory is lost, calls in
    /// flight to or from it fail, its sockets are closed (1012); storage and
    /// the alarm stay. It comes back on its next event, running the relay's
    /// current version.
    pub fn reset(&mut self, obj: &ObjectId) {
        let now = self.now;
        let version = self.version;
        self.trace.note(now, || format!("reset {}", obj.name()));
        self.resets.push((now, obj.clone()));
        let life = self.life_mut(obj);
        life.incarnation += 1;
        life.reset_at = now;
        life.version = version;
        match obj {
            ObjectId::Session(sid) => {
                let slot = self.session_mut(sid);
                slot.core = None;
                for sock in slot.sockets.values_mut().filter(|s| s.is_open()) {
                    sock.closed_by_reset = true;
                }
            }
            ObjectId::Matchmaker => self.mm.core = None,
            ObjectId::Aggregator(role) => self.aggregator_mut(*role).core = None,
        }
        // It runs again at once: whatever its storage holds resumes.
        if let Some(at) = self.life_mut(obj).alarm {
            self.schedule(at.max(now), Event2::Alarm { obj: obj.clone(), at });
        }
    }

    /// A deploy: the relay's version goes up, and over `window_ms` every
    /// object is reset onto it. Meanwhile old objects refuse calls from new
    /// ones (they cannot read them) and the callers try again.
    pub fn deploy(&mut self, window_ms: f64) {
        self.version += 1;
        for obj in self.objects() {
            let at = self.now + self.fault_rng.between(0.0, window_ms);
            self.schedule(at, Event2::Upgrade(obj));
        }
    }

    /// Cuts an object off the network for `ms`: every call to or from it is
    /// lost (its callers learn when their calls time out).
    pub fn cut(&mut self, obj: ObjectId, ms: f64) {
        self.cuts.insert(obj, self.now + ms);
    }

    /// Loses the next `n` calls `obj` makes, whatever they are.
    pub fn lose_next_calls_from(&mut self, obj: ObjectId, n: usize) {
        self.lose_next.insert(obj, n);
    }

    /// `/stats` as the router gets it: from the root aggregator.
    pub fn stats(&mut self) -> String {
        let (_, body) = self.aggregator_input(Role::Root, aggregator::Input::Call(AggregatorCall::Stats)).expect("answered");
        body
    }

    /// A session's live record, from memory or storage.
    pub fn record(&self, sid: &str) -> Option<SessionRecord> {
        self.sessions.get(sid).and_then(SessionObject::session)
    }
}

/// Faults are drawn this often.
const TICK_MS: f64 = 100.0;

fn lost() -> Outcome {
    Outcome::Failed("network connection lost".into())
}

fn short(body: &Body) -> String {
    let text = match body {
        Body::Session(c) => serde_json::to_string(c),
        Body::Matchmaker(c) => serde_json::to_string(c),
        Body::Aggregator(c) => serde_json::to_string(c),
    }
    .unwrap_or_default();
    text.chars().take(160).collect()
}

fn clip(outcome: &Outcome) -> String {
    format!("{outcome:?}").chars().take(120).collect()
}

/// Effects outlive the frame they borrowed from in the simulation.
pub(crate) fn owned(effect: Effect<'_>) -> Effect<'static> {
    match effect {
        Effect::Send { to, text } => Effect::Send { to, text: text.into_owned().into() },
        Effect::SendFromClient { to, client, message } => {
            Effect::Send { to, text: askutron_core::wire::say::from_client(client, message).into() }
        }
        Effect::Accept { socket, info } => Effect::Accept { socket, info },
        Effect::Close { to, close } => Effect::Close { to, close },
        Effect::Attach { socket, info } => Effect::Attach { socket, info },
        Effect::Persist => Effect::Persist,
        Effect::EraseQueue => Effect::EraseQueue,
        Effect::Enqueue { line, source, bytes } => Effect::Enqueue { line, source, bytes },
        Effect::Replay { to, after, bytes, lines, notices } => Effect::Replay { to, after, bytes, lines, notices },
        Effect::Call { id, to, body } => Effect::Call { id, to, body },
        Effect::SetAlarm(t) => Effect::SetAlarm(t),
        Effect::Respond(a) => Effect::Respond(a),
        Effect::Log(e) => Effect::Log(e),
    }
}
