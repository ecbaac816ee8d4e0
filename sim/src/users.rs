//! What the simulated users do: connect hosts and clients, send frames, close
//! sockets, and read what they received. A connect reaches its session at
//! once (the router's hop is not what the simulation is about).

use askutron_core::session::{Answer, Frame, Input};
use askutron_core::wire::{ClientParams, Close, HostParams};

use crate::sockets::{Sock, SockState};
use crate::world::Sim;

impl Sim {
    fn fresh_id(&mut self) -> String {
        self.next_id += 1;
        format!("s{}", self.next_id)
    }

    /// A host connect with a query like `id=x&secret=y&keepAlive=k`; then
    /// whatever follows from it settles.
    pub fn host(&mut self, query: &str) -> Result<Sock, (u16, String)> {
        let result = self.host_unsettled(query);
        self.settle();
        result
    }

    pub fn host_unsettled(&mut self, query: &str) -> Result<Sock, (u16, String)> {
        let mut params = HostParams::from_query(pairs(query)).map_err(|e| (400, e.to_string()))?;
        let sid = params.id.clone().unwrap_or_else(|| self.fresh_id());
        params.id = Some(sid.clone());
        self.next_id += 1;
        let fresh_secret = format!("secret-{}", self.next_id);
        let answer = self.input(&sid, Input::HostConnect { params, fresh_secret });
        connected(sid, answer)
    }

    /// A client connect. A socket refused at once (4003) is `Ok` with token 0.
    pub fn client(&mut self, sid: &str, query: &str) -> Result<Sock, (u16, String)> {
        let result = self.client_unsettled(sid, query);
        self.settle();
        result
    }

    pub fn client_unsettled(&mut self, sid: &str, query: &str) -> Result<Sock, (u16, String)> {
        let params = ClientParams::from_query(pairs(query)).map_err(|e| (400, e.to_string()))?;
        let answer = self.input(sid, Input::ClientConnect { params });
        connected(sid.to_string(), answer)
    }

    /// A text frame, and whatever follows from it settles.
    pub fn send(&mut self, sock: &Sock, text: &str) {
        self.frame(sock, Frame::Text(text));
    }

    /// A text frame whose consequences (calls between objects) are left
    /// under way, for tests that interleave them with `step`.
    pub fn send_unsettled(&mut self, sock: &Sock, text: &str) {
        if self.heartbeat(sock, text) {
            return;
        }
        if self.is_open(sock) {
            self.input(&sock.sid, Input::Frame { socket: sock.token, frame: Frame::Text(text) });
        }
    }

    /// The runtime's auto-response (section 7): `␁ping` is answered `␁pong`
    /// without the object waking, and the time is noted for the object.
    fn heartbeat(&mut self, sock: &Sock, text: &str) -> bool {
        if text != askutron_core::wire::ext::PING || !self.is_open(sock) {
            return false;
        }
        let (now, events) = (self.now, self.events);
        let state = self.sessions.get_mut(&sock.sid).and_then(|s| s.sockets.get_mut(&sock.token)).expect("open");
        state.last_ping = Some(now);
        state.receive(askutron_core::wire::ext::PONG.to_string(), false, now, events);
        true
    }

    pub fn frame(&mut self, sock: &Sock, frame: Frame<'_>) {
        if let Frame::Text(text) = frame {
            if self.heartbeat(sock, text) {
                return;
            }
        }
        if self.is_open(sock) {
            self.input(&sock.sid, Input::Frame { socket: sock.token, frame });
        }
        self.settle();
    }

    /// The peer closes its socket.
    pub fn close(&mut self, sock: &Sock, code: u16) {
        self.close_unsettled(sock, code);
        self.settle();
    }

    pub fn close_unsettled(&mut self, sock: &Sock, code: u16) {
        let Some(state) = self.sessions.get_mut(&sock.sid).and_then(|s| s.sockets.get_mut(&sock.token)) else { return };
        if state.closed_by_peer || state.closed_by_reset {
            return;
        }
        // The runtime still lists a socket during its close event (an object
        // woken by it restores it), and not after.
        self.input(&sock.sid, Input::Closed { socket: sock.token, code });
        if let Some(state) = self.sessions.get_mut(&sock.sid).and_then(|s| s.sockets.get_mut(&sock.token)) {
            state.closed_by_peer = true;
        }
    }

    /// True while neither side has closed the socket.
    pub fn is_open(&self, sock: &Sock) -> bool {
        self.state(sock).is_some_and(SockState::is_open)
    }

    pub fn state(&self, sock: &Sock) -> Option<&SockState> {
        self.sessions.get(&sock.sid).and_then(|s| s.sockets.get(&sock.token))
    }

    /// Every frame the socket received since the last call.
    pub fn frames(&mut self, sock: &Sock) -> Vec<String> {
        let state =
            self.sessions.get_mut(&sock.sid).and_then(|s| s.sockets.get_mut(&sock.token)).expect("known socket");
        state.inbox.drain(..).map(|r| r.text).collect()
    }

    /// As `frames`, with when each arrived.
    pub fn received(&mut self, sock: &Sock) -> Vec<crate::sockets::Received> {
        let state =
            self.sessions.get_mut(&sock.sid).and_then(|s| s.sockets.get_mut(&sock.token)).expect("known socket");
        state.inbox.drain(..).collect()
    }

    /// The close frame the relay sent, if it closed the socket.
    pub fn closed(&self, sock: &Sock) -> Option<Close> {
        self.state(sock).and_then(|s| s.closed_by_relay)
    }

    /// The runtime drops the object's memory now (as after hibernation).
    pub fn evict_now(&mut self, sid: &str) {
        self.evict(sid);
    }
}

fn connected(sid: String, answer: Option<Answer>) -> Result<Sock, (u16, String)> {
    match answer {
        Some(Answer::Upgrade { socket }) => Ok(Sock { sid, token: socket }),
        Some(Answer::Text { status, body }) => Err((status, body)),
        None => panic!("a connect must be answered"),
    }
}

/// A query string's pairs, undecoded (tests write plain ones).
pub fn pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_string(), v.to_string())
        })
        .collect()
}
