//! What can happen to a session.

use crate::calls::{Outcome, SessionCall};
use crate::wire::{ClientParams, HostParams};

use super::*;

#[derive(Debug, Clone, PartialEq)]
pub enum Frame<'a> {
    Text(&'a str),
    Binary,
    TooBig,
}

/// Everything that can happen to a session.
#[derive(Debug, Clone, PartialEq)]
pub enum Input<'a> {
    /// `GET /session?...` with an upgrade. `fresh_secret` is used if the
    /// session is created (randomness comes from outside).
    HostConnect {
        params: HostParams,
        fresh_secret: String,
    },
    /// `GET /session/<sid>?...` with an upgrade.
    ClientConnect {
        params: ClientParams,
    },
    Frame {
        socket: Token,
        frame: Frame<'a>,
    },
    /// The peer closed the socket (`code` as it sent it).
    Closed {
        socket: Token,
        code: u16,
    },
    Errored {
        socket: Token,
    },
    Alarm,
    /// A call from another object; answered with `Effect::Respond`.
    Call(SessionCall),
    /// The answer to a call this session made.
    Answer {
        call: OutgoingCall,
        outcome: Outcome,
    },
    /// An effect's storage operation failed.
    StorageFailed(StorageFailure),
}

#[derive(Debug, Clone, PartialEq)]
pub enum StorageFailure {
    Persist(String),
    /// A message could not be queued; `bytes` were counted for it.
    Enqueue {
        sender: Option<Token>,
        bytes: usize,
        error: String,
    },
    /// The queue could not be read for the host that took over; nothing was
    /// deleted. `bytes`/`lines` are what the queue held.
    Replay {
        host: Token,
        bytes: usize,
        lines: usize,
        error: String,
    },
    Alarm(String),
}
