//! The Matchmaker's tables: one row per search, per reporting session, and
//! the arrival counter.

use worker::{SqlStorage, SqlStorageValue, State};

use crate::log::emit_event;
use askutron_core::journal::{Event, Level};
use askutron_core::matchmaker::Search;
use askutron_core::stats::SessionCounts;

const MATCHMAKER_SCHEMA: [&str; 3] = [
    "CREATE TABLE IF NOT EXISTS searches (sid TEXT PRIMARY KEY, search TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS stats (sid TEXT PRIMARY KEY, hosts INTEGER, clients INTEGER, players INTEGER)",
    "CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER)",
];

/// The Matchmaker's storage: one row per search, per reporting session, and
/// the arrival counter.
pub struct MatchmakerStore {
    sql: SqlStorage,
    log_level: Level,
}

/// What the Matchmaker reads back after a wake-up.
pub struct MatchmakerState {
    pub searches: Vec<Search>,
    pub next_seq: u64,
    pub stats: Vec<(String, SessionCounts)>,
}

impl MatchmakerStore {
    pub fn new(state: &State, log_level: Level) -> Self {
        MatchmakerStore { sql: state.storage().sql(), log_level }
    }

    pub fn delete_search(&self, sid: String) {
        self.exec("DELETE FROM searches WHERE sid = ?", vec![sid.into()]);
    }

    pub fn save_seq(&self, seq: u64) {
        self.exec("INSERT OR REPLACE INTO meta (k, v) VALUES ('next_seq', ?)", vec![SqlStorageValue::from(seq as i64)]);
    }

    pub fn exec(&self, query: &str, bindings: Vec<SqlStorageValue>) {
        if let Err(e) = self.sql.exec(query, Some(bindings)) {
            emit_event(
                self.log_level,
                &Event::error("storage_error").with("op", "matchmaker").with("error", e.to_string()),
            );
        }
    }

    pub fn save_search(&self, search: &Search) {
        let json = serde_json::to_string(search).expect("a search serialises");
        self.exec(
            "INSERT OR REPLACE INTO searches (sid, search) VALUES (?, ?)",
            vec![search.sid.clone().into(), json.into()],
        );
    }

    pub fn save_stats(&self, sid: String, counts: SessionCounts) {
        if counts.is_zero() {
            return self.exec("DELETE FROM stats WHERE sid = ?", vec![sid.into()]);
        }
        let n = |x: u32| SqlStorageValue::from(x as i64);
        self.exec(
            "INSERT OR REPLACE INTO stats (sid, hosts, clients, players) VALUES (?, ?, ?, ?)",
            vec![sid.into(), n(counts.hosts), n(counts.clients), n(counts.players)],
        );
    }

    /// The rows a query reads; a storage error is logged, not hidden.
    fn rows<T: serde::de::DeserializeOwned>(&self, query: &str) -> Vec<T> {
        self.sql.exec(query, None).and_then(|c| c.to_array::<T>()).unwrap_or_else(|e| {
            emit_event(
                self.log_level,
                &Event::error("storage_error").with("op", "matchmaker read").with("error", e.to_string()),
            );
            Vec::new()
        })
    }

    /// Reads the pool and the figures back after a wake-up.
    pub fn load(&self) -> MatchmakerState {
        let sql = &self.sql;
        for ddl in MATCHMAKER_SCHEMA {
            if let Err(e) = sql.exec(ddl, None) {
                emit_event(
                    self.log_level,
                    &Event::error("storage_error").with("op", "schema").with("error", e.to_string()),
                );
            }
        }
        #[derive(serde::Deserialize)]
        struct SearchRow {
            search: String,
        }
        #[derive(serde::Deserialize)]
        struct SeqRow {
            v: i64,
        }
        #[derive(serde::Deserialize)]
        struct StatsRow {
            sid: String,
            hosts: i64,
            clients: i64,
            players: i64,
        }
        let searches = self
            .rows::<SearchRow>("SELECT search FROM searches")
            .into_iter()
            .filter_map(|row| match serde_json::from_str::<Search>(&row.search) {
                Ok(search) => Some(search),
                Err(e) => {
                    let event =
                        Event::error("storage_error").with("op", "unreadable search").with("error", e.to_string());
                    emit_event(self.log_level, &event);
                    None
                }
            })
            .collect();
        let next_seq = self.rows::<SeqRow>("SELECT v FROM meta WHERE k = 'next_seq'").first().map_or(0, |r| r.v as u64);
        let stats = self
            .rows::<StatsRow>("SELECT sid, hosts, clients, players FROM stats")
            .into_iter()
            .map(|r| {
                let counts =
                    SessionCounts { hosts: r.hosts as u32, clients: r.clients as u32, players: r.players as u32 };
                (r.sid, counts)
            })
            .collect();
        MatchmakerState { searches, next_seq, stats }
    }
}
