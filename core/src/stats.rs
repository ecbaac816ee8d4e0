//! Relay-wide figures for `/stats`. Each session reports its own absolute
//! counts now and then (batched on its alarm, never per event) to one of the
//! leaf aggregators, chosen by a hash of its id; the leaves pass their totals
//! to the root (`aggregator`). Absolute reports make a lost or repeated
//! report harmless: the next one sets the figure right.

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

/// The leaf aggregator a session reports to: FNV-1a of its id, so every
/// version of the relay picks the same one for the same `AGGREGATOR_LEAVES`.
pub fn leaf_of(sid: &str, leaves: u32) -> u32 {
    let hash = sid.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
    (hash % leaves.max(1) as u64) as u32
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

/// Figures reach the aggregator at most this long after they change.
pub const STATS_DELAY_MS: f64 = 1_000.0;
/// A change reaches `/stats` within this long: a [`STATS_DELAY_MS`] at each
/// of the three hops (session to leaf, leaf to branch, branch to root) and
/// the calls' own time; PROTOCOL.md section 4 allows 5 s.
pub const STATS_LAG_MS: f64 = 4.0 * STATS_DELAY_MS;
/// An aggregator forgets figures after this long without a report ...
pub const STATS_LEASE_MS: f64 = 30.0 * 60_000.0;
/// ... so whoever counts anything reports again after this long.
pub const STATS_RENEW_MS: f64 = STATS_LEASE_MS / 3.0;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_reaches_stats_within_the_protocols_five_seconds() {
        assert!(STATS_LAG_MS <= 5_000.0);
    }

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
    fn leaves_are_spread_and_stable() {
        assert_eq!(leaf_of("room-1", 1), 0);
        assert_eq!(leaf_of("room-1", 32), leaf_of("room-1", 32));
        let used: std::collections::BTreeSet<u32> = (0..1000).map(|i| leaf_of(&format!("s{i}"), 32)).collect();
        assert_eq!(used.len(), 32);
    }
}
