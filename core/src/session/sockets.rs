//! The sockets a session holds: closing them, forgetting them, and what a
//! departure means (a client's host hears of it; a host's session waits).

use crate::calls::SlaveEvent;
use crate::journal::Event;
use crate::record::{Role, SocketInfo};
use crate::wire::{say, Close};

use super::*;

impl SessionCore {
    /// Marks a socket its peer closed, so that if the runtime still lists it
    /// after a wake-up it is not counted again.
    pub(super) fn mark_closed(&self, socket: Token, out: &mut Out<'_>) {
        if let Some(info) = self.sockets.get(&socket) {
            out.push(Effect::Attach { socket, info: SocketInfo { closed: true, ..info.clone() } });
        }
    }

    /// Drops a socket from the live set. `current`: it was the session's host,
    /// or the socket its client id belongs to (not one already replaced).
    pub(super) fn forget(&mut self, token: Token) -> Option<(SocketInfo, bool)> {
        let info = self.sockets.remove(&token)?;
        if info.keep_alive.is_some() {
            self.timers_dirty = true;
        }
        let current = match info.role {
            Role::Host { .. } => self.host.take_if(|h| *h == token).is_some(),
            Role::Client { id, .. } => {
                let current = self.clients.get(&id) == Some(&token);
                if current {
                    self.clients.remove(&id);
                }
                current
            }
        };
        Some((info, current))
    }

    /// Closes a socket the relay is done with, marking its attachment first so
    /// the runtime's later events for it are ignored, even after a wake-up.
    pub(super) fn close_socket(&mut self, token: Token, close: Close, out: &mut Out<'_>) -> Option<(SocketInfo, bool)> {
        let (mut info, current) = self.forget(token)?;
        info.closed = true;
        out.push(Effect::Attach { socket: token, info: info.clone() });
        out.push(Effect::Close { to: token, close });
        Some((info, current))
    }

    /// Closes a socket and accounts for its leaving (its host hears of a
    /// client, a host's session waits); the others carry on. The socket's
    /// role, if it was live.
    pub(super) fn close_and_depart(
        &mut self,
        now: f64,
        token: Token,
        close: Close,
        out: &mut Out<'_>,
    ) -> Option<&'static str> {
        let (info, current) = self.close_socket(token, close, out)?;
        self.departed(now, &info, current, out);
        Some(if info.is_host() { "host" } else { "client" })
    }

    /// Closes a socket for what it sent, and logs why.
    pub(super) fn refuse(&mut self, now: f64, token: Token, close: Close, out: &mut Out<'_>) {
        let Some(role) = self.close_and_depart(now, token, close, out) else { return };
        out.push(Effect::Log(
            Event::warn("socket_refused")
                .with("sid", self.sid())
                .with("role", role)
                .with("code", close.code)
                .with("reason", close.reason),
        ));
    }

    /// The peer's side of a socket is gone.
    pub(super) fn depart(&mut self, now: f64, socket: Token, out: &mut Out<'_>) {
        if let Some((info, current)) = self.forget(socket) {
            self.departed(now, &info, current, out);
        }
    }

    /// A socket is gone (closed by either side): a client's host hears of it,
    /// a host's session waits for a take-over. A socket that was already
    /// replaced (by a take-over or its uuid) was accounted for then.
    pub(super) fn departed(&mut self, now: f64, info: &SocketInfo, current: bool, out: &mut Out<'_>) {
        if !current {
            return;
        }
        match info.role {
            Role::Client { id, .. } => {
                self.announce(id, say::disconnected, SlaveEvent::Disconnected, out);
                self.stats_changed(now);
            }
            Role::Host { .. } => {
                if self.record.as_ref().is_some_and(|r| r.host_away_until.is_none()) {
                    self.host_left(now, out);
                }
            }
        }
    }
}

/// A socket token no socket of this object has had: past every token still
/// known (closed sockets the runtime holds until their TCP is down included),
/// and from the clock (1,000 a millisecond, far below 2^53), so a session made
/// after a wake-up never reuses one either. Nothing needs storing for it.
pub(super) fn new_token(last: &mut Token, now: f64) -> Token {
    let token = (*last + 1).max((now.max(0.0) as u64).saturating_mul(1000));
    *last = token;
    token
}
