//! The object's one alarm.

use worker::{Result, State, Storage};

/// Sets (or deletes) the object's one alarm.
pub async fn set_alarm(state: &State, at: Option<f64>) -> Result<(), String> {
    set_alarm_on(&state.storage(), at).await
}

/// Sets (or deletes) the alarm through storage the caller already holds (the
/// runtime's `ctx.storage` is a call into it each time it is asked for).
pub async fn set_alarm_on(storage: &Storage, at: Option<f64>) -> Result<(), String> {
    let result = match at {
        Some(at) => storage.set_alarm(worker::ScheduledTime::new(worker::js_sys::Date::new(&at.into()))).await,
        None => storage.delete_alarm().await,
    };
    result.map_err(|e| e.to_string())
}
