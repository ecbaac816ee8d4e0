//! Calls between objects as the executors make them: concurrently, each
//! with a time limit, every answer handed back to the core that asked
//! (the core batches, orders and retries; the executor only carries).

use std::future::Future;
use std::pin::Pin;

use futures_util::future::{select, Either};
use futures_util::stream::{FuturesUnordered, StreamExt};
use worker::{Delay, Env, Result};

use crate::glue::{aggregator_stub, call, call_named, matchmaker_stub, session_stub};
use askutron_core::aggregator::Role;
use askutron_core::calls::{AggregatorCall, Outcome};
use askutron_core::session::{CallBody, Peer};

/// A call that gets no answer within this time has failed: the core sends
/// it again (every call is idempotent).
const CALL_TIMEOUT_MS: u64 = 10_000;

/// The aggregator a peer names, if it names one.
fn aggregator_role(peer: &Peer) -> Option<Role> {
    match peer {
        Peer::Aggregator(i) => Some(Role::Leaf(*i)),
        Peer::Root => Some(Role::Root),
        Peer::Session(_) | Peer::Matchmaker => None,
    }
}

/// One call to an aggregator, by its role: its name goes in the URL, since
/// a Durable Object does not know its own (a session reporting to its leaf,
/// an aggregator passing totals to its parent, `/stats` asking the root).
pub async fn send_to_aggregator(env: &Env, role: Role, call: &AggregatorCall) -> Outcome {
    let name = role.name();
    within_time_limit(async { call_named(aggregator_stub(env, &name)?, &name, call).await }).await
}

/// Makes one call to `peer` and waits for its answer, or for the time limit.
pub async fn send(env: &Env, peer: &Peer, body: &CallBody) -> Outcome {
    if let (Some(role), CallBody::Aggregator(c)) = (aggregator_role(peer), body) {
        return send_to_aggregator(env, role, c).await;
    }
    let request = async {
        let stub = match peer {
            Peer::Session(sid) => session_stub(env, sid)?,
            Peer::Matchmaker => matchmaker_stub(env)?,
            Peer::Aggregator(_) | Peer::Root => {
                aggregator_stub(env, &aggregator_role(peer).expect("names an aggregator").name())?
            }
        };
        match body {
            CallBody::Session(c) => call(stub, c).await,
            CallBody::Matchmaker(c) => call(stub, c).await,
            CallBody::Aggregator(c) => call(stub, c).await,
        }
    };
    within_time_limit(request).await
}

/// A call's answer, or its failure once [`CALL_TIMEOUT_MS`] has passed.
async fn within_time_limit(request: impl Future<Output = Result<(u16, String)>>) -> Outcome {
    let timeout = Delay::from(std::time::Duration::from_millis(CALL_TIMEOUT_MS));
    match select(Box::pin(request), timeout).await {
        Either::Left((Ok((status, body)), _)) => Outcome::Status(status, body),
        Either::Left((Err(e), _)) => Outcome::Failed(e.to_string()),
        Either::Right(_) => Outcome::Failed(format!("no answer within {CALL_TIMEOUT_MS} ms")),
    }
}

/// A call (or a fetch) under way, yielding what its answer means.
pub type Pending<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// Runs calls concurrently, handing each answer to `answered` as it comes;
/// `more` yields the calls that answers (or other events) asked for since.
pub async fn run_all<'a, T>(mut more: impl FnMut() -> Vec<Pending<'a, T>>, mut answered: impl FnMut(T)) {
    let mut running: FuturesUnordered<Pending<'a, T>> = FuturesUnordered::new();
    loop {
        running.extend(more());
        match running.next().await {
            Some(answer) => answered(answer),
            None => break,
        }
    }
}
