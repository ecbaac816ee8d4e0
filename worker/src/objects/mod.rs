//! The Durable Object classes, exported by hand (see `session`): each turns
//! the runtime's events into its core's inputs and hands the effects to the
//! executor.

pub mod aggregator;
pub mod matchmaker;
pub mod session;
