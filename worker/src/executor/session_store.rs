//! A session's SQLite tables: its record (one row) and the queue for an
//! absent host. Synchronous SQL, so no other event slips in between the
//! core's decision and its record being written.

use std::cell::Cell;

use worker::{Result, SqlStorage, SqlStorageValue, State};

use askutron_core::record::SessionRecord;

/// A session's storage: its record (one row) and the queue for an absent host.
pub struct SessionStore {
    sql: SqlStorage,
    /// The tables exist (created at most once per incarnation).
    tables: Cell<bool>,
}

#[derive(serde::Deserialize)]
struct RecordRow {
    v: String,
}

#[derive(serde::Deserialize)]
struct QueueRow {
    line: String,
}

impl SessionStore {
    pub fn new(state: &State) -> Self {
        SessionStore { sql: state.storage().sql(), tables: Cell::new(false) }
    }

    /// The stored record, if the session exists. A session that never existed
    /// has no table, and reading must not create one: ids probed by clients
    /// leave no storage behind.
    pub fn read_record(&self) -> std::result::Result<Option<SessionRecord>, String> {
        let rows = match self.sql.exec("SELECT v FROM relay_session WHERE k = 'record'", None) {
            Ok(cursor) => cursor.to_array::<RecordRow>().map_err(|e| e.to_string())?,
            // The table is made with the session's first record.
            Err(e) if e.to_string().contains("no such table") => return Ok(None),
            Err(e) => return Err(e.to_string()),
        };
        self.tables.set(true);
        match rows.into_iter().next() {
            Some(row) => SessionRecord::from_json(&row.v).map(Some).map_err(|e| format!("unreadable record: {e}")),
            None => Ok(None),
        }
    }

    pub fn write_record(&self, record: &SessionRecord) -> std::result::Result<(), String> {
        let sql = &self.sql;
        if !self.tables.get() {
            sql.exec(
                "CREATE TABLE IF NOT EXISTS relay_session (k TEXT PRIMARY KEY, v TEXT NOT NULL); \
                 CREATE TABLE IF NOT EXISTS relay_queue (seq INTEGER PRIMARY KEY AUTOINCREMENT, line TEXT NOT NULL)",
                None,
            )
            .map_err(|e| e.to_string())?;
            self.tables.set(true);
        }
        sql.exec(
            "INSERT OR REPLACE INTO relay_session (k, v) VALUES ('record', ?)",
            vec![SqlStorageValue::from(record.to_json())],
        )
        .map(|_| ())
        .map_err(|e| e.to_string())
    }

    pub fn enqueue(&self, line: &str) -> Result<(), String> {
        self.sql
            .exec("INSERT INTO relay_queue (line) VALUES (?)", vec![SqlStorageValue::from(line.to_string())])
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// The queue in order. Nothing is deleted here: see `clear_queue`.
    pub fn read_queue(&self) -> Result<Vec<String>, String> {
        self.sql
            .exec("SELECT line FROM relay_queue ORDER BY seq", None)
            .and_then(|c| c.to_array::<QueueRow>())
            .map(|rows| rows.into_iter().map(|r| r.line).collect())
            .map_err(|e| e.to_string())
    }

    pub fn clear_queue(&self) -> Result<(), String> {
        self.sql.exec("DELETE FROM relay_queue", None).map(|_| ()).map_err(|e| e.to_string())
    }

    /// Forgets the session entirely: the id is free again.
    pub fn erase(&self) -> std::result::Result<(), String> {
        self.tables.set(false);
        self.sql
            .exec("DROP TABLE IF EXISTS relay_queue", None)
            .and_then(|_| self.sql.exec("DROP TABLE IF EXISTS relay_session", None))
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}
