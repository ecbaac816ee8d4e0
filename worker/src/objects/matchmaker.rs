//! The Matchmaker Durable Object: the single place where searches meet. It
//! turns calls into `MatchmakerCore` inputs and carries out the effects: SQL
//! rows for the pool and the figures, Steam friend lists, and the calls that
//! announce links (run concurrently across masters; the core keeps each
//! master's in order).
//!
//! Exported by hand, like the Session class, on the runtime's own `Request`
//! and `Response`: no URL parsing, no `request.cf`.

use std::cell::RefCell;
use std::rc::Rc;

use futures_util::future::join_all;
use worker::js_sys::Promise;
use worker::wasm_bindgen::{self, prelude::wasm_bindgen, JsValue};
use worker::wasm_bindgen_futures::future_to_promise;
use worker::worker_sys::{web_sys, DurableObjectState};
use worker::{Env, State};

use crate::executor::matchmaker_store::MatchmakerStore;
use crate::executor::steam;
use crate::glue::{self, body_text, call, is_internal, now, session_stub, text};
use crate::log::emit_event;
use askutron_core::calls::{MatchmakerCall, Outcome};
use askutron_core::journal::Level;
use askutron_core::matchmaker::{Effect, Input, MatchmakerCore};

#[wasm_bindgen(wasm_bindgen = ::worker::wasm_bindgen)]
pub struct Matchmaker {
    inner: Rc<Inner>,
}

struct Inner {
    env: Env,
    log_level: Level,
    store: MatchmakerStore,
    core: RefCell<Option<MatchmakerCore>>,
}

#[wasm_bindgen(wasm_bindgen = ::worker::wasm_bindgen)]
impl Matchmaker {
    #[wasm_bindgen(constructor)]
    pub fn new(state: DurableObjectState, env: Env) -> Matchmaker {
        let log_level = glue::settings(&env).log_level;
        let store = MatchmakerStore::new(&State::from(state), log_level);
        Matchmaker { inner: Rc::new(Inner { env, log_level, store, core: RefCell::new(None) }) }
    }

    /// A call from a Session object (or the router's `/stats`).
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
            let (status, body) = inner.run(Input::Call(call)).await;
            Ok(JsValue::from(text(status, &body)))
        })
    }
}

impl Inner {
    fn handle(&self, input: Input) -> Vec<Effect> {
        if self.core.borrow().is_none() {
            let loaded = self.store.load();
            let key = steam::steam_key(&self.env).is_some();
            let settings = glue::settings(&self.env);
            let core = MatchmakerCore::restore(settings, key, loaded.searches, loaded.next_seq, loaded.stats);
            *self.core.borrow_mut() = Some(core);
        }
        self.core.borrow_mut().as_mut().expect("loaded").handle(now(), input)
    }

    /// Runs an input and everything that follows from it (friend lists, link
    /// announcements) until nothing is left; returns the answer to the call.
    async fn run(&self, input: Input) -> (u16, String) {
        let mut answer = (500, "no answer".to_string());
        let mut effects = self.handle(input);
        while !effects.is_empty() {
            let mut tells = Vec::new();
            let mut follow = Vec::new();
            for effect in effects {
                match effect {
                    Effect::Respond { status, body } => answer = (status, body),
                    Effect::FetchFriends { search } => {
                        let result = steam::friends_of(&self.env, &search).await;
                        follow.push(Input::Friends { search, result });
                    }
                    Effect::Tell { job, to, call } => tells.push((job, to, call)),
                    Effect::SaveSearch(search) => self.store.save_search(&search),
                    Effect::DeleteSearch(sid) => self.store.delete_search(sid),
                    Effect::SaveSeq(seq) => self.store.save_seq(seq),
                    Effect::SaveStats { sid, counts } => self.store.save_stats(sid, counts),
                    Effect::Log(event) => emit_event(self.log_level, &event),
                }
            }
            let told = join_all(tells.into_iter().map(|(job, to, body)| async move {
                let outcome = match session_stub(&self.env, &to) {
                    Ok(stub) => match call(stub, &body).await {
                        Ok((status, body)) => Outcome::Status(status, body),
                        Err(e) => Outcome::Failed(e.to_string()),
                    },
                    Err(e) => Outcome::Failed(e.to_string()),
                };
                Input::Told { job, outcome }
            }))
            .await;
            effects = follow.into_iter().chain(told).flat_map(|input| self.handle(input)).collect();
        }
        answer
    }
}
