//! The Matchmaker and the aggregators as the simulation runs them.

use askutron_core::aggregator::{self, Role};
use askutron_core::calls::{SessionCall, CALLS_VERSION};
use askutron_core::journal::Event;
use askutron_core::matchmaker::{self};

use crate::objects::AggregatorObject;
use crate::physics::ObjectId;
use crate::world::{Body, Caller, Event2, Sim};

impl Sim {
    pub(crate) fn mm_input(&mut self, input: matchmaker::Input) -> Option<(u16, String)> {
        if self.mm.core.is_none() {
            let settings = self.settings;
            self.mm.restore(settings, true);
        }
        let now = self.now;
        let effects = self.mm.core.as_mut().expect("restored").handle(now, input);
        let mut answer = None;
        let mut write_failed = false;
        for effect in effects {
            match effect {
                matchmaker::Effect::Respond { status, body } => answer = Some((status, body)),
                matchmaker::Effect::FetchFriends { search } => {
                    let id = search.steam_user_id.clone().unwrap_or_default();
                    let result = self.steam.get(&id).cloned().ok_or_else(|| "no such user".to_string());
                    let at = self.now + self.network.round_trip_ms.1.max(1.0);
                    self.schedule(at, Event2::Steam { search: Box::new(search), result });
                }
                matchmaker::Effect::Call { id, to, steps } => {
                    let body = Body::Session(SessionCall::Steps { v: CALLS_VERSION, steps });
                    self.send_call(ObjectId::Matchmaker, Caller::Matchmaker(id), ObjectId::Session(to), body);
                }
                matchmaker::Effect::CallRoot(call) => {
                    let to = ObjectId::Aggregator(Role::Root);
                    self.send_call(ObjectId::Matchmaker, Caller::MatchmakerToRoot, to, Body::Aggregator(call));
                }
                matchmaker::Effect::SaveSearch(search) => {
                    if self.mm_storage_fails() {
                        write_failed = true;
                    } else {
                        self.mm.searches.insert(search.sid.clone(), serde_json::to_string(&search).unwrap());
                    }
                }
                matchmaker::Effect::DeleteSearch(sid) => {
                    if self.mm_storage_fails() {
                        write_failed = true;
                    } else {
                        self.mm.searches.remove(&sid);
                    }
                }
                matchmaker::Effect::SaveJob(job) => {
                    if self.mm_storage_fails() {
                        write_failed = true;
                    } else {
                        self.mm.jobs.insert(job.link, serde_json::to_string(&job).unwrap());
                    }
                }
                matchmaker::Effect::DeleteJob(link) => {
                    if self.mm_storage_fails() {
                        write_failed = true;
                    } else {
                        self.mm.jobs.remove(&link);
                    }
                }
                matchmaker::Effect::SaveMeta { next_seq, next_link } => {
                    self.mm.next_seq = next_seq;
                    self.mm.next_link = next_link;
                }
                matchmaker::Effect::SetAlarm(at) => self.set_alarm(ObjectId::Matchmaker, at),
                matchmaker::Effect::Log(e) => self.log.push(e),
            }
        }
        // A write that failed: the caller is told to try again (as the Worker does).
        if write_failed && answer.is_some() {
            answer = Some((503, "storage unavailable".into()));
        }
        answer
    }

    /// A failed write of the Matchmaker's is logged (as the Worker does).
    pub(crate) fn mm_storage_fails(&mut self) -> bool {
        let fails = self.storage_fails();
        if fails {
            self.log.push(Event::error("storage_error").with("op", "matchmaker"));
        }
        fails
    }

    pub(crate) fn aggregator_mut(&mut self, role: Role) -> &mut AggregatorObject {
        let version = self.version;
        self.aggregators.entry(role).or_insert_with(|| {
            let mut agg = AggregatorObject::new(role);
            agg.life.version = version;
            agg
        })
    }

    pub(crate) fn aggregator_input(&mut self, role: Role, input: aggregator::Input) -> Option<(u16, String)> {
        if self.aggregator_mut(role).core.is_none() {
            self.aggregator_mut(role).restore();
        }
        let now = self.now;
        let effects = self.aggregator_mut(role).core.as_mut().expect("restored").handle(now, input);
        let mut answer = None;
        let mut write_failed = false;
        for effect in effects {
            match effect {
                aggregator::Effect::Respond { status, body } => answer = Some((status, body)),
                aggregator::Effect::Save { key, entry } => {
                    if self.storage_fails() {
                        self.log.push(Event::error("storage_error").with("op", "aggregator"));
                        write_failed = true;
                        continue;
                    }
                    let agg = self.aggregator_mut(role);
                    match entry {
                        Some(entry) => agg.entries.insert(key, entry),
                        None => agg.entries.remove(&key),
                    };
                }
                aggregator::Effect::PassUp { to, call } => {
                    let from = ObjectId::Aggregator(role);
                    self.send_call(from, Caller::Aggregator(role), ObjectId::Aggregator(to), Body::Aggregator(call));
                }
                aggregator::Effect::SetAlarm(at) => self.set_alarm(ObjectId::Aggregator(role), at),
                aggregator::Effect::Log(e) => self.log.push(e),
            }
        }
        if write_failed && answer.is_some() {
            answer = Some((503, "storage unavailable".into()));
        }
        answer
    }
}
