//! What goes wrong on its own schedule: evictions, resets, deploys, cuts.

use askutron_core::aggregator::{self, Role};
use askutron_core::calls::AggregatorCall;
use askutron_core::record::SessionRecord;

use crate::objects::SessionObject;
use crate::physics::ObjectId;
use crate::world::{Event2, Sim, TICK_MS};

impl Sim {
    pub(crate) fn tick(&mut self) {
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

    pub(crate) fn objects(&self) -> Vec<ObjectId> {
        let mut all: Vec<ObjectId> = self.sessions.keys().map(|s| ObjectId::Session(s.clone())).collect();
        all.push(ObjectId::Matchmaker);
        all.extend(self.aggregators.keys().map(|r| ObjectId::Aggregator(*r)));
        all
    }

    /// The runtime drops an idle object's memory (hibernation): the next
    /// event rebuilds it from storage and the sockets' attachments. An
    /// object with calls under way is not idle, nor one whose resume streams
    /// await their store (its alarm is due within a second; the runtime
    /// hibernates only after seconds without an event).
    pub fn evict(&mut self, sid: &str) {
        let Some(slot) = self.sessions.get_mut(sid) else { return };
        if slot.core.as_ref().is_some_and(|c| c.calls_in_flight() > 0 || c.streams_unstored()) {
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
        let (_, body) =
            self.aggregator_input(Role::Root, aggregator::Input::Call(AggregatorCall::Stats)).expect("answered");
        body
    }

    /// A session's live record, from memory or storage.
    pub fn record(&self, sid: &str) -> Option<SessionRecord> {
        self.sessions.get(sid).and_then(SessionObject::session)
    }
}
