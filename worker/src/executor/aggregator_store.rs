//! An aggregator's table: one row per reporter (a session, a leaf, the
//! Matchmaker) with its figures and their lease. A failed write is logged;
//! the reporters' renewals and the leases repair what it leaves wrong.

use worker::{SqlStorage, SqlStorageValue, State};

use crate::log::emit_event;
use askutron_core::aggregator::{Entry, Role};
use askutron_core::journal::{Event, Level};

pub struct AggregatorStore {
    sql: SqlStorage,
    log_level: Level,
}

impl AggregatorStore {
    pub fn new(state: &State, log_level: Level) -> Self {
        AggregatorStore { sql: state.storage().sql(), log_level }
    }

    fn log(&self, op: &'static str, error: String) {
        emit_event(self.log_level, &Event::error("storage_error").with("op", op).with("error", error));
    }

    /// The object's role (stored at its first call) and its figures.
    pub fn load(&self) -> (Option<Role>, Vec<(String, Entry)>) {
        #[derive(serde::Deserialize)]
        struct Row {
            k: String,
            v: String,
        }
        let schema = "CREATE TABLE IF NOT EXISTS figures (k TEXT PRIMARY KEY, v TEXT NOT NULL); \
                      CREATE TABLE IF NOT EXISTS whoami (k TEXT PRIMARY KEY, name TEXT NOT NULL)";
        if let Err(e) = self.sql.exec(schema, None) {
            self.log("schema", e.to_string());
        }
        #[derive(serde::Deserialize)]
        struct Name {
            name: String,
        }
        let role = self
            .sql
            .exec("SELECT name FROM whoami WHERE k = 'role'", None)
            .and_then(|c| c.to_array::<Name>())
            .ok()
            .and_then(|rows| rows.into_iter().next())
            .and_then(|r| Role::from_name(&r.name));
        let rows = match self.sql.exec("SELECT k, v FROM figures", None).and_then(|c| c.to_array::<Row>()) {
            Ok(rows) => rows,
            Err(e) => {
                self.log("aggregator read", e.to_string());
                return (role, Vec::new());
            }
        };
        let entries = rows
            .into_iter()
            .filter_map(|r| match serde_json::from_str::<Entry>(&r.v) {
                Ok(entry) => Some((r.k, entry)),
                Err(e) => {
                    self.log("unreadable figures", e.to_string());
                    None
                }
            })
            .collect();
        (role, entries)
    }

    pub fn save_role(&self, role: Role) {
        let query = "INSERT OR REPLACE INTO whoami (k, name) VALUES ('role', ?)";
        if let Err(e) = self.sql.exec(query, vec![SqlStorageValue::from(role.name())]) {
            self.log("save role", e.to_string());
        }
    }

    /// Stores (or forgets) one reporter's figures; false if the write failed.
    pub fn save(&self, key: String, entry: Option<Entry>) -> bool {
        let result = match entry {
            Some(entry) => self.sql.exec(
                "INSERT OR REPLACE INTO figures (k, v) VALUES (?, ?)",
                vec![key.into(), SqlStorageValue::from(serde_json::to_string(&entry).expect("figures serialise"))],
            ),
            None => self.sql.exec("DELETE FROM figures WHERE k = ?", vec![key.into()]),
        };
        if let Err(e) = &result {
            self.log("save figures", e.to_string());
        }
        result.is_ok()
    }
}
