//! Announcing the links the Matchmaker made (ARCHITECTURE.md, "Making a
//! link"). Each link is a job, stored so a reset of the Matchmaker resumes
//! it, that goes through stages:
//!
//! 1. `Offer` to the slave: it holds the link as pending and answers with its
//!    clients in the master's id space (or refuses: it stopped searching);
//! 2. `Lead` to the master: it takes the slave (tells its host `!added-slave:`
//!    and the `connected:` lines, and sends `Welcome` to the slave itself),
//!    or refuses (it closed, left, or lost its host meanwhile);
//! 3. after a refusal, `Undo` to the slave: it forgets the link (its host
//!    never heard of it) and, if it still searches, goes back in the pool in
//!    its old place.
//!
//! A master's links are announced one at a time, in the order they were
//! made: that order is the order of joining, and a link's id range is fixed
//! (lowest free range that fits) when its announcement starts, so a link
//! that fell through before it leaves no gap. Every step is idempotent (the
//! link's id names it) and retried with back-off until answered; a step that
//! stays unanswered for long counts as refused. Steps for the same session
//! that are due together go in one call.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::calls::{LinkId, Outcome, Step, StepAnswer, GONE_STATUS};
use crate::journal::Event;
use crate::retry::Backoff;

use super::pool::{Match, Search};
use super::{CallId, Effect, MatchmakerCore};

/// An `Offer` or `Lead` unanswered this long counts as refused.
pub const STEP_TIMEOUT_MS: f64 = 30_000.0;
/// An `Undo` is tried this long (a slave drops an unconfirmed link by itself
/// after `session::search::LINK_CONFIRM_MS` anyway).
pub const UNDO_TIMEOUT_MS: f64 = 90_000.0;

fn step_backoff() -> Backoff {
    Backoff::new(100.0, 5_000.0)
}

/// Where a link's announcement stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Stage {
    /// Behind another link of the same master.
    Queued,
    Offer,
    Lead {
        clients: Vec<u32>,
    },
    Undo,
}

/// One link being announced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub link: LinkId,
    pub master: String,
    pub slave: String,
    pub offset: u32,
    pub span: u32,
    pub stage: Stage,
    /// The slave's search, to put back if the link falls through.
    #[serde(default)]
    pub slave_search: Option<Search>,
    /// The master's search, if this link filled it (it left the pool).
    #[serde(default)]
    pub filled: Option<Search>,
    /// The slave cancelled the search this link came from.
    #[serde(default)]
    pub slave_cancelled: bool,
    /// When the current stage began.
    #[serde(default)]
    pub since: f64,
    #[serde(skip, default = "step_backoff")]
    retry: Backoff,
    #[serde(skip)]
    in_flight: bool,
}

impl Job {
    fn step(&self) -> Option<(String, Step)> {
        let step = match &self.stage {
            Stage::Queued => return None,
            Stage::Offer => Step::Offer {
                link: self.link,
                master: self.master.clone(),
                offset: self.offset,
                epoch: self.slave_search.as_ref().map_or(0, |s| s.epoch),
            },
            Stage::Lead { clients } => Step::Lead {
                link: self.link,
                slave: self.slave.clone(),
                offset: self.offset,
                span: self.span,
                clients: clients.clone(),
                fills: self.filled.is_some(),
            },
            Stage::Undo => Step::Undo { link: self.link },
        };
        let to = if matches!(self.stage, Stage::Lead { .. }) { &self.master } else { &self.slave };
        Some((to.clone(), step))
    }
}

impl MatchmakerCore {
    /// Queues the announcement of a link just made.
    pub(super) fn announce(&mut self, now: f64, m: Match, last_of_master: bool, out: &mut Vec<Effect>) {
        let link = self.next_link;
        self.next_link += 1;
        let job = Job {
            link,
            filled: if last_of_master { self.pool.take_filled(&m.master) } else { None },
            slave_search: self.pool.take_matched(&m.slave),
            master: m.master,
            slave: m.slave,
            offset: m.offset,
            span: m.span,
            stage: Stage::Queued,
            slave_cancelled: false,
            since: now,
            retry: step_backoff(),
            in_flight: false,
        };
        let chain = self.chains.entry(job.master.clone()).or_default();
        chain.push_back(link);
        let first = chain.len() == 1;
        self.jobs.insert(link, job);
        out.push(Effect::SaveMeta { next_seq: self.pool.next_seq, next_link: self.next_link });
        if first {
            self.start(now, link, out);
        } else {
            self.save_job(link, out);
        }
    }

    /// The first link of a master's line starts: its range is fixed now.
    pub(super) fn start(&mut self, now: f64, link: LinkId, out: &mut Vec<Effect>) {
        let Some(job) = self.jobs.get_mut(&link) else { return };
        if let Some(offset) = self.pool.reassign(&job.master, job.offset, job.span) {
            job.offset = offset;
        }
        job.stage = Stage::Offer;
        job.since = now;
        let master = job.master.clone();
        self.save_job(link, out);
        self.save_search_of(&master, out);
    }

