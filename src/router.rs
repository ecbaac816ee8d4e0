//! The Worker's front door. Static files (the page) are answered by the
//! assets layer before this runs; everything else lands here. Requests are
//! validated here so that a bad one never wakes a Durable Object.

use worker::{event, Context, Env, Headers, Method, Request, RequestInit, Response, Result};

use crate::glue::{random, session_stub, text};
use crate::protocol::{http, route, ClientParams, HostParams, Route};
use crate::secrets::uuid_v4;

#[event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: Context) -> Result<Response> {
    handle(req, env).await
}

fn wants_websocket(req: &Request) -> bool {
    req.headers().get("Upgrade").ok().flatten().is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

async fn handle(req: Request, env: Env) -> Result<Response> {
    let url = req.url()?;
    let query = || url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned()));
    let route = match route(url.path()) {
        Ok(route) => route,
        Err(e) => return text(400, &e.to_string()),
    };
    if route != Route::NotFound && req.method() != Method::Get {
        return text(405, http::METHOD_NOT_ALLOWED);
    }
    match route {
        Route::NotFound => text(404, http::NOT_FOUND),
        Route::Host => {
            let params = match HostParams::from_query(query()) {
                Ok(p) => p,
                Err(e) => return text(400, &e.to_string()),
            };
            if !wants_websocket(&req) {
                return text(426, http::UPGRADE_REQUIRED);
            }
            // The object is chosen by session id, so a relay-made id is drawn
            // here and handed on in the URL.
            let sid = params.id.clone().unwrap_or_else(|| uuid_v4(random()));
            let mut forward = url.clone();
            if params.id.is_none() {
                forward.query_pairs_mut().append_pair("id", &sid);
            }
            let headers: Headers = req.headers().clone();
            let mut init = RequestInit::new();
            init.with_headers(headers);
            let forwarded = Request::new_with_init(forward.as_str(), &init)?;
            session_stub(&env, &sid)?.fetch_with_request(forwarded).await
        }
        Route::Client { session_id } => {
            if let Err(e) = ClientParams::from_query(query()) {
                return text(400, &e.to_string());
            }
            if !wants_websocket(&req) {
                return text(426, http::UPGRADE_REQUIRED);
            }
            let sid = session_id.to_string();
            session_stub(&env, &sid)?.fetch_with_request(req).await
        }
    }
}
