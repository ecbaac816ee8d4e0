//! What a session asks its executor to do, in order.

use std::borrow::Cow;

use crate::calls::{AggregatorCall, MatchmakerCall, Outcome, SessionCall};
use crate::journal::Event;
use crate::record::SocketInfo;
use crate::wire::Close;

use super::inputs::QueueSource;
use super::{CallId, Token};

/// Who a call goes to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Peer {
    Session(String),
    Matchmaker,
    /// A leaf aggregator of the figures, by index.
    Aggregator(u32),
    /// The root aggregator: it answers `/stats`.
    Root,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CallBody {
    Session(SessionCall),
    Matchmaker(MatchmakerCall),
    Aggregator(AggregatorCall),
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
    /// Send a frame that is not part of a resume stream's numbering (section
    /// 7: its own lines, keep-alives, a host's connect lines, frames sent
    /// again on a resume).
    SendUncounted {
        to: Token,
        text: String,
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
    /// Store what the session keeps (`SessionCore::stored`): its record, and
    /// what it still owes other objects. Nothing left: the storage is dropped.
    Persist,
    /// Forget the queue (the session ended).
    EraseQueue,
    /// Add a line to the queue for the absent host. `counted` lines count
    /// against the bound; link lines do not.
    Enqueue {
        line: String,
        source: QueueSource,
        bytes: usize,
    },
    /// Send the queue's rows after `after` to `to` in order, then delete them.
    /// `numbered`: `to` is a resume socket; hand the lines back
    /// (`Input::Replayed`) so they are numbered and kept.
    Replay {
        to: Token,
        after: u64,
        bytes: usize,
        lines: usize,
        notices: usize,
        numbered: bool,
    },
    /// Store these resume streams (`None`: delete), each under `stream:<key>`.
    SaveStreams(Vec<(String, Option<crate::stream::Stream>)>),
    /// Call another object; its answer comes back as `Input::Answer { id }`.
    Call {
        id: CallId,
        to: Peer,
        body: CallBody,
    },
    SetAlarm(Option<f64>),
    Respond(Answer),
    Log(Event),
}

pub(super) type Out<'a> = Vec<Effect<'a>>;
