//! Operator settings (PROTOCOL.md section 6). Read from Worker variables at run
//! time; the defaults below are the protocol's.

use crate::log::Level;

/// Relay settings with the protocol's defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// Keep-alive period, milliseconds.
    pub keep_alive_ms: f64,
    /// How long a session waits for its host, milliseconds.
    pub reconnect_ms: f64,
    /// Clients per session and per linked group.
    pub max_clients: u32,
    /// Frames a client socket may send per second, sustained (token bucket
    /// refill). A host may send `max_clients` times as many: it talks to all.
    pub rate_per_second: f64,
    /// Frames a client socket may send in a burst (token bucket size); a
    /// host's burst is twice this (a burst to all its clients at once fits,
    /// and a host's flood is still cut off within about a second).
    pub rate_burst: f64,
    /// Bytes a client socket may send per second, sustained; a host may send
    /// `max_clients` times as many.
    pub rate_bytes_per_second: f64,
    /// Bytes a client socket may send in a burst; a host's is `max_clients`
    /// times this.
    pub rate_bytes_burst: f64,
    /// Searches the Matchmaker holds at once; more are refused.
    pub max_searches: usize,
    /// Leaf aggregators the sessions report their figures to (by a hash of
    /// their id). Each passes its totals to its branch (one per 32 leaves),
    /// each branch to the root, at most once a second. A leaf takes about
    /// 0.02 calls a second per session it counts: 128 leaves keep every
    /// aggregator near 30 calls a second at 100,000 sessions (`npm run
    /// scale`), while a small relay wakes few of them (each leaf is an object
    /// that a report wakes when it has gone cold). Up to 1,024.
    pub aggregators: u32,
    /// Least important log event written (`LOG_LEVEL`, default `info`).
    pub log_level: Level,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            keep_alive_ms: 30_000.0,
            reconnect_ms: 120_000.0,
            max_clients: 8,
            // A 60 Hz game sends 60 frames/s per player: well inside 200/s,
            // with 500 frames of slack for a catch-up burst (or a test's
            // burst of messages). A flood at the relay's processing speed
            // (thousands/s) empties the bucket in a fraction of a second, so
            // the abuser is cut off before the runtime's backlog grows.
            rate_per_second: 200.0,
            rate_burst: 500.0,
            // Bytes: what a receiver that does not read can be made to hold
            // (the runtime buffers unsent frames without limit, and the relay
            // cannot see how many). 1 MiB/s sustained and a 4 MiB burst per
            // client is far beyond a game's state updates.
            rate_bytes_per_second: 1024.0 * 1024.0,
            rate_bytes_burst: 4.0 * 1024.0 * 1024.0,
            max_searches: 10_000,
            // The load model (`npm run scale`) and the bench size it: at
            // 100,000 sessions a leaf took 90 calls a second (p99) with 32
            // leaves, 28 with 128, 6 with 1,024; but under `wrangler dev` the
            // bench's 600 sessions woke some 450 leaves with 1,024, and
            // workerd's memory per socket grew 15% (5% with 32).
            aggregators: 128,
            log_level: Level::DEFAULT,
        }
    }
}

/// One socket's rate limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub per_second: f64,
    pub burst: f64,
    pub bytes_per_second: f64,
    pub bytes_burst: f64,
}

/// Highest `AGGREGATOR_LEAVES` accepted: 32 branches of 32 leaves, so the
/// root never has more than 32 branches below it.
pub const MAX_AGGREGATORS: u32 = crate::aggregator::FANOUT * crate::aggregator::FANOUT;

/// Highest `MAX_CLIENTS` accepted: client ids must stay readable and a linked
/// group's id space small.
pub const MAX_CLIENTS_LIMIT: u32 = 1000;

impl Settings {
    /// The rate limit of a host socket (`host`) or a client socket.
    pub fn limits(&self, host: bool) -> Limits {
        let scale = if host { self.max_clients as f64 } else { 1.0 };
        Limits {
            per_second: self.rate_per_second * scale,
            burst: self.rate_burst * if host { 2.0 } else { 1.0 },
            bytes_per_second: self.rate_bytes_per_second * scale,
            bytes_burst: self.rate_bytes_burst * scale,
        }
    }

