//! The object's one alarm.

use worker::{Result, State};

/// Sets (or deletes) the object's one alarm.
pub async fn set_alarm(state: &State, at: Option<f64>) -> Result<(), String> {
    let storage = state.storage();
    let result = match at {
        Some(at) => storage.set_alarm(worker::ScheduledTime::new(worker::js_sys::Date::new(&at.into()))).await,
        None => storage.delete_alarm().await,
    };
    result.map_err(|e| e.to_string())
}
