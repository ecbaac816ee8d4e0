//! The Matchmaker Durable Object: the single place where searches meet, so two
//! concurrent searches can never both claim the same session. It also sums the
//! figures sessions report for `/stats`.
//!
//! The pool and the figures live in SQLite storage (one row per search, one
//! per reporting session) and are read back after eviction. Matching itself is
//! `matchmaking::Pool`, run synchronously between storage reads and writes, so
//! no other request interleaves with a decision.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};

use futures_util::future::{select, Either};
use worker::{
    console_error, durable_object, wasm_bindgen, Delay, DurableObject, Env, Fetch, Request, Response, Result,
    SqlStorage, SqlStorageValue, State,
};

use crate::calls::{MatchmakerCall, SessionCall, POOL_FULL_STATUS};
use crate::glue::{self, call, is_internal, now, session_stub, text};
use crate::matchmaking::{Match, Pool, Search};
use crate::settings::Settings;
use crate::stats::{SessionCounts, StatsTable};

/// How long a friend list is trusted.
const FRIENDS_TTL_MS: f64 = 10.0 * 60_000.0;
/// After a failed Steam call, fall back to "no friends" for this long.
const FRIENDS_FAILURE_TTL_MS: f64 = 30_000.0;
/// A slow Steam API never holds a search longer than this.
const STEAM_TIMEOUT_MS: u64 = 2_000;
const DEFAULT_STEAM_API_BASE: &str = "https://api.steampowered.com";

#[durable_object]
pub struct Matchmaker {
    state: State,
    env: Env,
    settings: Settings,
    pool: RefCell<Option<Pool>>,
    stats: RefCell<Option<StatsTable>>,
    friends: RefCell<HashMap<String, (f64, HashSet<String>)>>,
}

impl DurableObject for Matchmaker {
    fn new(state: State, env: Env) -> Self {
        let settings = glue::settings(&env);
        Matchmaker {
            state,
            env,
            settings,
            pool: RefCell::new(None),
            stats: RefCell::new(None),
            friends: RefCell::new(HashMap::new()),
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        if !is_internal(&req) {
            return text(404, crate::protocol::http::NOT_FOUND);
        }
        let call: MatchmakerCall = match req.json().await {
            Ok(call) => call,
            Err(e) => return text(400, &format!("bad matchmaker call: {e}")),
        };
        match call {
            MatchmakerCall::Search { search } => {
                let cap = self.settings.max_searches;
                if self.with_pool(|pool| pool.is_full_for(&search.sid, cap)) {
                    return text(POOL_FULL_STATUS, "too many sessions searching");
                }
                let friends = match &search.steam_user_id {
                    Some(steam_id) => self.friends_of(steam_id).await,
                    None => None,
                };
                let matches = self.with_pool(|pool| pool.search(search, friends.as_ref(), self.settings.max_clients));
                for m in matches {
                    self.announce(m).await;
                }
            }
            MatchmakerCall::Cancel { sid } => {
                self.with_pool(|pool| {
                    pool.remove(&sid);
                });
            }
            MatchmakerCall::Report { sid, counts } => self.report(&sid, counts),
            MatchmakerCall::Stats => {
                let looking = self.with_pool(|pool| pool.len());
                let json = self.with_stats(|stats| stats.snapshot(looking).to_json());
                return text(200, &json);
            }
        }
        text(200, "ok")
    }
}

impl Matchmaker {
    fn sql(&self) -> SqlStorage {
        self.state.storage().sql()
    }

    fn ensure_schema(&self) {
        let sql = self.sql();
        for ddl in [
            "CREATE TABLE IF NOT EXISTS searches (sid TEXT PRIMARY KEY, search TEXT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS stats (sid TEXT PRIMARY KEY, hosts INTEGER, clients INTEGER, players INTEGER)",
            "CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER)",
        ] {
            if let Err(e) = sql.exec(ddl, None) {
                console_error!("matchmaker schema: {e}");
            }
        }
    }

