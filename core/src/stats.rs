//! Relay-wide figures for `/stats`. Each session reports its own absolute
//! counts now and then (batched on its alarm, never per event); the
//! Matchmaker sums them. Absolute reports make a lost or repeated report
//! harmless: the next one sets the figure right.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One session's share of the relay-wide figures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionCounts {
    /// 1 while the session's host is connected.
    pub hosts: u32,
    /// Client sockets connected.
    pub clients: u32,
    /// Clients in the session while its host is connected.
    pub players: u32,
}

impl SessionCounts {
    pub fn new(host_connected: bool, clients: u32) -> Self {
        SessionCounts { hosts: host_connected as u32, clients, players: if host_connected { clients } else { 0 } }
    }

    pub fn is_zero(&self) -> bool {
        *self == SessionCounts::default()
    }
}

/// The `/stats` answer. Field order is the protocol's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RelayStats {
    pub num_hosts_online: u64,
    pub num_hosts_looking_for_session: u64,
    pub num_clients_online: u64,
    pub num_players: u64,
}

impl RelayStats {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("plain numbers always serialise")
    }
}

/// Latest counts per session and their running totals.
#[derive(Debug, Clone, Default)]
pub struct StatsTable {
    sessions: BTreeMap<String, SessionCounts>,
    totals: SessionCounts64,
}

#[derive(Debug, Clone, Copy, Default)]
struct SessionCounts64 {
    hosts: u64,
    clients: u64,
    players: u64,
}

impl StatsTable {
    /// Records a session's report; a zero report forgets the session.
    pub fn report(&mut self, sid: &str, counts: SessionCounts) {
        let old =
            if counts.is_zero() { self.sessions.remove(sid) } else { self.sessions.insert(sid.to_string(), counts) }
                .unwrap_or_default();
        self.totals.hosts = self.totals.hosts + counts.hosts as u64 - old.hosts as u64;
        self.totals.clients = self.totals.clients + counts.clients as u64 - old.clients as u64;
        self.totals.players = self.totals.players + counts.players as u64 - old.players as u64;
    }

    pub fn snapshot(&self, looking: usize) -> RelayStats {
        RelayStats {
            num_hosts_online: self.totals.hosts,
            num_hosts_looking_for_session: looking as u64,
            num_clients_online: self.totals.clients,
            num_players: self.totals.players,
        }
    }

    pub fn sessions(&self) -> impl Iterator<Item = (&String, &SessionCounts)> {
        self.sessions.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_exactly_the_protocols() {
        let s =
            RelayStats { num_hosts_online: 1, num_hosts_looking_for_session: 2, num_clients_online: 3, num_players: 4 };
        assert_eq!(
            s.to_json(),
            r#"{"numHostsOnline":1,"numHostsLookingForSession":2,"numClientsOnline":3,"numPlayers":4}"#
        );
    }

    #[test]
    fn players_only_count_with_a_host() {
        assert_eq!(SessionCounts::new(false, 3), SessionCounts { hosts: 0, clients: 3, players: 0 });
        assert_eq!(SessionCounts::new(true, 3), SessionCounts { hosts: 1, clients: 3, players: 3 });
    }

    #[test]
    fn reports_replace_and_zero_forgets() {
        let mut t = StatsTable::default();
        t.report("a", SessionCounts::new(true, 2));
        t.report("b", SessionCounts::new(false, 1));
        t.report("a", SessionCounts::new(true, 3));
        assert_eq!(
            t.snapshot(1),
            RelayStats { num_hosts_online: 1, num_hosts_looking_for_session: 1, num_clients_online: 4, num_players: 3 }
        );
        t.report("a", SessionCounts::default());
        t.report("b", SessionCounts::default());
        assert_eq!(t.snapshot(0), RelayStats::default());
        assert_eq!(t.sessions().count(), 0);
    }
}
