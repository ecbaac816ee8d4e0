//! A Session object's runtime: its core, rebuilt after a wake-up, and the
//! executor of its effects. No `RefCell` borrow is held across an await.

use std::cell::RefCell;

use std::rc::Rc;

use worker::js_sys::Promise;
use worker::wasm_bindgen::JsValue;
use worker::wasm_bindgen_futures::future_to_promise;
use worker::{Env, State, WebSocket};

use super::alarm::set_alarm_on;
use super::calls::{run_all, send};
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
    pub fn new(state: State, raw: worker::worker_sys::DurableObjectState, env: Env) -> Self {
        let settings = crate::glue::settings(&env);
        let io = SessionIo::new(state, raw, settings.log_level);
        SessionRuntime { env, settings, core: RefCell::new(None), io }
    }

    pub fn token_of(&self, ws: &WebSocket) -> Option<Token> {
        self.ensure_core();
        self.io.token_of(ws)
    }

    /// Rebuilds the core if memory lost it, or if storage could not be read
    /// last time (it is read again).
    fn ensure_core(&self) {
        let missing = self.core.borrow().as_ref().is_none_or(SessionCore::is_unreadable);
        if missing {
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
        let mut inputs = vec![input];
        while let Some(input) = inputs.pop() {
            let effects = self.core.borrow_mut().as_mut().expect("ensured").handle(now(), input);
            let follow_ups = self.io.execute_all(effects, incoming, &self.core, &mut answer);
            inputs.extend(follow_ups.into_iter().rev());
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

    /// Sets the alarm, then makes the calls the core asked for, all at once,
    /// handing each answer back to the core as it comes (which may ask for
    /// more calls: those run too, until none is left).
    pub async fn settle(&self) {
        self.set_alarm().await;
        let env = &self.env;
        run_all(
            || {
                let calls = std::mem::take(&mut *self.io.calls.borrow_mut());
                calls
                    .into_iter()
                    .map(|(id, to, body)| Box::pin(async move { (id, send(env, &to, &body).await) }) as _)
                    .collect()
            },
            |(id, outcome)| {
                self.step(Input::Answer { id, outcome });
            },
        )
        .await;
        self.set_alarm().await;
    }

    async fn set_alarm(&self) {
        // A failed alarm goes back to the core, which asks for it again: a
        // few tries, so a passing storage fault cannot leave a session
        // without its deadlines.
        for attempt in 0..5u32 {
            let Some(at) = self.io.alarm.take() else { break };
            match set_alarm_on(&self.io.storage, at).await {
                Ok(()) => break,
                Err(error) => {
                    self.step(Input::StorageFailed(StorageFailure::Alarm(error)));
                    // A passing fault: wait a little before the next try.
                    worker::Delay::from(std::time::Duration::from_millis(100 << attempt)).await;
                }
            }
        }
    }
}
