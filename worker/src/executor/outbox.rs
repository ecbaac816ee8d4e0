//! Calls to other objects, sent in the order the core made them.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;

use worker::{Delay, Env};

use crate::glue::{call, matchmaker_stub, session_stub};
use askutron_core::calls::Outcome;
use askutron_core::session::{CallBody, OutgoingCall, Peer};

/// Calls to other objects, sent one at a time in the order they were made.
/// The event that finds the outbox idle drains it; the others leave their
/// calls to it. A retry goes first, so a link's calls stay in order.
#[derive(Default)]
pub struct Outbox {
    calls: RefCell<VecDeque<OutgoingCall>>,
    draining: Cell<bool>,
}

impl Outbox {
    pub fn push(&self, call: OutgoingCall) {
        if call.retry_at.is_some() {
            self.calls.borrow_mut().push_front(call);
        } else {
            self.calls.borrow_mut().push_back(call);
        }
    }

    /// True when calls wait and no event is draining them yet.
    pub fn has_calls(&self) -> bool {
        !self.draining.get() && !self.calls.borrow().is_empty()
    }

    /// Claims the outbox for draining; false if another event drains it.
    pub fn claim(&self) -> bool {
        !self.draining.replace(true)
    }

    pub fn release(&self) {
        self.draining.set(false);
    }

    pub fn next(&self) -> Option<OutgoingCall> {
        self.calls.borrow_mut().pop_front()
    }
}

/// Sends one call and waits for its answer.
pub async fn send(env: &Env, outgoing: &OutgoingCall) -> Outcome {
    if let Some(at) = outgoing.retry_at {
        let wait = (at - worker::js_sys::Date::now()).max(0.0) as u64;
        if wait > 0 {
            Delay::from(std::time::Duration::from_millis(wait)).await;
        }
    }
    let stub = match &outgoing.to {
        Peer::Session(sid) => session_stub(env, sid),
        Peer::Matchmaker => matchmaker_stub(env),
    };
    let result = match (stub, &outgoing.body) {
        (Ok(stub), CallBody::Session(c)) => call(stub, c).await,
        (Ok(stub), CallBody::Matchmaker(c)) => call(stub, c).await,
        (Err(e), _) => Err(e),
    };
    match result {
        Ok((status, body)) => Outcome::Status(status, body),
        Err(e) => Outcome::Failed(e.to_string()),
    }
}
