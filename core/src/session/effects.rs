//! What a session asks its executor to do, in order.

use std::borrow::Cow;

use crate::calls::{MatchmakerCall, Outcome, SessionCall};
use crate::journal::Event;
use crate::record::SocketInfo;
use crate::wire::Close;

use super::*;

/// Who a call goes to.
#[derive(Debug, Clone, PartialEq)]
pub enum Peer {
    Session(String),
    Matchmaker,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CallBody {
    Session(SessionCall),
    Matchmaker(MatchmakerCall),
}

/// Why a call was made: decides what its answer means.
#[derive(Debug, Clone, PartialEq)]
pub enum Purpose {
    /// Nothing to do with the answer beyond logging a failure.
    Notice,
    /// `/join-session`: a refusal ends the search.
    Search,
    /// `/stats`: the answer is for the host.
    Stats,
    /// A call to a linked session: if it is gone, the link ends.
    Linked,
    /// A master's host wrote to a slave's client (`digits` as it wrote them).
    ToSlaveClient { digits: String },
    /// A slave client's message forwarded to the master; `sender` is closed
    /// with 1013 if the master's queue is full.
    Forwarded { sender: Token },
}

/// A call to another object, as the executor sends it and hands it back.
#[derive(Debug, Clone, PartialEq)]
pub struct OutgoingCall {
    pub to: Peer,
    pub body: CallBody,
    pub purpose: Purpose,
    /// 0 for the first attempt.
    pub attempt: u32,
    /// For a retry: not before this time (epoch ms), and ahead of any call
    /// made since, so a link's calls stay in order.
    pub retry_at: Option<f64>,
}

/// The answer to an HTTP request (a connect or a call).
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// Complete the upgrade with the socket accepted as `socket`.
    Upgrade {
        socket: Token,
    },
    Text {
        status: u16,
        body: String,
    },
}

impl Answer {
    /// The answer as the calling object sees it.
    pub fn outcome(self) -> Outcome {
        match self {
            Answer::Upgrade { .. } => Outcome::Status(101, String::new()),
            Answer::Text { status, body } => Outcome::Status(status, body),
        }
    }
}

/// What the Durable Object must do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect<'a> {
    /// Accept the new socket of this request as `socket`: with its attachment
    /// through the hibernation API, or plainly when `info` is `None` (a socket
    /// that is refused at once).
    Accept {
        socket: Token,
        info: Option<SocketInfo>,
    },
    Send {
        to: Token,
        text: Cow<'a, str>,
    },
    /// Send `<client>: <message>` (`say::from_client`): the relay path, kept
    /// apart so an executor can build the line without copying the message.
    SendFromClient {
        to: Token,
        client: u32,
        message: &'a str,
    },
    Close {
        to: Token,
        close: Close,
    },
    /// Store the socket's facts in its attachment.
    Attach {
        socket: Token,
        info: SocketInfo,
    },
    /// Store the record (`SessionCore::record`).
    Persist,
    /// Forget the session: record and queue.
    Erase,
    /// Add a line to the queue for the absent host.
    Enqueue {
        line: String,
        sender: Option<Token>,
        bytes: usize,
    },
    /// Send the whole queue to `to` in order, then clear it.
    Replay {
        to: Token,
        bytes: usize,
        lines: usize,
    },
    Call(OutgoingCall),
    SetAlarm(Option<f64>),
    Respond(Answer),
    Log(Event),
}

pub(super) type Out<'a> = Vec<Effect<'a>>;
