//! Calls between objects: latency from the geography, loss, repetition,
//! reordering, resets that fail calls in flight, and old code that cannot
//! read a newer call.

use askutron_core::aggregator::{self};
use askutron_core::calls::{Outcome, GONE_STATUS, UPGRADING_STATUS};
use askutron_core::matchmaker::{self};
use askutron_core::session::Input;

use crate::physics::ObjectId;
use crate::world::{clip, lost, short, Body, Caller, Event2, Flight, Sim};

impl Sim {
    pub(crate) fn send_call(&mut self, from: ObjectId, caller: Caller, to: ObjectId, body: Body) {
        let (incarnation, version) = {
            let life = self.life_mut(&from);
            (life.incarnation, life.version)
        };
        let flight =
            Flight { from: from.clone(), incarnation, version, caller, to: to.clone(), body, sent_at: self.now };
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

    pub(crate) fn deliver(&mut self, flight: Flight) {
        let Flight { from, incarnation, version, caller, to, body, sent_at } = flight;
        if let Some(meter) = self.meter.as_mut() {
            meter.call_between(self.now, &from, &to);
        }
        let reset_since = self.life_mut(&to).reset_at > sent_at;
        let outcome = if reset_since {
            Outcome::Failed("Durable Object reset because its code was updated".into())
        } else if version > self.life_mut(&to).version {
            Outcome::Status(UPGRADING_STATUS, "older version".into())
        } else {
            match (&to, body) {
                (ObjectId::Session(sid), Body::Session(call)) => {
                    if self.sessions.get(sid).is_none_or(|s| s.record.is_none() && s.owed.is_none() && s.core.is_none())
                    {
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

    pub(crate) fn answer(&mut self, to: ObjectId, incarnation: u64, caller: Caller, outcome: Outcome) {
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
            Caller::Aggregator(role) => {
                if self.aggregators.get(&role).is_some_and(|a| a.core.is_some()) {
                    self.aggregator_input(role, aggregator::Input::Answer(outcome));
                }
            }
            Caller::Nobody => {}
        }
    }
}
