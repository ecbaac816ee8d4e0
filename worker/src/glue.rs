//! Runtime helpers shared by the router and the Durable Objects: clock,
//! randomness, settings, plain-text answers and calls between objects.

use serde::Serialize;
use worker::js_sys::Promise;
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;
use worker::worker_sys::web_sys;
use worker::{Env, Result, Stub};

use askutron_core::settings::{AllowedOrigins, Settings};

pub const SESSION_BINDING: &str = "SESSIONS";
pub const MATCHMAKER_BINDING: &str = "MATCHMAKER";
pub const AGGREGATOR_BINDING: &str = "AGGREGATORS";
/// The one Matchmaker instance.
pub const MATCHMAKER_NAME: &str = "global";
/// Internal calls use this URL; the router never forwards it from outside.
const INTERNAL_URL: &str = "https://relay.internal/internal";

pub fn now() -> f64 {
    worker::js_sys::Date::now()
}

/// Bytes from the runtime's CSPRNG (`crypto.getRandomValues`).
pub fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::getrandom(&mut bytes).expect("crypto.getRandomValues is always available in Workers");
    bytes
}

/// The Worker's settings, read once per isolate: variables cannot change
/// within one (a new deploy or `--var` starts a new isolate), and every object
/// constructed after a wake-up would otherwise read a dozen variables again.
pub fn settings(env: &Env) -> Settings {
    thread_local! {
        static SETTINGS: std::cell::OnceCell<Settings> = const { std::cell::OnceCell::new() };
    }
    SETTINGS.with(|cell| *cell.get_or_init(|| Settings::from_vars(|name| env.var(name).ok().map(|v| v.to_string()))))
}

/// `LOG_LIFECYCLE=true`, read once per isolate like the settings (every
/// Session object constructed asks).
pub fn lifecycle_logged(env: &Env) -> bool {
    thread_local! {
        static LIFECYCLE: std::cell::OnceCell<bool> = const { std::cell::OnceCell::new() };
    }
    LIFECYCLE.with(|cell| *cell.get_or_init(|| env.var("LOG_LIFECYCLE").is_ok_and(|v| v.to_string() == "true")))
}

/// `ALLOWED_ORIGINS`, read once per isolate (the router asks at every connect).
pub fn allowed_origins<R>(env: &Env, f: impl FnOnce(&AllowedOrigins) -> R) -> R {
    thread_local! {
        static ORIGINS: std::cell::OnceCell<AllowedOrigins> = const { std::cell::OnceCell::new() };
    }
    ORIGINS.with(|cell| {
        f(cell.get_or_init(|| {
            AllowedOrigins::from_var(env.var("ALLOWED_ORIGINS").ok().map(|v| v.to_string()).as_deref())
        }))
    })
}

/// A response built straight on the runtime's `Response` (a `worker::Response`
/// would be rebuilt once more on its way out): a status, an optional body and
/// headers. A string body is `text/plain` unless a header says otherwise.
pub fn response(status: u16, body: Option<&str>, headers: &[(&str, &str)]) -> web_sys::Response {
    let init = web_sys::ResponseInit::new();
    init.set_status(status);
    if !headers.is_empty() {
        let all = web_sys::Headers::new().expect("headers can always be made");
        for (name, value) in headers {
            all.set(name, value).expect("the relay's header names and values are valid");
        }
        init.set_headers(&all);
    }
    web_sys::Response::new_with_opt_str_and_init(body, &init).expect("a response can always be made")
}

/// A plain-text answer.
pub fn text(status: u16, body: &str) -> web_sys::Response {
    response(status, Some(body), &[])
}

/// The text of a request's or response's body (`body.text()`).
pub async fn body_text(text: std::result::Result<Promise, JsValue>) -> std::result::Result<String, JsValue> {
    JsFuture::from(text?).await?.as_string().ok_or(JsValue::NULL)
}

pub fn session_stub(env: &Env, sid: &str) -> Result<Stub> {
    env.durable_object(SESSION_BINDING)?.id_from_name(sid)?.get_stub()
}

pub fn matchmaker_stub(env: &Env) -> Result<Stub> {
    env.durable_object(MATCHMAKER_BINDING)?.id_from_name(MATCHMAKER_NAME)?.get_stub()
}

/// An aggregator of the figures, by its name (`leaf-<n>` or `root`).
pub fn aggregator_stub(env: &Env, name: &str) -> Result<Stub> {
    env.durable_object(AGGREGATOR_BINDING)?.id_from_name(name)?.get_stub()
}

/// Posts a call to another object; returns its status and body. Built on the
/// runtime's own `Request`/`Response`: `worker::Request` would parse the URL
/// (and pull a URL parser into the Worker) and read `request.cf`.
pub async fn call(stub: Stub, body: &impl Serialize) -> Result<(u16, String)> {
    call_to(stub, INTERNAL_URL, body).await
}

/// Posts a call to an object that must learn its own name from the call
/// (a Durable Object does not know the name it was found by).
pub async fn call_named(stub: Stub, name: &str, body: &impl Serialize) -> Result<(u16, String)> {
    call_to(stub, &format!("{INTERNAL_URL}/{name}"), body).await
}

async fn call_to(stub: Stub, url: &str, body: &impl Serialize) -> Result<(u16, String)> {
    let json = serde_json::to_string(body)?;
    let init = web_sys::RequestInit::new();
    init.set_method("POST");
    init.set_body(&JsValue::from_str(&json));
    let req = web_sys::Request::new_with_str_and_init(url, &init)?;
    let object = stub.into_rpc::<worker::worker_sys::DurableObject>();
    let res: web_sys::Response = JsFuture::from(object.fetch_with_request(&req)?).await?.unchecked_into();
    let text = body_text(res.text()).await.unwrap_or_default();
    Ok((res.status(), text))
}

/// True for a call from another object: `POST /internal` (or
/// `/internal/<name>`, see `call_named`).
pub fn is_internal(req: &web_sys::Request) -> bool {
    let url = req.url();
    let path = askutron_core::url_parts::split(&url).0;
    req.method() == "POST" && (path == "/internal" || path.starts_with("/internal/"))
}
