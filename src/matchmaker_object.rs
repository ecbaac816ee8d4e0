//! The Matchmaker Durable Object: the single place where searches meet. It
//! turns calls into `MatchmakerCore` inputs and carries out the effects: SQL
//! rows for the pool and the figures, Steam friend lists, and the calls that
//! announce links (run concurrently across masters; the core keeps each
//! master's in order).

use futures_util::future::join_all;
use std::cell::RefCell;
use worker::{durable_object, wasm_bindgen, DurableObject, Env, Request, Response, Result, State};

use crate::calls::{MatchmakerCall, Outcome};
use crate::executor::{self, emit, MatchmakerStore};
use crate::glue::{self, call, is_internal, now, session_stub, text};
use crate::journal::Level;
use crate::matchmaker_core::{Effect, Input, MatchmakerCore};

#[durable_object]
pub struct Matchmaker {
    env: Env,
    log_level: Level,
    store: MatchmakerStore,
    core: RefCell<Option<MatchmakerCore>>,
}

impl DurableObject for Matchmaker {
    fn new(state: State, env: Env) -> Self {
        let log_level = glue::settings(&env).log_level;
        Matchmaker { store: MatchmakerStore::new(&state, log_level), log_level, env, core: RefCell::new(None) }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        if !is_internal(&req) {
            return text(404, crate::protocol::http::NOT_FOUND);
        }
        let call: MatchmakerCall = match req.json().await {
            Ok(call) => call,
            Err(e) => return text(400, &format!("bad matchmaker call: {e}")),
        };
        let (status, body) = self.run(Input::Call(call)).await;
        text(status, &body)
    }
}

impl Matchmaker {
    fn handle(&self, input: Input) -> Vec<Effect> {
        if self.core.borrow().is_none() {
            let loaded = self.store.load();
            let key = executor::steam_key(&self.env).is_some();
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
                        let result = executor::friends_of(&self.env, &search).await;
                        follow.push(Input::Friends { search, result });
                    }
                    Effect::Tell { job, to, call } => tells.push((job, to, call)),
                    Effect::SaveSearch(search) => self.store.save_search(&search),
                    Effect::DeleteSearch(sid) => self.store.delete_search(sid),
                    Effect::SaveSeq(seq) => self.store.save_seq(seq),
                    Effect::SaveStats { sid, counts } => self.store.save_stats(sid, counts),
                    Effect::Log(event) => emit(self.log_level, &event),
                }
            }
            let told = join_all(tells.into_iter().map(|(job, to, body)| async move {
                let outcome = match session_stub(&self.env, &to) {
                    Ok(stub) => match call(&stub, &body).await {
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