    /// Every step that is due, one call per session.
    pub(super) fn dispatch(&mut self, now: f64, out: &mut Vec<Effect>) {
        let mut batches: std::collections::BTreeMap<String, (Vec<LinkId>, Vec<Step>)> = Default::default();
        for job in self.jobs.values_mut() {
            if job.in_flight || !job.retry.ready(now) {
                continue;
            }
            let Some((to, step)) = job.step() else { continue };
            job.in_flight = true;
            let batch = batches.entry(to).or_default();
            batch.0.push(job.link);
            batch.1.push(step);
        }
        for (to, (links, steps)) in batches {
            let id: CallId = self.next_call;
            self.next_call += 1;
            self.calls.insert(id, links);
            out.push(Effect::Call { id, to, steps });
        }
    }

    /// The answers to one call's steps.
    pub(super) fn answered(&mut self, now: f64, id: CallId, outcome: Outcome, out: &mut Vec<Effect>) {
        let Some(links) = self.calls.remove(&id) else { return };
        let answers: Option<Vec<StepAnswer>> = outcome
            .ok_body()
            .and_then(|body| serde_json::from_str(body).ok())
            .filter(|a: &Vec<_>| a.len() == links.len());
        let gone = matches!(outcome, Outcome::Status(GONE_STATUS, _));
        for (i, link) in links.into_iter().enumerate() {
            let Some(job) = self.jobs.get_mut(&link) else { continue };
            job.in_flight = false;
            let answer = match (&answers, gone) {
                (Some(answers), _) => Some(answers[i].clone()),
                (None, true) => Some(StepAnswer::Refused),
                (None, false) => None,
            };
            self.step_answered(now, link, answer, out);
        }
    }

    fn step_answered(&mut self, now: f64, link: LinkId, answer: Option<StepAnswer>, out: &mut Vec<Effect>) {
        let job = self.jobs.get_mut(&link).expect("checked");
        let answer = match answer {
            Some(answer) => answer,
            None => {
                let failing = job.retry.failed(now);
                let timeout = if job.stage == Stage::Undo { UNDO_TIMEOUT_MS } else { STEP_TIMEOUT_MS };
                if now - job.since < timeout {
                    return;
                }
                out.push(Effect::Log(
                    Event::warn("link_step_timed_out")
                        .with("master", job.master.as_str())
                        .with("slave", job.slave.as_str())
                        .with("stage", format!("{:?}", job.stage))
                        .with("failing_ms", failing),
                ));
                match job.stage {
                    Stage::Undo => return self.finish(now, link, out),
                    // The slave may hold the link: it is undone.
                    _ => return self.fall_through(now, link, true, out),
                }
            }
        };
        job.retry.succeeded();
        match (&job.stage, answer) {
            (Stage::Offer, StepAnswer::Accepted { clients }) => {
                job.stage = Stage::Lead { clients };
                job.since = now;
                self.save_job(link, out);
            }
            (Stage::Offer, _) => self.fall_through(now, link, false, out),
            (Stage::Lead { .. }, StepAnswer::Accepted { .. }) => {
                out.push(Effect::Log(
                    Event::info("link_announced")
                        .with("master", job.master.as_str())
                        .with("slave", job.slave.as_str())
                        .with("offset", job.offset),
                ));
                self.finish(now, link, out);
            }
            (Stage::Lead { .. }, _) => {
                // The master refused: whatever the pool holds for it is not
                // its state (it stopped, or its ranges differ). It leaves the
                // pool; if it still searches, its next renewal brings it back
                // as it is.
                let master = self.jobs[&link].master.clone();
                self.fall_through(now, link, true, out);
                if self.pool.remove(&master).is_some() {
                    out.push(Effect::DeleteSearch(master));
                }
            }
            (Stage::Undo, StepAnswer::Undone { searching }) => {
                let job = self.jobs.get(&link).expect("checked");
                let put_back = job
                    .slave_search
                    .clone()
                    .filter(|s| !job.slave_cancelled && searching == Some(s.epoch) && !self.pool.contains(&s.sid));
                if let Some(search) = put_back {
                    let sid = search.sid.clone();
                    self.pool.put_back(search);
                    self.finish(now, link, out);
                    self.rematch(now, &sid, out);
                } else {
                    self.finish(now, link, out);
                }
            }
            (Stage::Undo, _) | (Stage::Queued, _) => self.finish(now, link, out),
        }
    }

