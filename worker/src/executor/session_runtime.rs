//! A Session object's runtime: its core, rebuilt after a wake-up, and the
//! executor of its effects. No `RefCell` borrow is held across an await.

use std::cell::RefCell;

use std::rc::Rc;

use worker::js_sys::Promise;
use worker::wasm_bindgen::JsValue;
use worker::wasm_bindgen_futures::future_to_promise;
use worker::{Env, State, WebSocket};

use super::alarm::set_alarm;
use super::outbox::send;
use super::session_io::{Incoming, SessionIo};
use crate::glue::now;
use askutron_core::session::{Answer, Input, SessionCore, StorageFailure, Token};
use askutron_core::settings::Settings;

/// A Session object's runtime side: its core (rebuilt after a wake-up) and
/// what carries out the core's effects.
pub struct SessionRuntime {
    env: Env,
    settings: Settings,
    /// `None` until rebuilt in this incarnation.
    core: RefCell<Option<SessionCore>>,
    pub io: SessionIo,
}

impl SessionRuntime {
    pub fn new(state: State, env: Env) -> Self {
        let settings = crate::glue::settings(&env);
        let io = SessionIo::new(state, settings.log_level);
        SessionRuntime { env, settings, core: RefCell::new(None), io }
    }

    pub fn token_of(&self, ws: &WebSocket) -> Option<Token> {
        self.ensure_core();
        self.io.token_of(ws)
    }

    fn ensure_core(&self) {
        if self.core.borrow().is_none() {
            let core = self.io.restore(self.settings);
            *self.core.borrow_mut() = Some(core);
        }
    }

    pub fn step(&self, input: Input<'_>) -> Option<Answer> {
        self.step_with(input, None)
    }

    /// Feeds one input to the core and carries out its effects; a storage
    /// failure goes back to the core as an input of its own. `incoming`: the
    /// text frame the relayed text is cut from.
    pub fn step_with(&self, input: Input<'_>, incoming: Option<&Incoming<'_>>) -> Option<Answer> {
        self.ensure_core();
        let mut answer = None;
        let mut next = Some(input);
        while let Some(input) = next.take() {
            let effects = self.core.borrow_mut().as_mut().expect("ensured").handle(now(), input);
            next = self.io.execute_all(effects, incoming, &self.core, &mut answer).map(Input::StorageFailed);
        }
        answer
    }

    /// `value` when the event is complete, else a promise of it after `settle`.
    pub fn settle_then(self: &Rc<Self>, value: JsValue) -> JsValue {
        if !self.io.has_pending_work() {
            return value;
        }
        let inner = self.clone();
        let promise: Promise = future_to_promise(async move {
            inner.settle().await;
            Ok(value)
        });
        promise.into()
    }

    /// Sends the queued calls in order (each answer goes back to the core),
    /// then sets the alarm.
    pub async fn settle(&self) {
        if self.io.outbox.claim() {
            while let Some(call) = self.io.outbox.next() {
                let outcome = send(&self.env, &call).await;
                self.step(Input::Answer { call, outcome });
            }
            self.io.outbox.release();
        }
        // A failed alarm goes back to the core, which asks for it again: a
        // few tries, so a passing storage fault cannot leave a session
        // without its deadlines.
        for _ in 0..3 {
            let Some(at) = self.io.alarm.take() else { break };
            match set_alarm(&self.io.state, at).await {
                Ok(()) => break,
                Err(error) => {
                    self.step(Input::StorageFailed(StorageFailure::Alarm(error)));
                }
            }
        }
    }
}
