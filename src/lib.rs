//! Askutron Relay: a WebSocket relay and matchmaker for game hosts behind
//! firewalls, as a Cloudflare Worker.
//!
//! The protocol core (`protocol`, `secrets`, `session`, `matchmaking`,
//! `stats`, `settings`) is plain Rust, unit-tested natively. The Worker glue
//! (`router`, `session_object`, `matchmaker_object`) only exists in the wasm
//! build and delegates every decision to the core.

pub mod calls;
pub mod log;
pub mod matchmaking;
pub mod protocol;
pub mod secrets;
pub mod session;
pub mod settings;
pub mod stats;

/// The relay's version, from Cargo.toml.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

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
