//! The simulated relay: every object, the network between them, the clock,
//! and the faults, driven by one seed. Effects are carried out the way the
//! Worker's executors carry them out (`worker/src/executor`), against the
//! physics in `physics`.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};

use askutron_core::aggregator::{self, Role};
use askutron_core::calls::{AggregatorCall, MatchmakerCall, Outcome, SessionCall};
use askutron_core::journal::Event;
use askutron_core::matchmaker::{self, Search};
use askutron_core::session::{CallId, Effect, Input};
use askutron_core::settings::Settings;
use askutron_core::wire::Close;

use crate::meter::Meter;
use crate::objects::{AggregatorObject, MatchmakerObject, SessionObject};
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
    Aggregator(Role),
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
    pub(crate) from: ObjectId,
    pub(crate) incarnation: u64,
    pub(crate) version: u32,
    pub(crate) caller: Caller,
    pub(crate) to: ObjectId,
    pub(crate) body: Body,
    pub(crate) sent_at: f64,
}

#[derive(Debug, Clone)]
pub(crate) enum Event2 {
    Deliver(Box<Flight>),
    Answer {
        to: ObjectId,
        incarnation: u64,
        caller: Caller,
        outcome: Outcome,
    },
    Alarm {
        obj: ObjectId,
        at: f64,
    },
    Steam {
        search: Box<Search>,
        result: Result<HashSet<String>, String>,
    },
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
    pub(crate) fault_rng: Rng,
    pub(crate) geo: Geography,
    pub sessions: BTreeMap<String, SessionObject>,
    pub mm: MatchmakerObject,
    pub aggregators: BTreeMap<Role, AggregatorObject>,
    queue: BinaryHeap<Reverse<Scheduled>>,
    pub(crate) seq: u64,
    pub(crate) network_pending: usize,
    /// Steam friend lists of the fake Steam API.
    pub steam: HashMap<String, HashSet<String>>,
    pub log: Vec<Event>,
    pub trace: Trace,
    /// The frames of sockets refused at once (4003), by session.
    pub refused: Vec<(String, Vec<String>, Close)>,
    /// The relay's code version (a deploy raises it).
    pub version: u32,
    pub meter: Option<Meter>,
    /// Sockets keep every frame they received in `history` (for the
    /// invariants); a load model with many sockets turns it off.
    pub keep_history: bool,
    pub(crate) next_id: u32,
    pub(crate) ticking: bool,
    /// Objects cut off from the network until a time: calls to or from them are lost.
    pub(crate) cuts: HashMap<ObjectId, f64>,
    /// Calls from an object to lose, one by one, whatever they are.
    pub(crate) lose_next: HashMap<ObjectId, usize>,
    /// Every reset so far: when, and which object.
    pub resets: Vec<(f64, ObjectId)>,
    /// Events handled without the clock moving (a loop guard).
    pub(crate) same_time: u64,
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
            keep_history: true,
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

    pub(crate) fn storage_fails(&mut self) -> bool {
        let p = self.faults.storage;
        self.fault_rng.chance(p)
    }

    /// A session's storage operation fails: on purpose (a test's plan), or by chance.
    pub(crate) fn session_op_fails(&mut self, sid: &str, op: crate::objects::Op) -> bool {
        self.session_mut(sid).fail.remove(&op) || self.storage_fails()
    }

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

    pub(crate) fn alarm(&mut self, obj: ObjectId, at: f64) {
        if self.life_mut(&obj).alarm != Some(at) {
            return; // replaced since
        }
        self.life_mut(&obj).alarm = None;
        // Only worth its formatting when the trace is on.
        let why = match &obj {
            ObjectId::Session(sid) if self.trace.is_on() => {
                self.sessions[sid].core.as_ref().map(|c| c.deadlines()).unwrap_or_default()
            }
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
                            c.channels()
                                .values()
                                .map(|ch| {
                                    format!(
                                        "{}:{}:{:?}:{}:{}",
                                        ch.link,
                                        ch.in_flight(),
                                        ch.buffered(),
                                        ch.is_paused(),
                                        ch.is_closing()
                                    )
                                })
                                .collect::<Vec<_>>()
                        });
                        format!(
                            "{sid} core={} busy={:?} channels={channels:?} owed={:?}",
                            s.core.is_some(),
                            s.core.as_ref().map(|c| c.busy()),
                            s.owed
                        )
                    })
                    .collect();
                let jobs = self.mm.core.as_ref().map(|c| format!("{:?}", c.jobs())).unwrap_or_default();
                panic!("the relay never settles: busy {busy:?}, jobs {jobs}\n{}", self.trace.tail());
            }
        }
    }

    /// The earliest alarm of an object with work under way.
    pub(crate) fn busy_alarm(&self) -> Option<f64> {
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
}

/// Faults are drawn this often.
pub(crate) const TICK_MS: f64 = 100.0;

pub(crate) fn lost() -> Outcome {
    Outcome::Failed("network connection lost".into())
}

pub(crate) fn short(body: &Body) -> String {
    let text = match body {
        Body::Session(c) => serde_json::to_string(c),
        Body::Matchmaker(c) => serde_json::to_string(c),
        Body::Aggregator(c) => serde_json::to_string(c),
    }
    .unwrap_or_default();
    text.chars().take(160).collect()
}

pub(crate) fn clip(outcome: &Outcome) -> String {
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
        Effect::Replay { to, after, bytes, lines, notices, numbered } => {
            Effect::Replay { to, after, bytes, lines, notices, numbered }
        }
        Effect::SendUncounted { to, text } => Effect::SendUncounted { to, text },
        Effect::SaveStreams(s) => Effect::SaveStreams(s),
        Effect::Call { id, to, body } => Effect::Call { id, to, body },
        Effect::SetAlarm(t) => Effect::SetAlarm(t),
        Effect::Respond(a) => Effect::Respond(a),
        Effect::Log(e) => Effect::Log(e),
    }
}
