//! Sockets as the simulated users hold them: what each received, and how it
//! was closed.

use std::collections::VecDeque;

use askutron_core::record::SocketInfo;
use askutron_core::session::Token;
use askutron_core::wire::Close;

/// A socket as a test holds it: its session and token.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sock {
    pub sid: String,
    pub token: Token,
}

/// One frame a socket received.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    pub text: String,
    /// Sent from the queue in a take-over's replay.
    pub replayed: bool,
    /// When (simulated epoch ms) ...
    pub at: f64,
    /// ... and in which event of the run (events at one time stay ordered).
    pub event: u64,
}

#[derive(Debug, Default, Clone)]
pub struct SockState {
    /// Frames not yet read by the test.
    pub inbox: VecDeque<Received>,
    /// Every frame ever received, in order (for invariants).
    pub history: Vec<Received>,
    pub attachment: Option<SocketInfo>,
    /// The close frame the relay sent, if any.
    pub closed_by_relay: Option<Close>,
    /// The peer closed it (the runtime no longer holds it).
    pub closed_by_peer: bool,
    /// The object was reset: the runtime closed the socket (code 1012).
    pub closed_by_reset: bool,
    /// Frames the relay sent after it had closed the socket (a bug).
    pub sent_after_close: usize,
    /// The last heartbeat (section 7) the runtime answered for it.
    pub last_ping: Option<f64>,
}

impl SockState {
    pub fn is_open(&self) -> bool {
        !self.closed_by_peer && self.closed_by_relay.is_none() && !self.closed_by_reset
    }

    pub fn receive(&mut self, text: String, replayed: bool, at: f64, event: u64) {
        self.receive_keeping(text, replayed, at, event, true);
    }

    /// As `receive`; `keep_history` false leaves `history` alone (a load
    /// model with many sockets reads only the inbox).
    pub fn receive_keeping(&mut self, text: String, replayed: bool, at: f64, event: u64, keep_history: bool) {
        if self.closed_by_relay.is_some() {
            self.sent_after_close += 1;
            return;
        }
        if !self.is_open() {
            // The frame left, but nobody is there any more.
            return;
        }
        let r = Received { text, replayed, at, event };
        if keep_history {
            self.history.push(r.clone());
        }
        self.inbox.push_back(r);
    }
}
