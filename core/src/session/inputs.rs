//! What can happen to a session.

use crate::calls::{Outcome, SessionCall};
use crate::wire::{ClientParams, HostParams};

use super::{CallId, Token};

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
    /// The answer to the call this session made as `id`.
    Answer {
        id: CallId,
        outcome: Outcome,
    },
    /// An effect's storage operation failed.
    StorageFailed(StorageFailure),
    /// The lines a numbered `Effect::Replay` sent to a resume host.
    Replayed {
        host: Token,
        lines: Vec<String>,
    },
}

/// Where a queued line came from: who learns if it cannot be stored.
#[derive(Debug, Clone, PartialEq)]
pub enum QueueSource {
    /// A client of this session (closed with 1011 if its message is not kept).
    Client(Token),
    /// A linked session's message (the link ends if it is not kept).
    Link(crate::calls::LinkId),
    /// A link line, kept outside the bound (logged if it is not kept).
    Notice,
}

#[derive(Debug, Clone, PartialEq)]
pub enum StorageFailure {
    /// The record (or what the session still owes others) could not be written.
    Persist(String),
    /// A line could not be queued; `bytes` were counted for it.
    Enqueue {
        source: QueueSource,
        bytes: usize,
        error: String,
    },
    /// The queue could not be read for the host that took over; nothing was
    /// sent or deleted. `bytes`/`lines`/`notices` are what the queue held.
    Replay {
        host: Token,
        bytes: usize,
        lines: usize,
        notices: usize,
        error: String,
    },
    /// The queue was sent to the host, but deleting its rows (up to
    /// `through`) failed: they must never be sent again.
    QueueNotCleared {
        through: u64,
        error: String,
    },
    Alarm(String),
}