    /// Runs `f` on the pool and writes back the searches it changed.
    fn with_pool<T>(&self, f: impl FnOnce(&mut Pool) -> T) -> T {
        if self.pool.borrow().is_none() {
            let loaded = self.load_pool();
            *self.pool.borrow_mut() = Some(loaded);
        }
        let mut guard = self.pool.borrow_mut();
        let pool = guard.as_mut().expect("loaded above");
        let before = pool.clone();
        let result = f(pool);
        self.persist_pool(&before, pool);
        result
    }

    fn load_pool(&self) -> Pool {
        self.ensure_schema();
        let sql = self.sql();
        let mut pool = Pool::default();
        #[derive(serde::Deserialize)]
        struct Row {
            search: String,
        }
        if let Ok(rows) = sql.exec("SELECT search FROM searches", None).and_then(|c| c.to_array::<Row>()) {
            for row in rows {
                if let Ok(search) = serde_json::from_str::<Search>(&row.search) {
                    pool.searches.insert(search.sid.clone(), search);
                }
            }
        }
        #[derive(serde::Deserialize)]
        struct Seq {
            v: i64,
        }
        pool.next_seq = sql
            .exec("SELECT v FROM meta WHERE k = 'next_seq'", None)
            .and_then(|c| c.to_array::<Seq>())
            .ok()
            .and_then(|rows| rows.first().map(|r| r.v as u64))
            .unwrap_or(0);
        pool
    }

    fn persist_pool(&self, before: &Pool, after: &Pool) {
        let sql = self.sql();
        for sid in before.searches.keys().filter(|sid| !after.searches.contains_key(*sid)) {
            let _ = sql.exec("DELETE FROM searches WHERE sid = ?", vec![SqlStorageValue::from(sid.as_str())]);
        }
        for (sid, search) in &after.searches {
            if before.searches.get(sid) != Some(search) {
                let json = serde_json::to_string(search).expect("search serialises");
                let _ = sql.exec(
                    "INSERT OR REPLACE INTO searches (sid, search) VALUES (?, ?)",
                    vec![SqlStorageValue::from(sid.as_str()), SqlStorageValue::from(json)],
                );
            }
        }
        if before.next_seq != after.next_seq {
            let _ = sql.exec(
                "INSERT OR REPLACE INTO meta (k, v) VALUES ('next_seq', ?)",
                vec![SqlStorageValue::from(after.next_seq as i64)],
            );
        }
    }

    fn with_stats<T>(&self, f: impl FnOnce(&mut StatsTable) -> T) -> T {
        if self.stats.borrow().is_none() {
            self.ensure_schema();
            #[derive(serde::Deserialize)]
            struct Row {
                sid: String,
                hosts: i64,
                clients: i64,
                players: i64,
            }
            let mut table = StatsTable::default();
            if let Ok(rows) = self
                .sql()
                .exec("SELECT sid, hosts, clients, players FROM stats", None)
                .and_then(|c| c.to_array::<Row>())
            {
                for r in rows {
                    let counts =
                        SessionCounts { hosts: r.hosts as u32, clients: r.clients as u32, players: r.players as u32 };
                    table.report(&r.sid, counts);
                }
            }
            *self.stats.borrow_mut() = Some(table);
        }
        let mut guard = self.stats.borrow_mut();
        f(guard.as_mut().expect("loaded above"))
    }

    fn report(&self, sid: &str, counts: SessionCounts) {
        self.with_stats(|stats| stats.report(sid, counts));
        let sql = self.sql();
        let result = if counts.is_zero() {
            sql.exec("DELETE FROM stats WHERE sid = ?", vec![SqlStorageValue::from(sid)])
        } else {
            sql.exec(
                "INSERT OR REPLACE INTO stats (sid, hosts, clients, players) VALUES (?, ?, ?, ?)",
                vec![
                    SqlStorageValue::from(sid),
                    SqlStorageValue::from(counts.hosts as i64),
                    SqlStorageValue::from(counts.clients as i64),
                    SqlStorageValue::from(counts.players as i64),
                ],
            )
        };
        if let Err(e) = result {
            console_error!("stats report: {e}");
        }
    }

