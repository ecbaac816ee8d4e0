//! An Aggregator Durable Object: a leaf (`leaf-<n>`) that sums the figures
//! of the sessions that report to it and passes its totals up to its branch,
//! a branch (`branch-<n>`) that sums its leaves' and passes them to the root,
//! or the root (`root`) that sums the branches' and the Matchmaker's and
//! answers `/stats`.
//! It turns calls and its alarm into `AggregatorCore` inputs and carries out
//! the effects.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use worker::js_sys::Promise;
use worker::wasm_bindgen::{self, prelude::wasm_bindgen, JsValue};
use worker::wasm_bindgen_futures::future_to_promise;
use worker::worker_sys::{web_sys, DurableObjectState};
use worker::{Env, State};

use crate::executor::aggregator_store::AggregatorStore;
use crate::executor::alarm::set_alarm;
use crate::executor::calls::send_to_aggregator;
use crate::glue::{self, body_text, is_internal, now, text};
use crate::log::emit_event;
use askutron_core::aggregator::{AggregatorCore, Effect, Input, Role};
use askutron_core::calls::AggregatorCall;
use askutron_core::journal::{Event, Level};

#[wasm_bindgen(wasm_bindgen = ::worker::wasm_bindgen)]
pub struct Aggregator {
    inner: Rc<Inner>,
}

struct Inner {
    env: Env,
    state: State,
    log_level: Level,
    /// `LOG_LIFECYCLE=true`: a line when the object loads its figures (the
    /// tests count which aggregators of the tree took reports).
    lifecycle: bool,
    store: AggregatorStore,
    core: RefCell<Option<AggregatorCore>>,
    /// The totals to pass up, and to which aggregator (this one's parent).
    up: RefCell<Option<(Role, AggregatorCall)>>,
    alarm: Cell<Option<Option<f64>>>,
}

#[wasm_bindgen(wasm_bindgen = ::worker::wasm_bindgen)]
impl Aggregator {
    #[wasm_bindgen(constructor)]
    pub fn new(state: DurableObjectState, env: Env) -> Aggregator {
        let log_level = glue::settings(&env).log_level;
        let state = State::from(state);
        let store = AggregatorStore::new(&state, log_level);
        let lifecycle = env.var("LOG_LIFECYCLE").is_ok_and(|v| v.to_string() == "true");
        let inner = Inner {
            env,
            state,
            log_level,
            lifecycle,
            store,
            core: RefCell::new(None),
            up: RefCell::new(None),
            alarm: Cell::new(None),
        };
        Aggregator { inner: Rc::new(inner) }
    }

    /// A report, totals passed up, or `/stats`. The object's name comes in
    /// the URL (`/internal/<name>`): a Durable Object does not know it.
    pub fn fetch(&self, req: web_sys::Request) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            if !is_internal(&req) {
                return Ok(text(404, askutron_core::wire::http::NOT_FOUND).into());
            }
            let url = req.url();
            let role = url.rsplit('/').next().and_then(Role::from_name);
            let body = body_text(req.text()).await.unwrap_or_default();
            let (Some(role), Ok(call)) = (role, serde_json::from_str::<AggregatorCall>(&body)) else {
                return Ok(text(400, "bad aggregator call").into());
            };
            let (status, body) = inner.step(Some(role), Input::Call(call)).unwrap_or((500, "no answer".into()));
            let response = JsValue::from(text(status, &body));
            inner.settle().await;
            Ok(response)
        })
    }

    pub fn alarm(&self) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            inner.step(None, Input::Alarm);
            inner.settle().await;
            Ok(JsValue::UNDEFINED)
        })
    }
}

impl Inner {
    /// Feeds one input to the core (loaded first after a wake-up: the
    /// object's role comes from the call's URL, or from storage for an alarm).
    fn step(&self, role: Option<Role>, input: Input) -> Option<(u16, String)> {
        if self.core.borrow().is_none() {
            let (stored_role, entries) = self.store.load();
            let Some(role) = role.or(stored_role) else { return None };
            if stored_role != Some(role) {
                self.store.save_role(role);
            }
            if self.lifecycle {
                worker::console_log!("lifecycle: aggregator {} loaded", role.name());
            }
            *self.core.borrow_mut() = Some(AggregatorCore::restore(role, entries));
        }
        let effects = self.core.borrow_mut().as_mut().expect("loaded").handle(now(), input);
        let mut answer = None;
        let mut written = true;
        for effect in effects {
            match effect {
                Effect::Respond { status, body } => answer = Some((status, body)),
                Effect::Save { key, entry } => written &= self.store.save(key, entry),
                Effect::PassUp { to, call } => *self.up.borrow_mut() = Some((to, call)),
                Effect::SetAlarm(at) => self.alarm.set(Some(at)),
                Effect::Log(event) => emit_event(self.log_level, &event),
            }
        }
        // A write that failed: the reporter learns, and reports again.
        if !written && answer.is_some() {
            answer = Some((503, "Storage unavailable: try again".into()));
        }
        answer
    }

    /// Sets the alarm the core asked for and passes totals up, until the
    /// core asks for nothing more: an answer can itself ask for the next call
    /// (totals changed while one was in flight and are due now), and a call
    /// the core believes in flight but that was never made would hold every
    /// later change here for good (seen under load: `/stats` stuck one short).
    async fn settle(&self) {
        loop {
            if let Some(at) = self.alarm.take() {
                if let Err(error) = set_alarm(&self.state, at).await {
                    emit_event(self.log_level, &Event::error("storage_error").with("op", "alarm").with("error", error));
                }
            }
            let up = self.up.borrow_mut().take();
            let Some((to, call)) = up else { break };
            let outcome = send_to_aggregator(&self.env, to, &call).await;
            self.step(None, Input::Answer(outcome));
        }
    }
}
