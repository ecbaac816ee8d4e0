//! The Matchmaker's rules (PROTOCOL.md section 4) as pure data: the sessions
//! that are looking (`Pool`) and how two of them pair up.
//!
//! Client ids across a linked group: the master's own clients keep theirs; a
//! slave occupies a contiguous range `offset+1 ..= offset+span` of the master's
//! id space (`links` explains the translation). Ranges are handed out
//! lowest-first, which gives the protocol's "master count plus the earlier
//! slaves' counts" while slaves stay; when one leaves, the others keep their
//! ids and the freed range goes to the next slave that fits.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::wire::{JoinOptions, JoinRole};

/// A session looking for partners, as the Matchmaker keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Search {
    pub sid: String,
    pub role: JoinRole,
    pub private: bool,
    pub target: Option<String>,
    pub ghost_mode: bool,
    pub steam_user_id: Option<String>,
    /// Id ranges the session's group uses, `(offset, span)`; its own is
    /// `(0, highest own id)`, its slaves' follow.
    pub used: Vec<(u32, u32)>,
    /// The session's own client count (its frozen roster). Format 1 had
    /// none: then the own range's span is the count.
    #[serde(default)]
    pub own_clients: Option<u32>,
    /// Arrival order: earlier searches are matched first.
    #[serde(default)]
    pub seq: u64,
    /// The session's name for this search (its `/join-session` count).
    #[serde(default)]
    pub epoch: u64,
    /// The search leaves the pool at this time (epoch ms) unless renewed.
    #[serde(default)]
    pub expires: f64,
}

impl Search {
    pub fn new(sid: &str, options: &JoinOptions, used: Vec<(u32, u32)>, own_clients: u32) -> Self {
        Search {
            sid: sid.to_string(),
            role: options.role,
            private: options.private,
            target: options.target.clone(),
            ghost_mode: options.ghost_mode,
            steam_user_id: options.steam_user_id.clone(),
            used,
            own_clients: Some(own_clients),
            seq: 0,
            epoch: 0,
            expires: 0.0,
        }
    }

    /// Clients of the session itself: the span it takes as a slave.
    fn own_count(&self) -> u32 {
        self.own_clients.unwrap_or_else(|| self.used.first().map_or(0, |r| r.1))
    }

    /// Clients of the whole group: the session's own and its slaves'.
    fn group_count(&self) -> u32 {
        self.own_count() + self.used.iter().skip(1).map(|r| r.1).sum::<u32>()
    }

    fn has_slaves(&self) -> bool {
        self.used.len() > 1
    }

    /// Slaves the session leads, or is about to.
    fn slave_count(&self) -> u32 {
        self.used.len().saturating_sub(1) as u32
    }

    fn may_be_master(&self) -> bool {
        self.role != JoinRole::Slave && self.target.is_none()
    }

    /// A session that already leads slaves is never a slave itself.
    fn may_be_slave(&self) -> bool {
        self.role != JoinRole::Master && !self.has_slaves()
    }

    /// Lowest offset where `span` ids fit beside the ranges in use, within `max`.
    fn free_offset(&self, span: u32, max: u32) -> Option<u32> {
        let mut ranges = self.used.clone();
        ranges.sort_unstable();
        let mut candidate = 0;
        for (offset, len) in ranges {
            // A slave with no clients takes no ids; it goes after the others.
            if span > 0 && candidate + span <= offset {
                break;
            }
            candidate = candidate.max(offset + len);
        }
        (candidate + span <= max).then_some(candidate)
    }

    /// No slave fits any more: the group has `max` clients, or the master
    /// leads `max` slaves (a slave without clients counts too).
    fn is_full(&self, max: u32) -> bool {
        self.group_count() >= max || self.slave_count() >= max
    }
}

/// A link the Matchmaker made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Match {
    pub master: String,
    pub slave: String,
    /// Where the slave's clients start in the master's id space.
    pub offset: u32,
    pub span: u32,
}

/// Checks one pairing; `Some` with the link if `master` may take `slave`.
fn pair(master: &Search, slave: &Search, max: u32) -> Option<Match> {
    let compatible = master.sid != slave.sid
        && master.may_be_master()
        && slave.may_be_slave()
        && master.ghost_mode == slave.ghost_mode
        && (!master.private || slave.target.as_deref() == Some(master.sid.as_str()))
        && slave.target.as_deref().is_none_or(|t| t == master.sid);
    if !compatible {
        return None;
    }
    let span = slave.own_count();
    if master.group_count() + span > max || master.slave_count() >= max {
        return None;
    }
    // Ids may reach past `max` when the master's own ids have gaps; the
    // capacity rule is about client counts, checked above.
    let offset = master.free_offset(span, u32::MAX)?;
    Some(Match { master: master.sid.clone(), slave: slave.sid.clone(), offset, span })
}