    /// Tells both sides of a new link. If one side is already gone, the other
    /// is told it left, so no session keeps a link to nothing.
    async fn announce(&self, m: Match) {
        let searching = self.with_pool(|pool| pool.searches.contains_key(&m.master));
        let to_master =
            SessionCall::LinkedAsMaster { slave: m.slave.clone(), offset: m.offset, span: m.span, searching };
        let to_slave = SessionCall::LinkedAsSlave { master: m.master.clone(), offset: m.offset };
        let master_ok = self.tell(&m.master, &to_master).await;
        let slave_ok = self.tell(&m.slave, &to_slave).await;
        if master_ok && !slave_ok {
            self.tell(&m.master, &SessionCall::SlaveLeft { slave: m.slave.clone() }).await;
        }
        if slave_ok && !master_ok {
            self.tell(&m.slave, &SessionCall::MasterLeft { master: m.master.clone() }).await;
        }
    }

    async fn tell(&self, sid: &str, message: &SessionCall) -> bool {
        let stub = match session_stub(&self.env, sid) {
            Ok(stub) => stub,
            Err(_) => return false,
        };
        match call(&stub, message).await {
            Ok((status, _)) => status == 200,
            Err(e) => {
                console_error!("matchmaker could not reach session {sid}: {e}");
                false
            }
        }
    }

    /// Steam ids of the user's friends, or `None` (no key, Steam down or slow):
    /// then any waiting session will do.
    async fn friends_of(&self, steam_id: &str) -> Option<HashSet<String>> {
        let key = self
            .env
            .secret("STEAM_API_KEY")
            .map(|s| s.to_string())
            .or_else(|_| self.env.var("STEAM_API_KEY").map(|v| v.to_string()));
        let key = key.ok().filter(|k| !k.is_empty())?;
        let now = now();
        if let Some((expires, friends)) = self.friends.borrow().get(steam_id) {
            if *expires > now {
                return Some(friends.clone());
            }
        }
        let base = self
            .env
            .var("STEAM_API_BASE")
            .map(|v| v.to_string())
            .unwrap_or_else(|_| DEFAULT_STEAM_API_BASE.to_string());
        let fetched = fetch_friends(&base, &key, steam_id).await;
        let (ttl, friends) = match fetched {
            Ok(friends) => (FRIENDS_TTL_MS, friends),
            Err(why) => {
                console_error!("steam friend list for {steam_id} unavailable: {why}");
                (FRIENDS_FAILURE_TTL_MS, HashSet::new())
            }
        };
        self.friends.borrow_mut().insert(steam_id.to_string(), (now + ttl, friends.clone()));
        Some(friends)
    }
}

async fn fetch_friends(base: &str, key: &str, steam_id: &str) -> std::result::Result<HashSet<String>, String> {
    let url = format!(
        "{}/ISteamUser/GetFriendList/v0001/?key={}&steamid={}&relationship=friend&format=json",
        base.trim_end_matches('/'),
        key,
        steam_id
    );
    let url = worker::Url::parse(&url).map_err(|e| e.to_string())?;
    let request = Box::pin(async move {
        let mut response = Fetch::Url(url).send().await.map_err(|e| e.to_string())?;
        if response.status_code() != 200 {
            return Err(format!("status {}", response.status_code()));
        }
        response.text().await.map_err(|e| e.to_string())
    });
    let timeout = Delay::from(std::time::Duration::from_millis(STEAM_TIMEOUT_MS));
    let body = match select(request, timeout).await {
        Either::Left((result, _)) => result?,
        Either::Right(_) => return Err(format!("no answer within {STEAM_TIMEOUT_MS} ms")),
    };
    crate::matchmaking::parse_friend_list(&body).map_err(|e| e.to_string())
}
