//! The Session Durable Object: one per session id. It turns the runtime's
//! events into `SessionCore` inputs and carries out the effects, in order.
//! Sockets are held through the WebSocket Hibernation API; after a wake-up
//! the core is rebuilt from storage and the sockets' attachments.
//!
//! The class is exported by hand rather than through `#[durable_object]`,
//! whose async wrappers cost a future and a promise per event and convert
//! every request and response (reading `request.cf`, rebuilding the
//! `Response`). Here an event that needs no await (a relayed frame, a
//! connect) is handled synchronously; only one that leaves calls to make or
//! an alarm to set returns a promise.

use std::rc::Rc;

use worker::js_sys::JsString;
use worker::wasm_bindgen::{self, prelude::wasm_bindgen, JsCast, JsValue};
use worker::wasm_bindgen_futures::future_to_promise;
use worker::worker_sys::{web_sys, DurableObjectState, WebSocketRequestResponsePair};
use worker::{Env, State};

use crate::executor::requests::{self, SessionRequest};
use crate::executor::session_io::Incoming;
use crate::executor::session_runtime::SessionRuntime;
use askutron_core::session::{Frame, Input};
use askutron_core::wire::ext;
use askutron_core::wire::MAX_FRAME_BYTES;

#[wasm_bindgen(wasm_bindgen = ::worker::wasm_bindgen)]
pub struct Session {
    inner: Rc<SessionRuntime>,
}

#[wasm_bindgen(wasm_bindgen = ::worker::wasm_bindgen)]
impl Session {
    #[wasm_bindgen(constructor)]
    pub fn new(state: DurableObjectState, env: Env) -> Session {
        if crate::glue::lifecycle_logged(&env) {
            worker::console_log!("lifecycle: session object constructed");
        }
        // Section 7: the runtime answers heartbeats itself, without waking
        // the object, and notes when it last did, per socket.
        if let Ok(pair) = WebSocketRequestResponsePair::new(ext::PING, ext::PONG) {
            let _ = state.set_websocket_auto_response(&pair);
        }
        let raw: DurableObjectState = JsValue::from(&state).unchecked_into();
        Session { inner: Rc::new(SessionRuntime::new(State::from(state), raw, env)) }
    }

    /// A connect (answered at once) or a call from another object (whose body
    /// is read first): the `Response`, or a promise of it.
    pub fn fetch(&self, req: web_sys::Request) -> JsValue {
        let inner = &self.inner;
        match requests::session_request(&req) {
            Err(refusal) => refusal.into(),
            Ok(SessionRequest::Connect(input)) => {
                // The answer is made before any await, while the accepted
                // socket is still this request's.
                let answer = inner.step(input);
                let response = inner.io.respond(answer);
                inner.settle_then(response.into())
            }
            Ok(SessionRequest::Call) => {
                let inner = inner.clone();
                future_to_promise(async move {
                    let response = match requests::session_call(&req).await {
                        Ok(input) => inner.io.respond(inner.step(input)),
                        Err(refusal) => refusal,
                    };
                    inner.settle().await;
                    Ok(response.into())
                })
                .into()
            }
        }
    }

    #[wasm_bindgen(js_name = webSocketMessage)]
    pub fn web_socket_message(&self, ws: web_sys::WebSocket, message: JsValue) -> JsValue {
        let inner = &self.inner;
        let Some(socket) = inner.token_of(&ws.into()) else { return JsValue::UNDEFINED };
        match message.dyn_ref::<JsString>() {
            // UTF-8 never has fewer bytes than UTF-16 has units: too long
            // already, so it is refused without copying it.
            Some(text) if text.length() as usize > MAX_FRAME_BYTES => {
                inner.step(Input::Frame { socket, frame: Frame::TooBig })
            }
            Some(js) => {
                let text = String::from(js);
                if text.len() > MAX_FRAME_BYTES {
                    inner.step(Input::Frame { socket, frame: Frame::TooBig })
                } else {
                    let incoming = Incoming { js, text: &text };
                    inner.step_with(Input::Frame { socket, frame: Frame::Text(&text) }, Some(&incoming))
                }
            }
            None => inner.step(Input::Frame { socket, frame: Frame::Binary }),
        };
        inner.settle_then(JsValue::UNDEFINED)
    }

    #[wasm_bindgen(js_name = webSocketClose)]
    pub fn web_socket_close(&self, ws: web_sys::WebSocket, code: u16, _reason: JsValue, _clean: bool) -> JsValue {
        let inner = &self.inner;
        if let Some(socket) = inner.token_of(&ws.into()) {
            inner.step(Input::Closed { socket, code });
        }
        inner.settle_then(JsValue::UNDEFINED)
    }

    #[wasm_bindgen(js_name = webSocketError)]
    pub fn web_socket_error(&self, ws: web_sys::WebSocket, _error: JsValue) -> JsValue {
        let inner = &self.inner;
        if let Some(socket) = inner.token_of(&ws.into()) {
            inner.step(Input::Errored { socket });
        }
        inner.settle_then(JsValue::UNDEFINED)
    }

    pub fn alarm(&self) -> JsValue {
        self.inner.step(Input::Alarm);
        self.inner.settle_then(JsValue::UNDEFINED)
    }
}
