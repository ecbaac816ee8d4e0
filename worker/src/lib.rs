//! Askutron Relay as a Cloudflare Worker: the runtime side of the relay.
//!
//! The protocol lives in `askutron-core` as pure state machines. This crate
//! only turns runtime events (requests, socket events, alarms, calls between
//! objects) into the cores' inputs and carries out their effects:
//!
//! - [`router`]: the Worker's front door; validates a request before any
//!   Durable Object wakes.
//! - `objects`: the two Durable Object classes, thin wrappers.
//! - `executor`: what carries out the effects (storage, calls, alarm, sockets, Steam).
//! - [`page`]: the page and the client library, compiled in.
//! - `glue`, `log`: clock, randomness, settings, responses, console lines.

pub mod page;

#[cfg(target_arch = "wasm32")]
mod executor;
#[cfg(target_arch = "wasm32")]
mod glue;
#[cfg(target_arch = "wasm32")]
mod log;
#[cfg(target_arch = "wasm32")]
mod objects;
#[cfg(target_arch = "wasm32")]
mod router;

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
