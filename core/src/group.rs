//! A session's side of matchmaking (PROTOCOL.md section 4), as stored in its
//! record: the search it registered, the link to its master or its slaves
//! (with each link's unacknowledged durable messages), and the frozen roster
//! that fixes its id space while it searches or is linked.
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

use crate::calls::LinkId;
use crate::channel::Pending;
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
    /// The search this session is in, as its host asked for it.
    #[serde(default)]
    pub search: Option<JoinOptions>,
    /// Counts this session's `/join-session`s: names the search to the
    /// Matchmaker, so a late or repeated call about an older one changes nothing.
    #[serde(default)]
    pub search_epoch: u64,
    /// What the Matchmaker has acknowledged: `(epoch, searching)`. While it
    /// differs from the search above, the session tells it again.
    #[serde(default)]
    pub search_synced: Option<(u64, bool)>,
    /// When the Matchmaker last heard this search (its lease is renewed).
    #[serde(default)]
    pub search_renewed_at: f64,
    /// Set while this session is a slave (or about to be one).
    #[serde(default)]
    pub master: Option<MasterLink>,
    /// Set while this session is a master: its slaves in order of joining.
    #[serde(default)]
    pub slaves: Vec<SlaveLink>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MasterLink {
    pub sid: String,
    /// Where this session's clients start in the master's id space.
    pub offset: u32,
    /// The link's id (0 for links stored by 1.1.0, which had none).
    #[serde(default)]
    pub link: LinkId,
    /// The master took the link (its `Welcome` arrived). Until then the
    /// slave's host has heard nothing, and nothing is sent to the master.
    #[serde(default = "yes")]
    pub confirmed: bool,
    /// When the slave took the Matchmaker's offer (epoch ms).
    #[serde(default)]
    pub since: f64,
    /// The highest message of the master's this session applied.
    #[serde(default)]
    pub applied: u64,
    /// Durable messages to the master not yet acknowledged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outbox: Vec<Pending>,
    /// The clients (master ids) the master has been told are connected: a
    /// reset that closed sockets without a word is squared with it.
    #[serde(default)]
    pub told: BTreeSet<u32>,
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
    #[serde(default)]
    pub link: LinkId,
    /// The highest message of the slave's this session applied.
    #[serde(default)]
    pub applied: u64,
    /// Durable messages to the slave not yet acknowledged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outbox: Vec<Pending>,
}

/// A link that ended on this side: its partner still has to hear `Left`
/// (kept in the session's `Obligations`, which outlive the session).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClosingLink {
    pub peer: String,
    pub link: LinkId,
    pub outbox: Vec<Pending>,
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

    /// A slave whose master has confirmed the link.
    pub fn confirmed_master(&self) -> Option<&MasterLink> {
        self.master.as_ref().filter(|m| m.confirmed)
    }

    /// Whether a client with this id may come back while frozen.
    pub fn admits(&self, id: u32) -> bool {
        self.frozen.as_ref().is_none_or(|ids| ids.contains(&id))
    }

    /// The rank (1-based) of this session's client `n` in its frozen roster.
    pub fn rank_of(&self, n: u32) -> Option<u32> {
        match &self.frozen {
            Some(ids) => Some(ids.iter().position(|&id| id == n)? as u32 + 1),
            None => Some(n),
        }
    }

    /// The id the master's host knows this session's client `n` by.
    pub fn id_at_master(&self, n: u32) -> Option<(&str, u32)> {
        let master = self.master.as_ref()?;
        Some((master.sid.as_str(), master.offset + self.rank_of(n)?))
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

    pub fn slave_by_link(&self, link: LinkId) -> Option<&SlaveLink> {
        self.slaves.iter().find(|s| s.link == link)
    }

    pub fn slave_by_link_mut(&mut self, link: LinkId) -> Option<&mut SlaveLink> {
        self.slaves.iter_mut().find(|s| s.link == link)
    }

    /// Every slave client id the master's host can address.
    pub fn slave_clients(&self) -> impl Iterator<Item = u32> + '_ {
        self.slaves.iter().flat_map(|s| s.clients.iter().copied())
    }

    /// The id ranges the group uses, `(offset, span)`: the session's own
    /// (`0 ..= highest own id`) first, then its slaves'.
    pub fn used_ranges(&self, own: &[u32]) -> Vec<(u32, u32)> {
        let top = own.last().copied().unwrap_or(0);
        std::iter::once((0, top)).chain(self.slaves.iter().map(|s| (s.offset, s.span))).collect()
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
        g.master = Some(MasterLink {
            sid: "m".into(),
            offset: 3,
            link: 1,
            confirmed: true,
            since: 0.0,
            applied: 0,
            outbox: vec![],
            told: BTreeSet::new(),
        });
        assert_eq!(g.id_at_master(2), Some(("m", 4)));
        assert_eq!(g.id_at_master(5), Some(("m", 5)));
        assert_eq!(g.id_at_master(1), None);
        assert_eq!(g.client_at_rank(2), Some(5));
        assert_eq!(g.client_at_rank(0), None);
        assert_eq!(g.client_at_rank(3), None);
        assert!(g.admits(5) && !g.admits(1));
    }

    #[test]
    fn the_first_stored_formats_are_upgraded() {
        let old = r#"{"frozen_span":3,"search":null,"master":{"sid":"m","offset":2},"slaves":[{"sid":"s","offset":4,"span":1}]}"#;
        let mut g: Group = serde_json::from_str(old).unwrap();
        g.upgrade();
        assert_eq!(g.frozen, Some(vec![1, 2, 3]));
        assert_eq!(g.id_at_master(3), Some(("m", 5)));
        assert!(g.slaves[0].clients.is_empty());
        // A 1.1.0 link has no id and was confirmed when it was stored.
        assert!(g.confirmed_master().is_some() && g.slaves[0].link == 0);
        assert!(!serde_json::to_string(&g).unwrap().contains("frozen_span"));
    }
}
