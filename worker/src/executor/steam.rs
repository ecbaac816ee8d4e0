//! Steam Web API friend lists, fetched with the global `fetch`.

use std::collections::HashSet;

use futures_util::future::{select, Either};

use worker::js_sys::Promise;
use worker::wasm_bindgen::{self, prelude::wasm_bindgen, JsCast};
use worker::wasm_bindgen_futures::JsFuture;
use worker::worker_sys::web_sys;
use worker::{Delay, Env};

use crate::glue::body_text;
use askutron_core::matchmaker::Search;

#[wasm_bindgen]
extern "C" {
    /// The global `fetch`, for a plain GET to another host (the Steam API).
    #[wasm_bindgen(js_name = fetch)]
    fn global_fetch(url: &str) -> Promise;
}

/// A slow Steam API never holds a search longer than this.
const STEAM_TIMEOUT_MS: u64 = 2_000;
const DEFAULT_STEAM_API_BASE: &str = "https://api.steampowered.com";

/// The Steam Web API key (a secret, or a plain variable in tests), if set.
pub fn steam_key(env: &Env) -> Option<String> {
    let key = env.secret("STEAM_API_KEY").map(|s| s.to_string());
    let key = key.or_else(|_| env.var("STEAM_API_KEY").map(|v| v.to_string()));
    key.ok().filter(|k| !k.is_empty())
}

/// The Steam ids of the searching host's friends, or why not.
pub async fn friends_of(env: &Env, search: &Search) -> std::result::Result<HashSet<String>, String> {
    let key = steam_key(env).ok_or("no Steam key")?;
    let steam_id = search.steam_user_id.as_deref().unwrap_or_default();
    let base = env.var("STEAM_API_BASE").map(|v| v.to_string());
    let base = base.unwrap_or_else(|_| DEFAULT_STEAM_API_BASE.to_string());
    let url = format!(
        "{}/ISteamUser/GetFriendList/v0001/?key={}&steamid={}&relationship=friend&format=json",
        base.trim_end_matches('/'),
        key,
        steam_id
    );
    let request = Box::pin(async move {
        let response: web_sys::Response =
            JsFuture::from(global_fetch(&url)).await.map_err(|e| format!("{e:?}"))?.unchecked_into();
        if response.status() != 200 {
            return Err(format!("status {}", response.status()));
        }
        body_text(response.text()).await.map_err(|e| format!("{e:?}"))
    });
    let timeout = Delay::from(std::time::Duration::from_millis(STEAM_TIMEOUT_MS));
    let body = match select(request, timeout).await {
        Either::Left((result, _)) => result?,
        Either::Right(_) => return Err(format!("no answer within {STEAM_TIMEOUT_MS} ms")),
    };
    askutron_core::matchmaker::pool::parse_friend_list(&body).map_err(|e| e.to_string())
}
