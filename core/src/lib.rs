//! Askutron Relay's protocol (PROTOCOL.md) as pure state machines.
//!
//! Nothing in this crate does I/O, reads a clock or draws randomness: every
//! input arrives with the time (and any fresh secret), and every consequence
//! leaves as an ordered list of effects for an executor to carry out. The
//! Worker (`worker/`) executes them against Cloudflare's runtime; the
//! simulator (`sim/`) executes them against a deterministic model of it.
//!
//! - [`wire`]: what frames and requests mean, and every string the relay sends.
//! - [`session`]: one session's state machine (a Session Durable Object).
//! - [`matchmaker`]: the one Matchmaker's state machine and its matching rules.
//! - [`record`], [`group`]: the shapes a session stores, readable by the next version.
//! - [`aggregator`]: the tree of objects that sums the relay-wide figures.
//! - [`calls`], [`channel`], [`retry`]: the messages objects send each other,
//!   and how a link's messages survive production physics.
//! - [`stats`], [`settings`], [`secrets`], [`journal`], [`log`], [`url_parts`].

pub mod aggregator;
pub mod calls;
pub mod channel;
pub mod group;
pub mod journal;
pub mod log;
pub mod matchmaker;
pub mod record;
pub mod retry;
pub mod secrets;
pub mod session;
pub mod settings;
pub mod stats;
pub mod stream;
pub mod url_parts;
pub mod wire;

/// The relay's version, from the workspace's Cargo.toml.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
