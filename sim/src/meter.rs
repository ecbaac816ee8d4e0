//! Calls per second into each object, over 1 s windows: what the load model
//! reports (p50, p99 and max of the windows, per kind of object).

use std::collections::HashMap;

use crate::physics::ObjectId;

/// The kinds of object the figures are given for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Matchmaker,
    Root,
    Leaf,
    Session,
}

impl Kind {
    pub fn of(id: &ObjectId) -> Kind {
        use askutron_core::aggregator::Role;
        match id {
            ObjectId::Matchmaker => Kind::Matchmaker,
            ObjectId::Aggregator(Role::Root) => Kind::Root,
            ObjectId::Aggregator(Role::Leaf(_)) => Kind::Leaf,
            ObjectId::Session(_) => Kind::Session,
        }
    }
}

/// Counts calls into objects by 1 s window.
#[derive(Debug, Default, Clone)]
pub struct Meter {
    /// From this time on (earlier calls are a warm-up).
    pub from: f64,
    window: i64,
    current: HashMap<ObjectId, u32>,
    /// Per kind: every object's count in every closed window (objects that
    /// got no call in a window are not counted, except the singletons).
    windows: HashMap<Kind, Vec<u32>>,
    pub total: HashMap<Kind, u64>,
}

impl Meter {
    pub fn new(from: f64) -> Self {
        Meter { from, window: (from / 1000.0).floor() as i64, ..Meter::default() }
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

    pub fn finish(&mut self) {
        self.close_window();
    }
}
