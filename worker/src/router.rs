//! The Worker's front door. Static files (the page) are answered by the
//! assets layer before this runs; everything else lands here. Requests are
//! validated here so that a bad one never wakes a Durable Object: method,
//! path, origin, query and upgrade are all checked before a stub is touched.
//!
//! Besides the two socket paths it answers the operator endpoints
//! `/health`, `/version`, `/stats` and `/docs/PROTOCOL.md`.

use serde_json::json;
use worker::js_sys::Promise;
use worker::wasm_bindgen::JsCast;
use worker::wasm_bindgen_futures::JsFuture;
use worker::worker_sys::web_sys::{self, Request};
use worker::{event, Context, Env, Method, Result};

use crate::executor::calls::send;
use crate::glue::{allowed_origins, response, session_stub, settings, text};
use crate::log;
use crate::page;
use askutron_core::calls::{AggregatorCall, Outcome};
use askutron_core::log::Level;
use askutron_core::secrets::new_session_id;
use askutron_core::session::{CallBody, Peer};
use askutron_core::settings::{AllowedOrigins, Settings};
use askutron_core::url_parts;
use askutron_core::wire::{http, route, ClientParams, HostParams, Route};
use askutron_core::VERSION;

/// The in-repo protocol, served so the page can link it wherever it runs.
const PROTOCOL_MD: &str = include_str!("../../docs/PROTOCOL.md");

/// Plain-text bodies of the router's own refusals (the protocol's are in
/// `protocol::http`).
mod body {
    pub const ORIGIN_NOT_ALLOWED: &str =
        "Forbidden: this page's origin may not open sockets to this relay (see ALLOWED_ORIGINS)";
    pub const GET_ONLY: &str = "Method not allowed: use GET or HEAD";
    pub const STATS_UNAVAILABLE: &str = "Stats unavailable: the figures' aggregator did not answer";
}

/// The runtime's request as it is: converting it to `worker::Request` would
/// read `request.cf` on every connect, which the relay never needs.
#[event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: Context) -> Result<web_sys::Response> {
    let settings = settings(&env);
    handle(req, env, &settings).await
}

/// Hands a socket request to its Session object, answer untouched.
async fn forward(env: &Env, sid: &str, req: &Request) -> Result<web_sys::Response> {
    let stub = session_stub(env, sid)?.into_rpc::<worker::worker_sys::DurableObject>();
    let promise: Promise = stub.fetch_with_request(req)?;
    Ok(JsFuture::from(promise).await?.unchecked_into())
}

fn wants_websocket(req: &Request) -> bool {
    header_has_token(req, "Upgrade", "websocket")
}