/// Every session that is looking, by id.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Pool {
    pub searches: BTreeMap<String, Search>,
    pub next_seq: u64,
    /// Masters the last `search` filled (see `take_filled`); memory only.
    #[serde(skip)]
    filled: BTreeMap<String, Search>,
    /// Slaves the last `search` matched (see `take_matched`); memory only.
    #[serde(skip)]
    matched: BTreeMap<String, Search>,
}

impl Pool {
    pub fn len(&self) -> usize {
        self.searches.len()
    }

    pub fn is_empty(&self) -> bool {
        self.searches.is_empty()
    }

    pub fn remove(&mut self, sid: &str) -> Option<Search> {
        self.searches.remove(sid)
    }

    /// True if one more new search would exceed `cap`, counting `pending`
    /// searches that hold a place while they wait (for Steam); renewing one
    /// never does.
    pub fn is_full_for(&self, sid: &str, cap: usize, pending: usize) -> bool {
        !self.searches.contains_key(sid) && self.searches.len() + pending >= cap
    }

    /// A link the Matchmaker made could not be completed: the master's range
    /// for it is free again, if the master is still looking.
    pub fn free_range(&mut self, master: &str, offset: u32, span: u32) {
        if let Some(search) = self.searches.get_mut(master) {
            if let Some(pos) = search.used.iter().skip(1).position(|r| *r == (offset, span)) {
                search.used.remove(pos + 1);
            }
        }
    }

    /// Registers (or renews) a search and makes every match it allows.
    ///
    /// `friends` are the Steam ids that are friends of the new session's host;
    /// sessions whose host is one of them are tried first. Only the new
    /// session's pairings can be new: the others were already checked against
    /// each other when they arrived.
    pub fn search(&mut self, mut search: Search, friends: Option<&HashSet<String>>, max: u32) -> Vec<Match> {
        let sid = search.sid.clone();
        search.seq = match self.searches.get(&sid) {
            Some(existing) => existing.seq,
            None => {
                self.next_seq += 1;
                self.next_seq
            }
        };
        self.searches.insert(sid.clone(), search);
        self.rematch(&sid, friends, max)
    }

    /// Makes every match the search of `sid`, already in the pool, allows.
    pub fn rematch(&mut self, sid: &str, friends: Option<&HashSet<String>>, max: u32) -> Vec<Match> {
        let mut matches = Vec::new();
        while let Some(m) = self.best_pairing(sid, friends, max) {
            self.apply(&m, max);
            matches.push(m);
        }
        matches
    }

    fn best_pairing(&self, sid: &str, friends: Option<&HashSet<String>>, max: u32) -> Option<Match> {
        let new = self.searches.get(sid)?;
        let mut others: Vec<&Search> = self.searches.values().filter(|s| s.sid != sid).collect();
        let is_friend = |s: &Search| friends.is_some_and(|f| s.steam_user_id.as_ref().is_some_and(|id| f.contains(id)));
        // A session that asked for this one by id first (explicit intent beats
        // chance), then Steam friends, then arrival order.
        let wants_me = |s: &Search| s.target.as_deref() == Some(sid);
        others.sort_by_key(|s| (!wants_me(s), !is_friend(s), s.seq));
        // The one that waited longer leads when either could.
        others.into_iter().find_map(|waiting| pair(waiting, new, max).or_else(|| pair(new, waiting, max)))
    }

    pub fn contains(&self, sid: &str) -> bool {
        self.searches.contains_key(sid)
    }

    fn apply(&mut self, m: &Match, max: u32) {
        if let Some(slave) = self.searches.remove(&m.slave) {
            self.matched.insert(m.slave.clone(), slave);
        }
        if let Some(master) = self.searches.get_mut(&m.master) {
            master.used.push((m.offset, m.span));
            if master.is_full(max) {
                let full = self.searches.remove(&m.master).expect("just found");
                self.filled.insert(m.master.clone(), full);
            }
        }
    }

    /// A slave the last `search` matched, as it was: if its link falls
    /// through, it goes back in the pool in its place.
    pub fn take_matched(&mut self, slave: &str) -> Option<Search> {
        self.matched.remove(slave)
    }

    /// The lowest free range for `span` ids in a master's group, moving the
    /// one it held at `offset` (a link queued behind one that fell through
    /// takes the range that freed). `None` if the master is not in the pool.
    pub fn reassign(&mut self, master: &str, offset: u32, span: u32) -> Option<u32> {
        let search = self.searches.get_mut(master)?;
        let pos = search.used.iter().skip(1).position(|r| *r == (offset, span))? + 1;
        search.used.remove(pos);
        let fresh = search.free_offset(span, u32::MAX).unwrap_or(offset);
        search.used.insert(pos, (fresh, span));
        Some(fresh)
    }

