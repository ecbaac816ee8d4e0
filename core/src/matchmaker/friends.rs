//! Steam friend lists as the Matchmaker caches them: by Steam id, with a
//! time to live, and bounded by the bytes they take (an isolate has 128 MB;
//! 10,000 lists of 250 friends would be about 150 MB as a count of entries
//! hides).

use std::collections::{HashMap, HashSet};

/// How long a friend list is trusted.
pub const FRIENDS_TTL_MS: f64 = 10.0 * 60_000.0;
/// After a failed Steam call, "no friends" is trusted this long.
pub const FRIENDS_FAILURE_TTL_MS: f64 = 30_000.0;
/// What the cached lists may take, in all: the ones that expire first go first.
pub const FRIENDS_CACHE_BYTES: usize = 8 * 1024 * 1024;

/// What one cached id costs beyond its text (hash-set slot, `String` header).
const PER_ID_BYTES: usize = 48;
/// What one cached list costs beyond its ids.
const PER_LIST_BYTES: usize = 128;

#[derive(Debug, Clone, Default)]
pub struct FriendsCache {
    lists: HashMap<String, (f64, HashSet<String>, usize)>,
    bytes: usize,
}

impl FriendsCache {
    /// The friends of `steam_id`, if known and fresh.
    pub fn get(&self, steam_id: &str, now: f64) -> Option<&HashSet<String>> {
        self.lists.get(steam_id).filter(|(expires, _, _)| *expires > now).map(|(_, friends, _)| friends)
    }

    pub fn insert(&mut self, now: f64, steam_id: String, ttl: f64, friends: HashSet<String>) {
        let bytes = PER_LIST_BYTES + steam_id.len() + friends.iter().map(|f| f.len() + PER_ID_BYTES).sum::<usize>();
        if bytes > FRIENDS_CACHE_BYTES {
            return;
        }
        if let Some((_, _, old)) = self.lists.remove(&steam_id) {
            self.bytes -= old;
        }
        if self.bytes + bytes > FRIENDS_CACHE_BYTES {
            self.lists.retain(|_, (expires, _, _)| *expires > now);
            self.bytes = self.lists.values().map(|(_, _, b)| b).sum();
        }
        while self.bytes + bytes > FRIENDS_CACHE_BYTES {
            let soonest = self
                .lists
                .iter()
                .min_by(|a, b| a.1 .0.total_cmp(&b.1 .0))
                .map(|(k, _)| k.clone())
                .expect("bytes are held, so lists are");
            let (_, _, freed) = self.lists.remove(&soonest).expect("just found");
            self.bytes -= freed;
        }
        self.bytes += bytes;
        self.lists.insert(steam_id, (now + ttl, friends, bytes));
    }

    pub fn len(&self) -> usize {
        self.lists.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lists.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_by_bytes_soonest_expiry_first() {
        let mut cache = FriendsCache::default();
        // Lists of 250 seventeen-digit ids, as Steam sends them.
        let list = |i: usize| (0..250).map(|f| format!("7656119{:010}", i * 1000 + f)).collect::<HashSet<_>>();
        for i in 0..2_000 {
            cache.insert(i as f64, i.to_string(), FRIENDS_TTL_MS, list(i));
            assert!(cache.bytes() <= FRIENDS_CACHE_BYTES);
        }
        assert!(cache.len() < 2_000 && cache.len() > 100, "{}", cache.len());
        assert!(cache.get("0", 2_000.0).is_none(), "the first to expire went first");
        assert!(cache.get("1999", 2_000.0).is_some());
        assert!(cache.get("1999", 1999.0 + FRIENDS_TTL_MS).is_none(), "expired");
    }
}
