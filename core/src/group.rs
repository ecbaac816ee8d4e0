//! A session's side of matchmaking (PROTOCOL.md section 4), as stored in its
//! record: the search it registered, the link to its master or its slaves, and
//! the frozen roster that fixes its id space while it searches or is linked.
//!
//! Id spaces. A master's own clients keep their ids. Each slave occupies a
//! contiguous range `offset+1 ..= offset+span` of the master's id space, where
//! `span` is the slave's client count when it froze. A slave's client is known
//! to the master by `offset + rank`, its rank (1-based) among the slave's
//! frozen roster: with the usual roster `1..=s` that is `offset + n`, exactly
//! the protocol's example; a roster with gaps (a client left before the search)
//! is compacted so ranges never overlap.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::wire::JoinOptions;

/// A session's matchmaking state, kept in its `SessionRecord`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Group {
    /// While searching or linked, no new clients are let in: the ids that were
    /// connected at `/join-session` (ascending). Only those may come back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frozen: Option<Vec<u32>>,
    /// Format 1 stored the frozen size as the highest id; read, never written.
    #[serde(default, skip_serializing)]
    frozen_span: Option<u32>,
    /// The search this session has registered with the Matchmaker.
    #[serde(default)]
    pub search: Option<JoinOptions>,
    /// Set while this session is a slave.
    #[serde(default)]
    pub master: Option<MasterLink>,
    /// Set while this session is a master: its slaves in order of joining.
    #[serde(default)]
    pub slaves: Vec<SlaveLink>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MasterLink {
    pub sid: String,
    /// Where this session's clients start in the master's id space.
    pub offset: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlaveLink {
    pub sid: String,
    pub offset: u32,
    pub span: u32,
    /// The slave's connected clients, by their ids in the master's space: what
    /// the master's host has been told with `connected:` and not yet with
    /// `disconnected:`.
    #[serde(default)]
    pub clients: BTreeSet<u32>,
}

impl SlaveLink {
    pub fn holds(&self, n: u32) -> bool {
        n > self.offset && n <= self.offset + self.span
    }
}

impl Group {
    /// Upgrades a group read from an older stored format.
    pub fn upgrade(&mut self) {
        if let Some(span) = self.frozen_span.take() {
            self.frozen.get_or_insert_with(|| (1..=span).collect());
        }
    }

    pub fn is_linked(&self) -> bool {
        self.master.is_some() || !self.slaves.is_empty()
    }

    pub fn is_frozen(&self) -> bool {
        self.frozen.is_some()
    }

    /// Whether a client with this id may come back while frozen.
    pub fn admits(&self, id: u32) -> bool {
        self.frozen.as_ref().is_none_or(|ids| ids.contains(&id))
    }

    /// The id the master's host knows this session's client `n` by.
    pub fn id_at_master(&self, n: u32) -> Option<(&str, u32)> {
        let master = self.master.as_ref()?;
        let rank = match &self.frozen {
            Some(ids) => ids.iter().position(|&id| id == n)? as u32 + 1,
            None => n,
        };
        Some((master.sid.as_str(), master.offset + rank))
    }

    /// This (slave) session's client at `rank`, as the master addressed it.
    pub fn client_at_rank(&self, rank: u32) -> Option<u32> {
        match &self.frozen {
            Some(ids) => ids.get(rank.checked_sub(1)? as usize).copied(),
            None => Some(rank),
        }
    }

    /// The slave that holds master id `n`, if any.
    pub fn slave_holding(&self, n: u32) -> Option<&SlaveLink> {
        self.slaves.iter().find(|s| s.holds(n))
    }

    pub fn slave_mut(&mut self, sid: &str) -> Option<&mut SlaveLink> {
        self.slaves.iter_mut().find(|s| s.sid == sid)
    }

    /// Every slave client id the master's host can address.
    pub fn slave_clients(&self) -> impl Iterator<Item = u32> + '_ {
        self.slaves.iter().flat_map(|s| s.clients.iter().copied())
    }

    /// Admits clients again once the session neither searches nor is linked.
    pub fn thaw_if_idle(&mut self) {
        if self.search.is_none() && !self.is_linked() {
            self.frozen = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_translate_both_ways() {
        let mut g = Group { frozen: Some(vec![2, 5]), ..Default::default() };
        g.master = Some(MasterLink { sid: "m".into(), offset: 3 });
        assert_eq!(g.id_at_master(2), Some(("m", 4)));
        assert_eq!(g.id_at_master(5), Some(("m", 5)));
        assert_eq!(g.id_at_master(1), None);
        assert_eq!(g.client_at_rank(2), Some(5));
        assert_eq!(g.client_at_rank(0), None);
        assert_eq!(g.client_at_rank(3), None);
        assert!(g.admits(5) && !g.admits(1));
    }

    #[test]
    fn the_first_stored_format_is_upgraded() {
        let old = r#"{"frozen_span":3,"search":null,"master":{"sid":"m","offset":2},"slaves":[{"sid":"s","offset":4,"span":1}]}"#;
        let mut g: Group = serde_json::from_str(old).unwrap();
        g.upgrade();
        assert_eq!(g.frozen, Some(vec![1, 2, 3]));
        assert_eq!(g.id_at_master(3), Some(("m", 5)));
        assert!(g.slaves[0].clients.is_empty());
        assert!(!serde_json::to_string(&g).unwrap().contains("frozen_span"));
    }
}