    /// Searches whose lease ran out (their session stopped renewing them):
    /// removed, and returned.
    pub fn expire(&mut self, now: f64) -> Vec<Search> {
        let gone: Vec<String> =
            self.searches.values().filter(|s| s.expires > 0.0 && s.expires <= now).map(|s| s.sid.clone()).collect();
        gone.iter().filter_map(|sid| self.searches.remove(sid)).collect()
    }

    /// A master the last `search` removed because it was full, as it was then:
    /// if the link that filled it falls through, it goes back in the pool.
    pub fn take_filled(&mut self, master: &str) -> Option<Search> {
        self.filled.remove(master)
    }

    /// Puts back a master whose filling link fell through, without that
    /// link's range.
    pub fn restore(&mut self, mut search: Search, freed: (u32, u32)) {
        if let Some(pos) = search.used.iter().skip(1).position(|r| *r == freed) {
            search.used.remove(pos + 1);
        }
        self.searches.insert(search.sid.clone(), search);
    }

    /// Puts back a search whose match fell through, with its place in line.
    pub fn put_back(&mut self, search: Search) {
        self.searches.insert(search.sid.clone(), search);
    }
}

/// Reads a Steam Web API `ISteamUser/GetFriendList` answer into the set of
/// friends' Steam ids.
pub fn parse_friend_list(body: &str) -> Result<HashSet<String>, serde_json::Error> {
    #[derive(Deserialize)]
    struct Answer {
        friendslist: FriendsList,
    }
    #[derive(Deserialize)]
    struct FriendsList {
        #[serde(default)]
        friends: Vec<Friend>,
    }
    #[derive(Deserialize)]
    struct Friend {
        steamid: String,
    }
    let answer: Answer = serde_json::from_str(body)?;
    Ok(answer.friendslist.friends.into_iter().map(|f| f.steamid).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_has_a_cap_for_new_searches_only() {
        let mut pool = Pool::default();
        pool.search(search("a", JoinRole::Master, 1), None, 8);
        assert!(pool.is_full_for("b", 1, 0));
        assert!(!pool.is_full_for("a", 1, 0));
        assert!(!pool.is_full_for("b", 2, 0));
        assert!(pool.is_full_for("b", 2, 1));
    }

    #[test]
    fn steam_friend_lists_parse() {
        let body =
            r#"{"friendslist":{"friends":[{"steamid":"76561197960265731","relationship":"friend","friend_since":0}]}}"#;
        assert_eq!(parse_friend_list(body).unwrap(), HashSet::from(["76561197960265731".to_string()]));
        assert!(parse_friend_list(r#"{"friendslist":{}}"#).unwrap().is_empty());
        assert!(parse_friend_list("<html>").is_err());
    }

    fn search(sid: &str, role: JoinRole, span: u32) -> Search {
        Search::new(sid, &JoinOptions { role, ..Default::default() }, vec![(0, span)], span)
    }

    #[test]
    fn either_waits_then_leads() {
        let mut pool = Pool::default();
        assert!(pool.search(search("a", JoinRole::Either, 2), None, 8).is_empty());
        let m = pool.search(search("b", JoinRole::Either, 3), None, 8);
        assert_eq!(m, vec![Match { master: "a".into(), slave: "b".into(), offset: 2, span: 3 }]);
        // a keeps looking; b is done.
        assert!(pool.searches.contains_key("a") && !pool.searches.contains_key("b"));
    }

    #[test]
    fn second_slave_offset_counts_the_first() {
        let mut pool = Pool::default();
        pool.search(search("m", JoinRole::Master, 2), None, 8);
        pool.search(search("s1", JoinRole::Slave, 3), None, 8);
        let m = pool.search(search("s2", JoinRole::Slave, 2), None, 8);
        assert_eq!(m[0].offset, 5);
    }

    #[test]
    fn capacity_is_checked_across_the_group() {
        let mut pool = Pool::default();
        pool.search(search("m", JoinRole::Master, 4), None, 8);
        pool.search(search("s1", JoinRole::Slave, 3), None, 8);
        assert!(pool.search(search("s2", JoinRole::Slave, 2), None, 8).is_empty());
        assert_eq!(pool.search(search("s3", JoinRole::Slave, 1), None, 8).len(), 1);
        // Full now: the master stops looking, s2 keeps waiting.
        assert!(!pool.searches.contains_key("m"));
        assert!(pool.searches.contains_key("s2"));
    }

    #[test]
    fn masters_never_pair_with_masters_nor_slaves_with_slaves() {
        let mut pool = Pool::default();
        pool.search(search("m1", JoinRole::Master, 1), None, 8);
        assert!(pool.search(search("m2", JoinRole::Master, 1), None, 8).is_empty());
        pool.search(search("s1", JoinRole::Slave, 1), None, 8);
        assert!(pool.search(search("s2", JoinRole::Slave, 1), Some(&HashSet::new()), 8).len() == 1);
    }

    #[test]
    fn a_master_with_slaves_is_never_a_slave() {
        let mut pool = Pool::default();
        pool.search(search("a", JoinRole::Either, 1), None, 8);
        pool.search(search("b", JoinRole::Slave, 1), None, 8);
        // a leads b; c (either) must become a's slave, never the other way round.
        let m = pool.search(search("c", JoinRole::Either, 1), None, 8);
        assert_eq!((m[0].master.as_str(), m[0].slave.as_str()), ("a", "c"));
        let mut lone = Pool::default();
        let mut leader = search("a", JoinRole::Either, 1);
        leader.used.push((1, 1));
        lone.search(leader, None, 8);
        let m = lone.search(search("z", JoinRole::Master, 1), None, 8);
        assert!(m.is_empty());
    }

    #[test]
    fn ghost_mode_pools_are_separate() {
        let mut pool = Pool::default();
        let mut ghost = search("g", JoinRole::Master, 1);
        ghost.ghost_mode = true;
        pool.search(ghost, None, 8);
        assert!(pool.search(search("n", JoinRole::Slave, 1), None, 8).is_empty());
        let mut ghost_slave = search("gs", JoinRole::Slave, 1);
        ghost_slave.ghost_mode = true;
        assert_eq!(pool.search(ghost_slave, None, 8)[0].master, "g");
    }

    #[test]
    fn private_masters_only_by_id() {
        let mut pool = Pool::default();
        let mut private = search("p", JoinRole::Master, 1);
        private.private = true;
        pool.search(private, None, 8);
        assert!(pool.search(search("x", JoinRole::Slave, 1), None, 8).is_empty());
        let mut targeted = search("y", JoinRole::Slave, 1);
        targeted.target = Some("p".into());
        assert_eq!(pool.search(targeted, None, 8)[0].master, "p");
    }

    #[test]
    fn id_target_waits_for_that_session_only() {
        let mut pool = Pool::default();
        pool.search(search("other", JoinRole::Master, 1), None, 8);
        let mut targeted = search("y", JoinRole::Slave, 1);
        targeted.target = Some("foo".into());
        assert!(pool.search(targeted, None, 8).is_empty());
        let m = pool.search(search("foo", JoinRole::Either, 1), None, 8);
        assert_eq!((m[0].master.as_str(), m[0].slave.as_str()), ("foo", "y"));
    }

    #[test]
    fn friends_come_first() {
        let mut pool = Pool::default();
        let mut stranger = search("stranger", JoinRole::Master, 1);
        stranger.steam_user_id = Some("1".into());
        let mut friend = search("friend", JoinRole::Master, 1);
        friend.steam_user_id = Some("2".into());
        pool.search(stranger, None, 8);
        pool.search(friend, None, 8);
        let friends: HashSet<String> = ["2".to_string()].into();
        let m = pool.search(search("me", JoinRole::Slave, 1), Some(&friends), 8);
        assert_eq!(m[0].master, "friend");
        // Without a friend list, arrival order decides.
        let m = pool.search(search("me2", JoinRole::Slave, 1), None, 8);
        assert_eq!(m[0].master, "stranger");
    }

    #[test]
    fn freed_ranges_are_reused_lowest_first() {
        let s = Search { used: vec![(0, 2), (5, 2)], ..search("m", JoinRole::Master, 2) };
        assert_eq!(s.free_offset(3, 8), Some(2));
        assert_eq!(s.free_offset(4, 8), None);
        assert_eq!(s.free_offset(1, 8), Some(2));
        assert_eq!(s.free_offset(0, 8), Some(7));
    }

    #[test]
    fn many_concurrent_searches_never_overfill_or_double_lead() {
        let mut pool = Pool::default();
        let mut links: Vec<Match> = Vec::new();
        for i in 0..200u32 {
            let role = [JoinRole::Either, JoinRole::Master, JoinRole::Slave][(i % 3) as usize];
            links.extend(pool.search(search(&format!("s{i}"), role, i % 4), None, 8));
        }
        let masters: HashSet<&str> = links.iter().map(|m| m.master.as_str()).collect();
        let mut slaves = HashSet::new();
        for m in &links {
            assert!(slaves.insert(m.slave.as_str()), "{} joined twice", m.slave);
            assert!(!masters.contains(m.slave.as_str()), "{} is master and slave", m.slave);
        }
        for master in &masters {
            let own = links.iter().find(|m| &m.master == master).map(|_| ()).is_some();
            assert!(own);
            let used: u32 = links.iter().filter(|m| &m.master == master).map(|m| m.span).sum();
            let own_span: u32 = master[1..].parse::<u32>().unwrap() % 4;
            assert!(own_span + used <= 8, "{master} over capacity");
        }
    }
}
