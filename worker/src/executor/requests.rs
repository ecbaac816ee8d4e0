//! Requests to a Session object: a socket connect or a call from another
//! object, read as the core's inputs.

use worker::worker_sys::web_sys;

use crate::glue::{body_text, random, text};
use askutron_core::calls::SessionCall;
use askutron_core::secrets;
use askutron_core::session::Input;
use askutron_core::url_parts;
use askutron_core::wire::{ClientParams, HostParams};

/// What a request to a Session object is.
pub enum SessionRequest {
    /// A call from another object; its JSON body is still to be read.
    Call,
    Connect(Input<'static>),
}

/// Reads a request to a Session object, as the runtime hands it over (no
/// `worker::Request`, which would read `request.cf`); a bad one gets its
/// refusal.
pub fn session_request(req: &web_sys::Request) -> std::result::Result<SessionRequest, web_sys::Response> {
    let url = req.url();
    let (path, query) = url_parts::split(&url);
    if req.method() == "POST" && path == "/internal" {
        return Ok(SessionRequest::Call);
    }
    let query = url_parts::pairs(query);
    let input = if path == "/session" {
        HostParams::from_query(query)
            .map(|params| Input::HostConnect { params, fresh_secret: secrets::secret(random()) })
    } else {
        ClientParams::from_query(query).map(|params| Input::ClientConnect { params })
    };
    input.map(SessionRequest::Connect).map_err(|e| text(400, &e.to_string()))
}

/// A call's JSON body as the session input it carries.
pub async fn session_call(req: &web_sys::Request) -> std::result::Result<Input<'static>, web_sys::Response> {
    let body = body_text(req.text()).await.map_err(|_| text(400, "bad internal call: unreadable body"))?;
    serde_json::from_str::<SessionCall>(&body)
        .map(Input::Call)
        .map_err(|e| text(400, &format!("bad internal call: {e}")))
}