    /// Builds settings from a variable lookup. A value that does not parse, or
    /// is out of range, keeps the default: a typo must not take the relay down.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Settings {
        let d = Settings::default();
        let seconds = |name: &str, default_ms: f64| {
            var(name)
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|s| s.is_finite() && *s > 0.0)
                .map_or(default_ms, |s| s * 1000.0)
        };
        let positive = |name: &str, default: f64| {
            var(name)
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|x| x.is_finite() && *x > 0.0)
                .unwrap_or(default)
        };
        Settings {
            keep_alive_ms: seconds("KEEP_ALIVE_SECONDS", d.keep_alive_ms),
            reconnect_ms: seconds("RECONNECT_SECONDS", d.reconnect_ms),
            max_clients: var("MAX_CLIENTS")
                .and_then(|v| v.trim().parse::<u32>().ok())
                .filter(|n| (1..=MAX_CLIENTS_LIMIT).contains(n))
                .unwrap_or(d.max_clients),
            rate_per_second: positive("RATE_LIMIT_PER_SECOND", d.rate_per_second),
            rate_burst: positive("RATE_LIMIT_BURST", d.rate_burst),
            rate_bytes_per_second: positive("RATE_LIMIT_BYTES_PER_SECOND", d.rate_bytes_per_second),
            rate_bytes_burst: positive("RATE_LIMIT_BYTES_BURST", d.rate_bytes_burst),
            max_searches: var("MAX_SEARCHES")
                .and_then(|v| v.trim().parse::<usize>().ok())
                .filter(|n| *n > 0)
                .unwrap_or(d.max_searches),
            aggregators: var("AGGREGATOR_LEAVES")
                .and_then(|v| v.trim().parse::<u32>().ok())
                .filter(|n| (1..=MAX_AGGREGATORS).contains(n))
                .unwrap_or(d.aggregators),
            log_level: Level::from_var(var("LOG_LEVEL").as_deref()),
        }
    }
}

/// `ALLOWED_ORIGINS`: which browser origins may open sockets. Unset, empty or
/// `*` allows any. Otherwise a comma-separated list of origins as browsers
/// send them (`https://game.example`, `http://localhost:8080`); entries are
/// trimmed, a trailing `/` is ignored and scheme and host compare without
/// regard to case. A request without an `Origin` header (a game, a server,
/// a command-line client) is always allowed: the check is about web pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedOrigins {
    Any,
    Only(Vec<String>),
}

impl AllowedOrigins {
    pub fn from_var(value: Option<&str>) -> AllowedOrigins {
        let list: Vec<String> = value
            .unwrap_or("")
            .split(',')
            .map(|o| o.trim().trim_end_matches('/').to_ascii_lowercase())
            .filter(|o| !o.is_empty())
            .collect();
        if list.is_empty() || list.iter().any(|o| o == "*") {
            AllowedOrigins::Any
        } else {
            AllowedOrigins::Only(list)
        }
    }

    /// Whether a request with this `Origin` header (or none) may go on.
    pub fn allows(&self, origin: Option<&str>) -> bool {
        match (self, origin) {
            (AllowedOrigins::Any, _) | (_, None) => true,
            (AllowedOrigins::Only(list), Some(origin)) => {
                let origin = origin.trim().trim_end_matches('/');
                list.iter().any(|o| o.eq_ignore_ascii_case(origin))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_protocols() {
        let s = Settings::from_vars(|_| None);
        assert_eq!(s.keep_alive_ms, 30_000.0);
        assert_eq!(s.reconnect_ms, 120_000.0);
        assert_eq!(s.max_clients, 8);
    }

    #[test]
    fn variables_override_and_bad_values_fall_back() {
        let s = Settings::from_vars(|k| match k {
            "KEEP_ALIVE_SECONDS" => Some("0.5".into()),
            "RECONNECT_SECONDS" => Some("nope".into()),
            "MAX_CLIENTS" => Some("3".into()),
            _ => None,
        });
        assert_eq!(s.keep_alive_ms, 500.0);
        assert_eq!(s.reconnect_ms, 120_000.0);
        assert_eq!(s.max_clients, 3);
        let s = Settings::from_vars(|k| (k == "MAX_CLIENTS").then(|| "0".into()));
        assert_eq!(s.max_clients, 8);
    }

    #[test]
    fn log_level_defaults_to_info() {
        assert_eq!(Settings::from_vars(|_| None).log_level, Level::Info);
        let s = Settings::from_vars(|k| (k == "LOG_LEVEL").then(|| "debug".into()));
        assert_eq!(s.log_level, Level::Debug);
        let s = Settings::from_vars(|k| (k == "LOG_LEVEL").then(|| "chatty".into()));
        assert_eq!(s.log_level, Level::Info);
    }

    #[test]
    fn origins_default_to_any() {
        for unset in [None, Some(""), Some(" , "), Some("*"), Some("https://a.example, *")] {
            let o = AllowedOrigins::from_var(unset);
            assert_eq!(o, AllowedOrigins::Any, "{unset:?}");
            assert!(o.allows(Some("https://evil.example")));
            assert!(o.allows(None));
        }
    }

    #[test]
    fn listed_origins_only_and_no_origin_always() {
        let o = AllowedOrigins::from_var(Some(" https://Game.example/ ,http://localhost:8080"));
        assert!(o.allows(Some("https://game.example")));
        assert!(o.allows(Some("https://GAME.example")));
        assert!(o.allows(Some("http://localhost:8080")));
        assert!(o.allows(None));
        assert!(!o.allows(Some("http://game.example")));
        assert!(!o.allows(Some("https://game.example.evil")));
        assert!(!o.allows(Some("http://localhost:8081")));
        assert!(!o.allows(Some("null")));
        assert!(!o.allows(Some("")));
    }
}