    /// The link will not be made: the master's range is free again (or the
    /// master, if this link filled it, looks again), and the slave, if it
    /// took the offer, is told to forget it.
    fn fall_through(&mut self, now: f64, link: LinkId, undo: bool, out: &mut Vec<Effect>) {
        let job = self.jobs.get_mut(&link).expect("checked");
        out.push(Effect::Log(
            Event::info("link_abandoned").with("master", job.master.as_str()).with("slave", job.slave.as_str()),
        ));
        let master = job.master.clone();
        let range = (job.offset, job.span);
        match job.filled.take() {
            Some(search) if !self.pool.contains(&master) => self.pool.restore(search, range),
            _ => self.pool.free_range(&master, range.0, range.1),
        }
        self.save_search_of(&master, out);
        if undo {
            let job = self.jobs.get_mut(&link).expect("checked");
            job.stage = Stage::Undo;
            job.since = now;
            job.retry = step_backoff();
            self.save_job(link, out);
            self.next_in_line(now, &master, link, out);
        } else {
            // A slave that refused the offer stopped searching (or its
            // search changed): its old search is not put back.
            self.finish(now, link, out);
        }
    }

    /// The job is over: forgotten, and the master's next link may start.
    fn finish(&mut self, now: f64, link: LinkId, out: &mut Vec<Effect>) {
        let Some(job) = self.jobs.remove(&link) else { return };
        out.push(Effect::DeleteJob(link));
        self.next_in_line(now, &job.master, link, out);
    }

    fn next_in_line(&mut self, now: f64, master: &str, done: LinkId, out: &mut Vec<Effect>) {
        let Some(chain) = self.chains.get_mut(master) else { return };
        let was_first = chain.front() == Some(&done);
        chain.retain(|&l| l != done);
        let next = chain.front().copied();
        if chain.is_empty() {
            self.chains.remove(master);
        }
        if let (true, Some(next)) = (was_first, next) {
            self.start(now, next, out);
        }
    }

    /// Ranges of links still being announced to `master`, which a renewed
    /// search of the master must keep.
    pub(super) fn announced_ranges(&self, master: &str) -> Vec<(u32, u32)> {
        let chain = self.chains.get(master).map(VecDeque::iter).into_iter().flatten();
        chain.filter_map(|l| self.jobs.get(l)).map(|j| (j.offset, j.span)).collect()
    }

    /// A session ended its search `epoch` (or any before it): it dropped a
    /// link it was offered from that search itself, so a master that has not
    /// been asked yet never is, and the search is not put back.
    pub(super) fn slave_moved_on(&mut self, now: f64, sid: &str, epoch: u64, out: &mut Vec<Effect>) {
        let mut abandoned = Vec::new();
        for job in self.jobs.values_mut().filter(|j| j.slave == sid) {
            if job.slave_search.as_ref().is_some_and(|s| s.epoch <= epoch) {
                job.slave_cancelled = true;
                if matches!(job.stage, Stage::Lead { .. }) && !job.in_flight {
                    abandoned.push(job.link);
                }
            }
        }
        for link in abandoned {
            self.fall_through(now, link, false, out);
        }
    }

    /// A slave whose search this job consumed, as the session named it.
    pub(super) fn consumed(&self, sid: &str, epoch: u64) -> bool {
        self.jobs.values().any(|j| j.slave == sid && j.slave_search.as_ref().is_some_and(|s| s.epoch == epoch))
    }

    /// After a wake-up: a stage that began longer ago than it may take is
    /// over (a row whose deletion failed, or a reset that lasted): its link
    /// is undone rather than made now, long after the sessions moved on.
    pub(super) fn give_up_stale_jobs(&mut self, now: f64, out: &mut Vec<Effect>) {
        let stale: Vec<(LinkId, bool)> = self
            .jobs
            .values()
            .filter_map(|j| match j.stage {
                Stage::Queued => None,
                Stage::Undo => (now - j.since >= UNDO_TIMEOUT_MS).then_some((j.link, false)),
                _ => (now - j.since >= STEP_TIMEOUT_MS).then_some((j.link, true)),
            })
            .collect();
        for (link, undo) in stale {
            if undo {
                self.fall_through(now, link, true, out);
            } else {
                self.finish(now, link, out);
            }
        }
    }

    pub(super) fn steps_deadline(&self) -> Option<f64> {
        self.jobs
            .values()
            .filter(|j| !j.in_flight && j.stage != Stage::Queued)
            .filter_map(|j| j.retry.at())
            .reduce(f64::min)
    }

    fn save_job(&self, link: LinkId, out: &mut Vec<Effect>) {
        if let Some(job) = self.jobs.get(&link) {
            out.push(Effect::SaveJob(job.clone()));
        }
    }

    /// Rebuilds the lines of announcements from stored jobs (link ids grow
    /// in the order the links were made).
    pub(super) fn restore_jobs(&mut self, jobs: Vec<Job>) {
        for mut job in jobs {
            job.retry = step_backoff();
            job.in_flight = false;
            if job.stage != Stage::Undo {
                self.chains.entry(job.master.clone()).or_default().push_back(job.link);
            }
            self.next_link = self.next_link.max(job.link + 1);
            self.jobs.insert(job.link, job);
        }
        for chain in self.chains.values_mut() {
            chain.make_contiguous().sort_unstable();
        }
    }
}
