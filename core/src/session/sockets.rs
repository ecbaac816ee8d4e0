//! The sockets a session holds: closing them, forgetting them, and what a
//! departure means (a client's host hears of it; a host's session waits).

use crate::journal::Event;
use crate::record::{Role, SocketInfo};
use crate::wire::Close;

use super::clients::Announcement;
use super::effects::Out;
use super::{Effect, SessionCore, Token};

impl SessionCore {
    /// The peer closed its socket: the close handshake is completed and the
    /// socket departs.
    pub(super) fn peer_closed(&mut self, now: f64, socket: Token, code: u16, out: &mut Out<'_>) {
        if self.sockets.contains_key(&socket) {
            self.mark_closed(socket, out);
            // 1005 and 1006 may not be sent in a close frame.
            let code = if code == 1005 || code == 1006 { 1000 } else { code };
            out.push(Effect::Close { to: socket, close: Close { code, reason: "bye" } });
            self.depart(now, socket, out);
        }
    }

    pub(super) fn peer_errored(&mut self, now: f64, socket: Token, out: &mut Out<'_>) {
        if self.sockets.contains_key(&socket) {
            self.mark_closed(socket, out);
            out.push(Effect::Close { to: socket, close: Close { code: 1011, reason: "socket error" } });
            self.depart(now, socket, out);
        }
    }

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
                self.announce(now, id, Announcement::Disconnected, out);
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
