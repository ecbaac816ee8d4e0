//! Log lines to the console (`wrangler tail`, Workers Logs): one JSON line
//! per event (rendered by `askutron_core::log`), written with the console
//! method that matches its level so Workers Logs files it there.

use askutron_core::journal::Event;
use askutron_core::log::{enabled, line, Level};
use serde_json::Value;
use worker::{console_error, console_log, console_warn};

/// Writes one core event if its level passes `min`.
pub fn emit_event(min: Level, event: &Event) {
    if enabled(min, event.severity) {
        write(event.severity, &event.to_json());
    }
}

/// Writes one event of the Worker's own (the router's) if `level` passes `min`.
pub fn emit(min: Level, level: Level, event: &str, fields: &[(&str, Value)]) {
    if enabled(min, level) {
        write(level, &line(level, event, fields));
    }
}

fn write(level: Level, text: &str) {
    match level {
        Level::Debug | Level::Info => console_log!("{text}"),
        Level::Warn => console_warn!("{text}"),
        Level::Error => console_error!("{text}"),
    }
}
