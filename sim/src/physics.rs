//! Production physics, as the simulation plays them: where each object lives
//! (its colo) and what a call between two colos costs; what the network and
//! storage do wrong, and how often.

use askutron_core::session::Peer;

use crate::rng::Rng;

/// Which object: the simulation's name for a Durable Object.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ObjectId {
    Session(String),
    Matchmaker,
    Aggregator(askutron_core::aggregator::Role),
}

impl ObjectId {
    pub fn of(peer: &Peer) -> ObjectId {
        use askutron_core::aggregator::Role;
        match peer {
            Peer::Session(sid) => ObjectId::Session(sid.clone()),
            Peer::Matchmaker => ObjectId::Matchmaker,
            Peer::Aggregator(i) => ObjectId::Aggregator(Role::Leaf(*i)),
            Peer::Root => ObjectId::Aggregator(Role::Root),
        }
    }

    pub fn name(&self) -> String {
        match self {
            ObjectId::Session(sid) => sid.clone(),
            ObjectId::Matchmaker => "matchmaker".into(),
            ObjectId::Aggregator(role) => role.name(),
        }
    }
}

/// Calls between objects.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Network {
    /// Round trip between two objects in different colos, drawn per pair
    /// (ms); within one colo it is `same_colo_ms`.
    pub round_trip_ms: (f64, f64),
    pub same_colo_ms: f64,
    /// Colos objects are spread over (1: all together).
    pub colos: usize,
    /// Extra delay per call, drawn each time (ms): it reorders calls.
    pub jitter_ms: f64,
    /// A request is lost (the caller's call fails after `timeout_ms`).
    pub lose_request: f64,
    /// An answer is lost (the call was applied, the caller's call fails).
    pub lose_answer: f64,
    /// A request arrives twice.
    pub duplicate: f64,
    /// A call that gets no answer fails after this long.
    pub timeout_ms: f64,
}

impl Network {
    /// Loopback: every call at once, none lost (what `wrangler dev` shows).
    pub const LOOPBACK: Network = Network {
        round_trip_ms: (0.0, 0.0),
        same_colo_ms: 0.0,
        colos: 1,
        jitter_ms: 0.0,
        lose_request: 0.0,
        lose_answer: 0.0,
        duplicate: 0.0,
        timeout_ms: 5_000.0,
    };

    /// Cloudflare between colos: 50–150 ms round trips, nothing lost.
    pub const EDGE: Network =
        Network { round_trip_ms: (50.0, 150.0), same_colo_ms: 2.0, colos: 8, jitter_ms: 5.0, ..Network::LOOPBACK };

    /// The edge with calls lost, repeated and reordered.
    pub fn faulty() -> Network {
        Network { lose_request: 0.02, lose_answer: 0.02, duplicate: 0.02, jitter_ms: 40.0, ..Network::EDGE }
    }

    pub fn is_faulty(&self) -> bool {
        self.lose_request > 0.0 || self.lose_answer > 0.0 || self.duplicate > 0.0
    }
}

/// What else goes wrong.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Faults {
    /// Each storage operation fails with this chance.
    pub storage: f64,
    /// Each object is reset (memory lost, sockets closed, calls in flight
    /// failed) with this chance per simulated second.
    pub resets_per_second: f64,
    /// An idle object is evicted (memory lost, sockets kept) with this chance
    /// per simulated second.
    pub evictions_per_second: f64,
}

impl Faults {
    pub const NONE: Faults = Faults { storage: 0.0, resets_per_second: 0.0, evictions_per_second: 0.0 };

    pub fn some() -> Faults {
        Faults { storage: 0.01, resets_per_second: 0.002, evictions_per_second: 0.02 }
    }
}

/// Where objects live, and so what calls between them cost.
#[derive(Debug, Clone)]
pub struct Geography {
    colo_of: std::collections::HashMap<ObjectId, usize>,
    pair_rtt: std::collections::HashMap<(usize, usize), f64>,
}

impl Geography {
    pub fn new() -> Self {
        Geography { colo_of: Default::default(), pair_rtt: Default::default() }
    }

    /// One way of a call from `a` to `b` (half the round trip, plus jitter).
    pub fn one_way(&mut self, net: &Network, rng: &mut Rng, a: &ObjectId, b: &ObjectId) -> f64 {
        let ca = self.colo(net, rng, a);
        let cb = self.colo(net, rng, b);
        let rtt = if ca == cb {
            net.same_colo_ms
        } else {
            let key = (ca.min(cb), ca.max(cb));
            *self.pair_rtt.entry(key).or_insert_with(|| rng.between(net.round_trip_ms.0, net.round_trip_ms.1))
        };
        rtt / 2.0 + if net.jitter_ms > 0.0 { rng.between(0.0, net.jitter_ms) } else { 0.0 }
    }

    fn colo(&mut self, net: &Network, rng: &mut Rng, id: &ObjectId) -> usize {
        *self.colo_of.entry(id.clone()).or_insert_with(|| rng.below(net.colos.max(1)))
    }
}

impl Default for Geography {
    fn default() -> Self {
        Geography::new()
    }
}

impl Geography {
    /// Puts an object in a colo before its first call (a benchmark that wants
    /// two sessions a known round trip apart).
    pub fn place(&mut self, id: ObjectId, colo: usize) {
        self.colo_of.insert(id, colo);
    }
}

impl crate::world::Sim {
    /// Puts an object in a colo (see [`Geography::place`]).
    pub fn place(&mut self, id: ObjectId, colo: usize) {
        self.geo.place(id, colo);
    }
}
