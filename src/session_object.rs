//! The Session Durable Object: one per session id. It turns the runtime's
//! events into `SessionCore` inputs and carries out the effects, in order.
//! Sockets are held through the WebSocket Hibernation API; after a wake-up
//! the core is rebuilt from storage and the sockets' attachments.

use std::cell::RefCell;

use worker::{
    durable_object, wasm_bindgen, DurableObject, Env, Request, Response, Result, State, WebSocket,
    WebSocketIncomingMessage,
};

use crate::executor::{self, SessionIo};
use crate::glue::{self, now};
use crate::protocol::MAX_FRAME_BYTES;
use crate::session_core::{Answer, Frame, Input, SessionCore, StorageFailure, Token};
use crate::settings::Settings;

#[durable_object]
pub struct Session {
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
        Session {
            settings: glue::settings(&env),
            io: SessionIo::new(state, glue::settings(&env).log_level),
            env,
            core: RefCell::new(None),
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let input = match executor::session_input(&mut req).await {
            Ok(input) => input,
            Err(refusal) => return refusal,
        };
        // The answer is made before any await, while the accepted socket is
        // still this request's.
        let answer = self.step(input);
        let response = self.io.respond(answer);
        self.settle().await;
        response
    }

    async fn websocket_message(&self, ws: WebSocket, message: WebSocketIncomingMessage) -> Result<()> {
        let Some(socket) = self.token_of(&ws) else { return Ok(()) };
        let frame = match &message {
            WebSocketIncomingMessage::Binary(_) => Frame::Binary,
            WebSocketIncomingMessage::String(text) if text.len() > MAX_FRAME_BYTES => Frame::TooBig,
            WebSocketIncomingMessage::String(text) => Frame::Text(text),
        };
        self.step(Input::Frame { socket, frame });
        self.settle().await;
        Ok(())
    }

    async fn websocket_close(&self, ws: WebSocket, code: usize, _reason: String, _clean: bool) -> Result<()> {
        if let Some(socket) = self.token_of(&ws) {
            self.step(Input::Closed { socket, code: code as u16 });
            self.settle().await;
        }
        Ok(())
    }

    async fn websocket_error(&self, ws: WebSocket, _error: worker::Error) -> Result<()> {
        if let Some(socket) = self.token_of(&ws) {
            self.step(Input::Errored { socket });
            self.settle().await;
        }
        Ok(())
    }

    async fn alarm(&self) -> Result<Response> {
        self.step(Input::Alarm);
        self.settle().await;
        Response::ok("")
    }
}

impl Session {
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
        self.ensure_core();
        let mut answer = None;
        let mut next = Some(input);
        while let Some(input) = next.take() {
            let effects = self.core.borrow_mut().as_mut().expect("ensured").handle(now(), input);
            for effect in effects {
                if let Some(failure) = self.io.execute(effect, &self.core, &mut answer) {
                    next = Some(Input::StorageFailed(failure));
                }
            }
        }
        answer
    }

    /// Runs at the end of every event: sends the queued calls in order (each
    /// answer goes back to the core), then sets the alarm.
    async fn settle(&self) {
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
