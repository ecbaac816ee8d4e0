//! A session's SQLite tables: its record and what it still owes others (one
//! row each), and the queue for an absent host. Synchronous SQL, so no other
//! event slips in between the core's decision and its state being written.
//! A session that never existed has no table: ids probed by clients leave
//! no storage behind, and a session that ended owing nothing drops its own.

use std::cell::Cell;

use worker::{SqlStorage, SqlStorageValue, Storage};

use askutron_core::record::{Obligations, SessionRecord, Stored};
use askutron_core::stream::Stream;

/// The session's two tables (created together at its first write).
const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS relay_session (k TEXT PRIMARY KEY, v TEXT NOT NULL); \
     CREATE TABLE IF NOT EXISTS relay_queue (seq INTEGER PRIMARY KEY AUTOINCREMENT, line TEXT NOT NULL)";

pub struct SessionStore {
    sql: SqlStorage,
    /// The tables exist (created at most once per incarnation).
    tables: Cell<bool>,
}

#[derive(serde::Deserialize)]
struct Row {
    k: String,
    v: String,
}

#[derive(serde::Deserialize)]
struct QueueRow {
    seq: i64,
    line: String,
}

impl SessionStore {
    pub fn new(storage: &Storage) -> Self {
        SessionStore { sql: storage.sql(), tables: Cell::new(false) }
    }

    /// What storage holds; reading never creates a table. `fresh`: the
    /// object holds no socket, so it may well never have stored anything (a
    /// host creating its session, a client probing an id): the schema is
    /// asked first, since reading a table that does not exist throws, and a
    /// thrown error (its message and stack) costs more than the question.
    pub fn read(&self, fresh: bool) -> Result<Stored, String> {
        if fresh {
            #[derive(serde::Deserialize)]
            struct Name {
                #[allow(dead_code)]
                name: String,
            }
            let tables = self
                .sql
                .exec("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'relay_session'", None)
                .and_then(|cursor| cursor.to_array::<Name>())
                .map_err(|e| e.to_string())?;
            if tables.is_empty() {
                return Ok(Stored::default());
            }
        }
        let rows = match self.sql.exec("SELECT k, v FROM relay_session", None) {
            Ok(cursor) => cursor.to_array::<Row>().map_err(|e| e.to_string())?,
            Err(e) if e.to_string().contains("no such table") => return Ok(Stored::default()),
            Err(e) => return Err(e.to_string()),
        };
        self.tables.set(true);
        let mut stored = Stored::default();
        for row in rows {
            match row.k.as_str() {
                "record" => {
                    let record = SessionRecord::from_json(&row.v).map_err(|e| format!("unreadable record: {e}"))?;
                    stored.record = Some(record);
                }
                "owed" => {
                    stored.owed = serde_json::from_str(&row.v).map_err(|e| format!("unreadable obligations: {e}"))?
                }
                key => {
                    if let Some(name) = key.strip_prefix("stream:") {
                        let stream: Stream =
                            serde_json::from_str(&row.v).map_err(|e| format!("unreadable stream: {e}"))?;
                        stored.streams.push((name.to_string(), stream));
                    }
                }
            }
        }
        Ok(stored)
    }

