//! The Matchmaker's tables: one row per search in the pool, one per link
//! being announced (so a reset resumes it), and its counters. A failed write
//! is logged (an operator learns); the pool's leases and the sessions'
//! retries repair what it leaves wrong.

use worker::{SqlStorage, SqlStorageValue, State};

use crate::log::emit_event;
use askutron_core::calls::LinkId;
use askutron_core::journal::{Event, Level};
use askutron_core::matchmaker::{Job, Search};

const SCHEMA: [&str; 4] = [
    "CREATE TABLE IF NOT EXISTS searches (sid TEXT PRIMARY KEY, search TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS jobs (link INTEGER PRIMARY KEY, job TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER)",
    // 1.1.0 kept every session's figures here; the aggregators do now.
    "DROP TABLE IF EXISTS stats",
];

pub struct MatchmakerStore {
    sql: SqlStorage,
    log_level: Level,
}

/// What the Matchmaker reads back after a wake-up.
pub struct Loaded {
    pub searches: Vec<Search>,
    pub jobs: Vec<Job>,
    pub next_seq: u64,
    pub next_link: LinkId,
}

impl MatchmakerStore {
    pub fn new(state: &State, log_level: Level) -> Self {
        MatchmakerStore { sql: state.storage().sql(), log_level }
    }

    /// Runs a write; false (and a log line) if it failed.
    fn exec(&self, op: &'static str, query: &str, bindings: Vec<SqlStorageValue>) -> bool {
        match self.sql.exec(query, Some(bindings)) {
            Ok(_) => true,
            Err(e) => {
                emit_event(self.log_level, &Event::error("storage_error").with("op", op).with("error", e.to_string()));
                false
            }
        }
    }

    pub fn save_search(&self, search: &Search) -> bool {
        let json = serde_json::to_string(search).expect("a search serialises");
        let query = "INSERT OR REPLACE INTO searches (sid, search) VALUES (?, ?)";
        self.exec("save search", query, vec![search.sid.clone().into(), json.into()])
    }

    pub fn delete_search(&self, sid: String) -> bool {
        self.exec("delete search", "DELETE FROM searches WHERE sid = ?", vec![sid.into()])
    }

    pub fn save_job(&self, job: &Job) -> bool {
        let json = serde_json::to_string(job).expect("a job serialises");
        let query = "INSERT OR REPLACE INTO jobs (link, job) VALUES (?, ?)";
        self.exec("save job", query, vec![SqlStorageValue::from(job.link as i64), json.into()])
    }

    pub fn delete_job(&self, link: LinkId) -> bool {
        self.exec("delete job", "DELETE FROM jobs WHERE link = ?", vec![SqlStorageValue::from(link as i64)])
    }

    pub fn save_meta(&self, next_seq: u64, next_link: LinkId) -> bool {
        [("next_seq", next_seq), ("next_link", next_link)].into_iter().all(|(k, v)| {
            let query = "INSERT OR REPLACE INTO meta (k, v) VALUES (?, ?)";
            self.exec("save meta", query, vec![k.into(), SqlStorageValue::from(v as i64)])
        })
    }

    /// The rows a query reads, each parsed; a storage error or a row that
    /// does not parse is logged, not hidden.
    fn rows<R: serde::de::DeserializeOwned, T>(&self, query: &str, parse: impl Fn(R) -> Result<T, String>) -> Vec<T> {
        let rows = self.sql.exec(query, None).and_then(|c| c.to_array::<R>()).unwrap_or_else(|e| {
            let event = Event::error("storage_error").with("op", "matchmaker read").with("error", e.to_string());
            emit_event(self.log_level, &event);
            Vec::new()
        });
        rows.into_iter()
            .filter_map(|row| match parse(row) {
                Ok(value) => Some(value),
                Err(error) => {
                    emit_event(
                        self.log_level,
                        &Event::error("storage_error").with("op", "unreadable row").with("error", error),
                    );
                    None
                }
            })
            .collect()
    }

    /// Reads the pool, the announcements and the counters after a wake-up.
    pub fn load(&self) -> Loaded {
        for ddl in SCHEMA {
            if let Err(e) = self.sql.exec(ddl, None) {
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
        struct JobRow {
            job: String,
        }
        #[derive(serde::Deserialize)]
        struct MetaRow {
            k: String,
            v: i64,
        }
        let searches = self.rows("SELECT search FROM searches", |r: SearchRow| {
            serde_json::from_str(&r.search).map_err(|e| e.to_string())
        });
        let jobs =
            self.rows("SELECT job FROM jobs", |r: JobRow| serde_json::from_str(&r.job).map_err(|e| e.to_string()));
        let meta: Vec<(String, u64)> = self.rows("SELECT k, v FROM meta", |r: MetaRow| Ok((r.k, r.v as u64)));
        let get = |key: &str| meta.iter().find(|(k, _)| k == key).map_or(0, |(_, v)| *v);
        Loaded { searches, jobs, next_seq: get("next_seq"), next_link: get("next_link") }
    }
}
