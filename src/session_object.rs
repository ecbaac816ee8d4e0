//! The Session Durable Object: one per session id. It turns the runtime's
//! events into `SessionCore` inputs and carries out the effects, in order.
//! Sockets are held through the WebSocket Hibernation API; after a wake-up
//! the core is rebuilt from storage and the sockets' attachments.
//!
//! The socket handlers and the alarm are exported by hand rather than through
//! `#[durable_object]`'s async wrappers: a relayed frame needs no await, so it
//! is handled synchronously and costs no future and no promise. Only an event
//! that leaves calls to make or an alarm to set returns a promise.

use std::cell::RefCell;
use std::rc::Rc;

use worker::js_sys::JsString;
use worker::wasm_bindgen::{self, prelude::wasm_bindgen, JsCast, JsValue};
use worker::worker_sys::web_sys;
use worker::{durable_object, DurableObject, Env, Request, Response, Result, State, WebSocket};

use crate::executor::{self, Incoming, SessionIo};
use crate::glue::{self, now};
use crate::protocol::MAX_FRAME_BYTES;
use crate::session_core::{Answer, Frame, Input, SessionCore, StorageFailure, Token};
use crate::settings::Settings;

#[durable_object(fetch)]
pub struct Session {
    inner: Rc<Inner>,
}

struct Inner {
    env: Env,
    settings: Settings,
    /// `None` until rebuilt in this incarnation.
    core: RefCell<Option<SessionCore>>,
    io: SessionIo,
}

impl DurableObject for Session {
    fn new(state: State, env: Env) -> Self {
        if env.var("LOG_LIFECYCLE").is_ok_and(|v| v.to_string() == "true") {
            worker::console_log!("lifecycle: session object constructed");
        }
        let settings = glue::settings(&env);
        let io = SessionIo::new(state, settings.log_level);
        Session { inner: Rc::new(Inner { env, settings, core: RefCell::new(None), io }) }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let inner = &self.inner;
        let input = match executor::session_input(&mut req).await {
            Ok(input) => input,
            Err(refusal) => return refusal,
        };
        // The answer is made before any await, while the accepted socket is
        // still this request's.
        let answer = inner.step(input);
        let response = inner.io.respond(answer);
        inner.clone().settle().await;
        response
    }
}

#[wasm_bindgen(wasm_bindgen = ::worker::wasm_bindgen)]
impl Session {
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
        inner.settle_if_needed()
    }

    #[wasm_bindgen(js_name = webSocketClose)]
    pub fn web_socket_close(&self, ws: web_sys::WebSocket, code: u16, _reason: JsValue, _clean: bool) -> JsValue {
        let inner = &self.inner;
        if let Some(socket) = inner.token_of(&ws.into()) {
            inner.step(Input::Closed { socket, code });
        }
        inner.settle_if_needed()
    }

    #[wasm_bindgen(js_name = webSocketError)]
    pub fn web_socket_error(&self, ws: web_sys::WebSocket, _error: JsValue) -> JsValue {
        let inner = &self.inner;
        if let Some(socket) = inner.token_of(&ws.into()) {
            inner.step(Input::Errored { socket });
        }
        inner.settle_if_needed()
    }

    #[wasm_bindgen(js_name = alarm)]
    pub fn alarm(&self) -> JsValue {
        self.inner.step(Input::Alarm);
        self.inner.settle_if_needed()
    }
}

impl Inner {
    fn token_of(&self, ws: &WebSocket) -> Option<Token> {
        self.ensure_core();
        self.io.token_of(ws)
    }

    fn ensure_core(&self) {
        if self.core.borrow().is_none() {
            let core = self.io.restore(self.settings);
            *self.core.borrow_mut() = Some(core);
        }
    }

    /// Feeds one input to the core and carries out its effects; a storage
    /// failure goes back to the core as an input of its own.
    fn step(&self, input: Input<'_>) -> Option<Answer> {
        self.step_with(input, None)
    }

    /// `step` for a text frame, whose JS string the relayed text is cut from.
    fn step_with(&self, input: Input<'_>, incoming: Option<&Incoming<'_>>) -> Option<Answer> {
        self.ensure_core();
        let mut answer = None;
        let mut next = Some(input);
        while let Some(input) = next.take() {
            let effects = self.core.borrow_mut().as_mut().expect("ensured").handle(now(), input);
            next = self.io.execute_all(effects, incoming, &self.core, &mut answer).map(Input::StorageFailed);
        }
        answer
    }

    /// `undefined` when the event is complete, else a promise of `settle`.
    fn settle_if_needed(self: &Rc<Self>) -> JsValue {
        if !self.io.has_pending_work() {
            return JsValue::UNDEFINED;
        }
        let inner = self.clone();
        worker::wasm_bindgen_futures::future_to_promise(async move {
            inner.settle().await;
            Ok(JsValue::UNDEFINED)
        })
        .into()
    }

    /// Sends the queued calls in order (each answer goes back to the core),
    /// then sets the alarm.
    async fn settle(self: Rc<Self>) {
        if self.io.outbox.claim() {
            while let Some(call) = self.io.outbox.next() {
                let outcome = executor::send(&self.env, &call).await;
                self.step(Input::Answer { call, outcome });
            }
            self.io.outbox.release();
        }
        if let Some(at) = self.io.alarm.take() {
            if let Err(error) = executor::set_alarm(&self.io.state, at).await {
                self.step(Input::StorageFailed(StorageFailure::Alarm(error)));
            }
        }
    }
}
