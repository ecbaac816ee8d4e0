//! Askutron Relay: a WebSocket relay and matchmaker for game hosts behind
//! firewalls, as a Cloudflare Worker.
//!
//! The protocol is two pure state machines, compiled and tested natively:
//! `session_core` (one per session) and `matchmaker_core` (the one
//! Matchmaker). They take inputs with the time and return ordered effects; they
//! do no I/O. Around them: the wire format (`protocol`), the stored shapes
//! (`record`, `links`), matching (`matchmaking`), figures (`stats`), settings,
//! secrets and the calls between objects (`calls`).
//!
//! The Worker side (`router`, `session_object`, `matchmaker_object`,
//! `executor`) only exists in the wasm build: it turns runtime events into
//! inputs and carries out the effects.

pub mod calls;
pub mod journal;
pub mod links;
pub mod log;
pub mod matchmaker_core;
pub mod matchmaking;
pub mod page;
pub mod protocol;
pub mod record;
pub mod secrets;
pub mod session_core;
pub mod settings;
pub mod stats;
pub mod url_parts;

#[cfg(test)]
mod invariants;
#[cfg(test)]
mod scenarios;
#[cfg(test)]
mod testbus;

/// The relay's version, from Cargo.toml.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[cfg(target_arch = "wasm32")]
mod executor;
#[cfg(target_arch = "wasm32")]
mod glue;
#[cfg(target_arch = "wasm32")]
mod matchmaker_object;
#[cfg(target_arch = "wasm32")]
mod router;
#[cfg(target_arch = "wasm32")]
mod session_object;

/// Runs once per isolate, when the wasm module is instantiated: installs
/// `console_error_panic_hook`, so a panic's message and stack reach the
/// console (`wrangler tail`, Workers Logs). It is chained with the hook the
/// `worker` crate installs (which marks the instance for re-initialisation
/// after a panic) instead of replacing it.
#[cfg(target_arch = "wasm32")]
#[worker::event(start)]
fn start() {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            console_error_panic_hook::hook(info);
            previous(info);
        }));
    });
}
