//! Calls per second into each object, over 1 s windows: what the load model
//! reports (p50, p99 and max of the windows, per kind of object).

use std::collections::HashMap;

use crate::physics::ObjectId;

/// The kinds of object the figures are given for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Matchmaker,
    Root,
    Branch,
    Leaf,
    Session,
}

impl Kind {
    pub fn of(id: &ObjectId) -> Kind {
        use askutron_core::aggregator::Role;
        match id {
            ObjectId::Matchmaker => Kind::Matchmaker,
            ObjectId::Aggregator(Role::Root) => Kind::Root,
            ObjectId::Aggregator(Role::Branch(_)) => Kind::Branch,
            ObjectId::Aggregator(Role::Leaf(_)) => Kind::Leaf,
            ObjectId::Session(_) => Kind::Session,
        }
    }
}

/// Whose accounting the calls are counted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Design {
    /// The relay as it is: sessions report their figures to leaf
    /// aggregators, the leaves and the Matchmaker pass totals to the root.
    #[default]
    Today,
    /// An approximation of 1.1.0, where every session reported its figures
    /// to the Matchmaker itself: a call from a session to an aggregator
    /// (leaf or root) counts as a call into the Matchmaker, and the calls
    /// between aggregators and from the Matchmaker to the root (which did not
    /// exist) are not counted. Everything else is counted as it is today.
    Before,
}

impl Design {
    /// Where this design would have sent a call, or `None` if it would not
    /// have made it.
    pub fn remap(self, from: &ObjectId, to: &ObjectId) -> Option<ObjectId> {
        match (self, from, to) {
            (Design::Today, _, _) => Some(to.clone()),
            (Design::Before, ObjectId::Session(_), ObjectId::Aggregator(_)) => Some(ObjectId::Matchmaker),
            (Design::Before, _, ObjectId::Aggregator(_)) => None,
            (Design::Before, _, _) => Some(to.clone()),
        }
    }
}

/// Counts calls into objects by 1 s window.
#[derive(Debug, Default, Clone)]
pub struct Meter {
    /// From this time on (earlier calls are a warm-up).
    pub from: f64,
    /// The accounting this meter keeps (`call_between` remaps by it).
    pub design: Design,
    /// Another accounting of the same calls, kept alongside (e.g. `Before`).
    pub also: Option<Box<Meter>>,
    window: i64,
    current: HashMap<ObjectId, u32>,
    /// Per kind: every object's count in every closed window (objects that
    /// got no call in a window are not counted, except the singletons).
    windows: HashMap<Kind, Vec<u32>>,
    pub total: HashMap<Kind, u64>,
    /// Calls made by objects of each kind (in this accounting's terms: the
    /// caller as it is today), from `from` on.
    pub sent: HashMap<Kind, u64>,
}

impl Meter {
    pub fn new(from: f64) -> Self {
        Meter { from, window: (from / 1000.0).floor() as i64, ..Meter::default() }
    }

    /// A meter in another design's accounting.
    pub fn with_design(from: f64, design: Design) -> Self {
        Meter { design, ..Meter::new(from) }
    }

    /// A call from `from` into `to`, in this meter's accounting (and in the
    /// one kept alongside, if any).
    pub fn call_between(&mut self, now: f64, from: &ObjectId, to: &ObjectId) {
        if let Some(also) = self.also.as_mut() {
            also.call_between(now, from, to);
        }
        if let Some(to) = self.design.remap(from, to) {
            if now >= self.from {
                *self.sent.entry(Kind::of(from)).or_default() += 1;
            }
            self.call(now, &to);
        }
    }

    pub fn call(&mut self, now: f64, to: &ObjectId) {
        if now < self.from {
            return;
        }
        let window = (now / 1000.0).floor() as i64;
        while window > self.window {
            self.close_window();
            self.window += 1;
        }
        *self.current.entry(to.clone()).or_default() += 1;
        *self.total.entry(Kind::of(to)).or_default() += 1;
    }

    fn close_window(&mut self) {
        for kind in [Kind::Matchmaker, Kind::Root] {
            if !self.current.keys().any(|id| Kind::of(id) == kind) {
                self.windows.entry(kind).or_default().push(0);
            }
        }
        for (id, n) in self.current.drain() {
            self.windows.entry(Kind::of(&id)).or_default().push(n);
        }
    }

    /// p50, p99 and max calls/s into one object of this kind, over the
    /// windows it got calls in.
    pub fn percentiles(&mut self, kind: Kind) -> (u32, u32, u32) {
        let mut all = self.windows.get(&kind).cloned().unwrap_or_default();
        if all.is_empty() {
            return (0, 0, 0);
        }
        all.sort_unstable();
        let at = |q: f64| all[((all.len() as f64 - 1.0) * q).round() as usize];
        (at(0.5), at(0.99), *all.last().expect("not empty"))
    }

    /// Mean calls/s into one object of this kind over the windows it got
    /// calls in (the singletons: over every window).
    pub fn mean(&self, kind: Kind) -> f64 {
        let all = self.windows.get(&kind).map(Vec::as_slice).unwrap_or_default();
        if all.is_empty() {
            return 0.0;
        }
        all.iter().map(|&n| n as f64).sum::<f64>() / all.len() as f64
    }

    /// Windows closed so far, for kinds with one object (the Matchmaker, the root).
    pub fn windows_of(&self, kind: Kind) -> usize {
        self.windows.get(&kind).map_or(0, Vec::len)
    }

    pub fn finish(&mut self) {
        if let Some(also) = self.also.as_mut() {
            also.finish();
        }
        self.close_window();
    }
}