    /// Writes the record and the obligations; with neither, drops the tables.
    /// One statement list, one call into the runtime: the tables (at the
    /// first write of an incarnation), the row that is gone deleted, the rows
    /// there are written (SQL takes parameters in the last statement only,
    /// so both rows go in one `INSERT`).
    pub fn write(&self, record: Option<&SessionRecord>, owed: &Obligations) -> Result<(), String> {
        if record.is_none() && owed.is_empty() {
            return self.drop_all();
        }
        let record = record.map(SessionRecord::to_json);
        let owed = (!owed.is_empty()).then(|| owed.to_json());
        let mut query = String::with_capacity(320);
        if !self.tables.get() {
            query.push_str(SCHEMA);
            query.push_str("; ");
        }
        let (rows, values): (Vec<&str>, Vec<SqlStorageValue>) = match (record, owed) {
            (Some(r), Some(o)) => (vec!["record", "owed"], vec![r.into(), o.into()]),
            (Some(r), None) => {
                query.push_str("DELETE FROM relay_session WHERE k = 'owed'; ");
                (vec!["record"], vec![r.into()])
            }
            (None, Some(o)) => {
                query.push_str("DELETE FROM relay_session WHERE k = 'record'; ");
                (vec!["owed"], vec![o.into()])
            }
            (None, None) => unreachable!("dropped above"),
        };
        query.push_str("INSERT OR REPLACE INTO relay_session (k, v) VALUES ");
        for (i, key) in rows.iter().enumerate() {
            if i > 0 {
                query.push_str(", ");
            }
            query.push_str("('");
            query.push_str(key);
            query.push_str("', ?)");
        }
        self.sql.exec(&query, values).map_err(|e| e.to_string())?;
        self.tables.set(true);
        Ok(())
    }

    fn put(&self, key: &str, value: Option<String>) -> Result<(), String> {
        let result = match value {
            Some(v) => self.sql.exec(
                "INSERT OR REPLACE INTO relay_session (k, v) VALUES (?, ?)",
                vec![SqlStorageValue::from(key.to_string()), SqlStorageValue::from(v)],
            ),
            None => {
                self.sql.exec("DELETE FROM relay_session WHERE k = ?", vec![SqlStorageValue::from(key.to_string())])
            }
        };
        result.map(|_| ()).map_err(|e| e.to_string())
    }

    fn ensure_tables(&self) -> Result<(), String> {
        if !self.tables.get() {
            self.sql.exec(SCHEMA, None).map_err(|e| e.to_string())?;
            self.tables.set(true);
        }
        Ok(())
    }

    fn drop_all(&self) -> Result<(), String> {
        self.tables.set(false);
        self.sql
            .exec("DROP TABLE IF EXISTS relay_queue", None)
            .and_then(|_| self.sql.exec("DROP TABLE IF EXISTS relay_session", None))
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// Stores (or, `None`, deletes) a resume stream.
    pub fn write_stream(&self, key: &str, stream: Option<&Stream>) -> Result<(), String> {
        if stream.is_none() && !self.tables.get() {
            return Ok(());
        }
        self.ensure_tables()?;
        self.put(&format!("stream:{key}"), stream.map(|s| serde_json::to_string(s).expect("a stream serialises")))
    }

    pub fn enqueue(&self, line: &str) -> Result<(), String> {
        self.ensure_tables()?;
        self.sql
            .exec("INSERT INTO relay_queue (line) VALUES (?)", vec![SqlStorageValue::from(line.to_string())])
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// The queue after row `after`, in order. Nothing is deleted here.
    pub fn read_queue(&self, after: u64) -> Result<Vec<(u64, String)>, String> {
        self.sql
            .exec(
                "SELECT seq, line FROM relay_queue WHERE seq > ? ORDER BY seq",
                vec![SqlStorageValue::from(after as i64)],
            )
            .and_then(|c| c.to_array::<QueueRow>())
            .map(|rows| rows.into_iter().map(|r| (r.seq as u64, r.line)).collect())
            .map_err(|e| e.to_string())
    }

    /// Deletes the queue's rows up to `through`.
    pub fn clear_queue(&self, through: u64) -> Result<(), String> {
        self.sql
            .exec("DELETE FROM relay_queue WHERE seq <= ?", vec![SqlStorageValue::from(through as i64)])
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// Forgets the queue (the session ended).
    pub fn erase_queue(&self) -> Result<(), String> {
        if !self.tables.get() {
            return Ok(());
        }
        self.sql.exec("DELETE FROM relay_queue", None).map(|_| ()).map_err(|e| e.to_string())
    }
}
