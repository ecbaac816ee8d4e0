//! The executors of the cores' effects, shared by the two Durable Objects:
//! storage, the outbox of calls, the alarm, sockets, Steam.

pub mod aggregator_store;
pub mod alarm;
pub mod calls;
pub mod matchmaker_store;
pub mod requests;
pub mod session_io;
pub mod session_runtime;
pub mod session_store;
pub mod steam;