/// True when the comma-separated header `name` contains `token` (any case).
fn header_has_token(req: &Request, name: &str, token: &str) -> bool {
    header(req, name).is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

/// The method as the Worker sees it. Note: a request carrying
/// `Upgrade: websocket` reaches the Worker as `GET` whatever method the client
/// sent whenever it crosses a `fetch` hop inside the runtime (workerd's
/// `fetch` turns such a request into a WebSocket open, which is always a GET
/// and drops the body); under `wrangler dev` every request crosses two such
/// hops (Miniflare's entry worker, then the assets router). The outermost
/// server then refuses the handshake (`400 WebSocket must be initiated with a
/// GET request`), but only after the Worker has answered it. So the 405 below
/// fires only where the method arrives intact (README, Known limits).
fn method(req: &Request) -> Method {
    Method::from(req.method())
}

fn header(req: &Request, name: &str) -> Option<String> {
    req.headers().get(name).ok().flatten()
}

/// Writes a refusal to the log and answers it with a plain-text body.
fn refuse(settings: &Settings, req: &Request, path: &str, status: u16, reason: &str) -> Result<web_sys::Response> {
    let level = if status == 403 { Level::Warn } else { Level::Info };
    log::emit(
        settings.log_level,
        level,
        "request_refused",
        &[
            ("status", json!(status)),
            ("reason", json!(reason)),
            ("method", json!(method(req).to_string())),
            // The path only (a host's query carries its secret), and not all
            // of an absurdly long one.
            ("path", json!(clip(path, 256))),
        ],
    );
    Ok(text(status, reason))
}

/// At most `max` bytes of `s`, cut at a character boundary.
fn clip(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

async fn handle(req: Request, env: Env, settings: &Settings) -> Result<web_sys::Response> {
    let url = req.url();
    let (path, query_string) = url_parts::split(&url);
    let path = path.to_string();
    let get = method(&req) == Method::Get;
    let read = get || method(&req) == Method::Head;

    // Operator endpoints: answered here, no socket involved.
    match path.as_str() {
        "/health" | "/version" | "/stats" | "/docs/PROTOCOL.md" if !read => {
            return refuse(settings, &req, &path, 405, body::GET_ONLY);
        }
        // Liveness only: wakes no object.
        "/health" => return Ok(text(200, "ok")),
        "/version" => return Ok(text(200, VERSION)),
        "/stats" => return Ok(stats(&env, settings).await),
        "/docs/PROTOCOL.md" => return Ok(text(200, PROTOCOL_MD)),
        _ => {}
    }

    if let Some(asset) = page::asset(&path) {
        if !read {
            return refuse(settings, &req, &path, 405, body::GET_ONLY);
        }
        return Ok(serve(&req, asset));
    }
    let route = match route(&path) {
        Ok(route) => route,
        Err(e) => return refuse(settings, &req, &path, 400, &e.to_string()),
    };
    if route == Route::NotFound {
        return refuse(settings, &req, &path, 404, http::NOT_FOUND);
    }
    if !get {
        return refuse(settings, &req, &path, 405, http::METHOD_NOT_ALLOWED);
    }
    // With no list (the default) the `Origin` header is not even read.
    let allowed = allowed_origins(&env, |origins| {
        matches!(origins, AllowedOrigins::Any) || origins.allows(header(&req, "Origin").as_deref())
    });
    if !allowed {
        return refuse(settings, &req, &path, 403, body::ORIGIN_NOT_ALLOWED);
    }
    let query = || url_parts::pairs(query_string);
    match route {
        Route::NotFound => unreachable!("answered above"),
        Route::Host => {
            let params = match HostParams::from_query(query()) {
                Ok(p) => p,
                Err(e) => return refuse(settings, &req, &path, 400, &e.to_string()),
            };
            if !wants_websocket(&req) {
                return refuse(settings, &req, &path, 426, http::UPGRADE_REQUIRED);
            }
            // The object is chosen by session id, so a relay-made id is drawn
            // here and handed on in the URL.
            let sid = params.id.clone().unwrap_or_else(new_session_id);
            // A v4 UUID needs no escaping in a query.
            let forward = match (params.id.is_none(), query_string.is_empty()) {
                (false, _) => url.clone(),
                (true, true) => format!("{}?id={sid}", url.split(['?', '#']).next().unwrap_or(&url)),
                (true, false) => format!("{}&id={sid}", url.split('#').next().unwrap_or(&url)),
            };
            let init = web_sys::RequestInit::new();
            init.set_headers(&req.headers());
            let forwarded = Request::new_with_str_and_init(&forward, &init)?;
            self::forward(&env, &sid, &forwarded).await
        }
        Route::Client { session_id } => {
            if let Err(e) = ClientParams::from_query(query()) {
                return refuse(settings, &req, &path, 400, &e.to_string());
            }
            if !wants_websocket(&req) {
                return refuse(settings, &req, &path, 426, http::UPGRADE_REQUIRED);
            }
            self::forward(&env, session_id, &req).await
        }
    }
}

/// A file of the page, or `304` when the browser's copy is current.
fn serve(req: &Request, asset: page::Asset) -> web_sys::Response {
    let etag = asset.etag();
    if header(req, "If-None-Match").is_some_and(|tags| tags.split(',').any(|t| t.trim() == etag)) {
        return response(304, None, &[("ETag", etag.as_str()), ("Cache-Control", "no-cache")]);
    }
    let headers = [("ETag", etag.as_str()), ("Cache-Control", "no-cache"), ("Content-Type", asset.content_type)];
    response(200, Some(asset.body), &headers)
}

/// `GET /stats`: the relay-wide figures from the root aggregator (never the
/// Matchmaker: only matchmaking reaches it), the JSON of `!stats`.
async fn stats(env: &Env, settings: &Settings) -> web_sys::Response {
    let query = CallBody::Aggregator(AggregatorCall::Stats);
    let answer = match send(env, &Peer::Root, &query).await {
        Outcome::Status(status, body) => Ok((status, body)),
        Outcome::Failed(error) => Err(error),
    };
    match answer {
        Ok((200, json)) => {
            response(200, Some(&json), &[("Content-Type", "application/json"), ("Cache-Control", "no-store")])
        }
        Ok((status, body)) => {
            log::emit(
                settings.log_level,
                Level::Error,
                "stats_failed",
                &[("status", json!(status)), ("body", json!(body))],
            );
            text(502, body::STATS_UNAVAILABLE)
        }
        Err(e) => {
            log::emit(settings.log_level, Level::Error, "stats_failed", &[("error", json!(e.to_string()))]);
            text(502, body::STATS_UNAVAILABLE)
        }
    }
}
