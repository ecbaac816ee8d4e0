//! What comes in from other objects: their calls (a link's messages, the
//! Matchmaker's steps) and the answers to this session's own calls.

use crate::calls::{Outcome, SessionCall, StepAnswer, CALLS_VERSION, UPGRADING_STATUS};
use crate::journal::Event;

use super::effects::Out;
use super::{respond, Effect, InFlight, SessionCore};

impl SessionCore {
    pub(super) fn on_call(&mut self, now: f64, call: SessionCall, out: &mut Out<'_>) {
        match call {
            SessionCall::Link(batch) if batch.v > CALLS_VERSION => upgrading(out),
            SessionCall::Link(batch) => self.on_link_batch(now, batch, out),
            SessionCall::Steps { v, .. } if v > CALLS_VERSION => upgrading(out),
            SessionCall::Steps { steps, .. } => {
                let answers: Vec<StepAnswer> = steps.into_iter().map(|step| self.take_step(now, step, out)).collect();
                respond(out, 200, &serde_json::to_string(&answers).expect("answers serialise"));
            }
        }
    }

    pub(super) fn on_answer(&mut self, now: f64, id: super::CallId, outcome: Outcome, out: &mut Out<'_>) {
        let Some(purpose) = self.calls.remove(&id) else { return };
        self.timers_dirty = true;
        if let Outcome::Failed(error) = &outcome {
            out.push(Effect::Log(
                Event::warn("call_failed")
                    .with("sid", self.sid())
                    .with("call", format!("{purpose:?}"))
                    .with("error", error.as_str()),
            ));
        }
        match purpose {
            InFlight::Link(link) => self.link_answered(now, link, outcome, out),
            InFlight::Search(epoch, searching) => self.search_answered(now, (epoch, searching), outcome, out),
            InFlight::Cancel(epoch) => self.cancel_answered(now, epoch, outcome, out),
            InFlight::Report(counts, leaf, at) => self.report_answered(now, (counts, leaf, at), outcome, out),
            InFlight::Unreport(leaf) => self.unreport_answered(now, leaf, outcome, out),
            InFlight::StatsQuery => self.stats_answered(outcome, out),
        }
    }
}

/// This object runs older code than the caller, for now: the caller tries again.
fn upgrading(out: &mut Out<'_>) {
    respond(out, UPGRADING_STATUS, "this object runs an older version; try again");
}
