//! The Matchmaker Durable Object: the single place where searches meet. It
//! turns calls and its alarm into `MatchmakerCore` inputs and carries out the
//! effects: SQL rows for the pool and the announcements, Steam friend lists,
//! the steps it sends sessions and the number of searches it passes to the
//! root aggregator, all concurrently (the core keeps each master's
//! announcements in order).
//!
//! Exported by hand, like the Session class, on the runtime's own `Request`
//! and `Response`: no URL parsing, no `request.cf`.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::rc::Rc;

use worker::js_sys::Promise;
use worker::wasm_bindgen::{self, prelude::wasm_bindgen, JsValue};
use worker::wasm_bindgen_futures::future_to_promise;
use worker::worker_sys::{web_sys, DurableObjectState};
use worker::{Env, State};

use crate::executor::alarm::set_alarm;
use crate::executor::calls::{run_all, send, Pending};
use crate::executor::matchmaker_store::MatchmakerStore;
use crate::executor::steam;
use crate::glue::{self, body_text, is_internal, now, text};
use crate::log::emit_event;
use askutron_core::calls::{MatchmakerCall, SessionCall, CALLS_VERSION};
use askutron_core::journal::Level;
use askutron_core::matchmaker::{Effect, Input, MatchmakerCore, Search};
use askutron_core::session::{CallBody, Peer};

#[wasm_bindgen(wasm_bindgen = ::worker::wasm_bindgen)]
pub struct Matchmaker {
    inner: Rc<Inner>,
}

/// What the Matchmaker waits for.
enum Work {
    Call { id: u64, to: String, body: CallBody },
    Root(CallBody),
    Friends(Box<Search>),
}

struct Inner {
    env: Env,
    state: State,
    log_level: Level,
    store: MatchmakerStore,
    core: RefCell<Option<MatchmakerCore>>,
    work: RefCell<Vec<Work>>,
    alarm: Cell<Option<Option<f64>>>,
}

#[wasm_bindgen(wasm_bindgen = ::worker::wasm_bindgen)]
impl Matchmaker {
    #[wasm_bindgen(constructor)]
    pub fn new(state: DurableObjectState, env: Env) -> Matchmaker {
        let log_level = glue::settings(&env).log_level;
        let state = State::from(state);
        let store = MatchmakerStore::new(&state, log_level);
        let inner = Inner {
            env,
            state,
            log_level,
            store,
            core: RefCell::new(None),
            work: RefCell::new(Vec::new()),
            alarm: Cell::new(None),
        };
        Matchmaker { inner: Rc::new(inner) }
    }

    /// A session's search state.
    pub fn fetch(&self, req: web_sys::Request) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            if !is_internal(&req) {
                return Ok(text(404, askutron_core::wire::http::NOT_FOUND).into());
            }
            let body = body_text(req.text()).await.unwrap_or_default();
            let call: MatchmakerCall = match serde_json::from_str(&body) {
                Ok(call) => call,
                Err(e) => return Ok(text(400, &format!("bad matchmaker call: {e}")).into()),
            };
            let (status, body) = inner.step(Input::Call(call)).unwrap_or((500, "no answer".into()));
            let response = JsValue::from(text(status, &body));
            inner.settle().await;
            Ok(response)
        })
    }

    /// Retries, lease ends, the searches' count for the root.
    pub fn alarm(&self) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            inner.step(Input::Alarm);
            inner.settle().await;
            Ok(JsValue::UNDEFINED)
        })
    }
}

impl Inner {
    /// Feeds one input to the core (loaded first after a wake-up) and carries
    /// out its effects; returns the answer to a call.
    fn step(&self, input: Input) -> Option<(u16, String)> {
        if self.core.borrow().is_none() {
            let loaded = self.store.load();
            let key = steam::steam_key(&self.env).is_some();
            let settings = glue::settings(&self.env);
            let core =
                MatchmakerCore::restore(settings, key, loaded.searches, loaded.jobs, loaded.next_seq, loaded.next_link);
            *self.core.borrow_mut() = Some(core);
        }
        let effects = self.core.borrow_mut().as_mut().expect("loaded").handle(now(), input);
        let mut answer = None;
        let mut written = true;
        for effect in effects {
            match effect {
                Effect::Respond { status, body } => answer = Some((status, body)),
                Effect::FetchFriends { search } => self.work.borrow_mut().push(Work::Friends(Box::new(search))),
                Effect::Call { id, to, steps } => {
                    let body = CallBody::Session(SessionCall::Steps { v: CALLS_VERSION, steps });
                    self.work.borrow_mut().push(Work::Call { id, to, body });
                }
                Effect::CallRoot(call) => self.work.borrow_mut().push(Work::Root(CallBody::Aggregator(call))),
                Effect::SaveSearch(search) => written &= self.store.save_search(&search),
                Effect::DeleteSearch(sid) => written &= self.store.delete_search(sid),
                Effect::SaveJob(job) => written &= self.store.save_job(&job),
                Effect::DeleteJob(link) => written &= self.store.delete_job(link),
                Effect::SaveMeta { next_seq, next_link } => written &= self.store.save_meta(next_seq, next_link),
                Effect::SetAlarm(at) => self.alarm.set(Some(at)),
                Effect::Log(event) => emit_event(self.log_level, &event),
            }
        }
        // A write that failed: the caller learns, and sends its state again.
        if !written && answer.is_some() {
            answer = Some((503, "Storage unavailable: try again".into()));
        }
        answer
    }

    /// Sets the alarm, then runs everything the core asked for at once,
    /// handing each answer back as it comes.
    async fn settle(&self) {
        self.set_alarm().await;
        let env = &self.env;
        run_all(
            || {
                let work = std::mem::take(&mut *self.work.borrow_mut());
                work.into_iter().map(|w| -> Pending<'_, Input> { Box::pin(run(env, w)) }).collect()
            },
            |input| {
                self.step(input);
            },
        )
        .await;
        self.set_alarm().await;
    }

    async fn set_alarm(&self) {
        if let Some(at) = self.alarm.take() {
            if let Err(error) = set_alarm(&self.state, at).await {
                let event =
                    askutron_core::journal::Event::error("storage_error").with("op", "alarm").with("error", error);
                emit_event(self.log_level, &event);
                // The core sets it again at its next input.
                self.alarm.set(Some(at));
            }
        }
    }
}

async fn run(env: &Env, work: Work) -> Input {
    match work {
        Work::Call { id, to, body } => {
            let outcome = send(env, &Peer::Session(to), &body).await;
            Input::Answer { id, outcome }
        }
        Work::Root(body) => Input::RootAnswer(send(env, &Peer::Root, &body).await),
        Work::Friends(search) => {
            let result: Result<HashSet<String>, String> = steam::friends_of(env, &search).await;
            Input::Friends { search: *search, result }
        }
    }
}
