//! A deterministic simulation of Askutron Relay's Durable Objects, in the
//! manner of FoundationDB's simulation tests and TigerBeetle's VOPR: the real
//! cores (`askutron-core`), their effects carried out as the Worker carries
//! them out, against production physics that `wrangler dev` never shows.
//!
//! One seed decides everything: where each object lives and so what a call
//! between two costs (1–150 ms), which calls are lost, repeated or
//! reordered, which storage operations fail, when objects are evicted or
//! reset, and when a deploy runs old and new code side by side. A failing
//! seed replays exactly (`SIM_SEED=<seed>`, and `SIM_TRACE=1` for every step).
//!
//! - `world`: the objects, the network, the clock, the faults;
//! - `users`: hosts and clients, as tests drive them;
//! - `physics`: colos, latency, loss, storage faults, resets;
//! - `check`: the invariants a run must keep (safety after every step,
//!   liveness once faults stop);
//! - `meter`: calls per second into each object, for the load model.

pub mod check;
mod faults;
pub mod meter;
mod network;
pub mod objects;
pub mod physics;
pub mod rng;
pub mod seeds;
mod services;
mod sessions;
pub mod sockets;
pub mod trace;
mod users;
pub mod world;

pub use physics::{Faults, Network, ObjectId};
pub use sockets::{Received, Sock, SockState};
pub use users::pairs;
pub use world::{Config, Sim, EPOCH};

use askutron_core::settings::Settings;

/// A simulation on loopback with no faults, for scenario tests.
pub fn loopback(max_clients: u32) -> Sim {
    Sim::new(Config::new(Settings { max_clients, ..Settings::default() }))
}
