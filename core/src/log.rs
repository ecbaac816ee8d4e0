//! Structured logs for operators (`wrangler tail`, Workers Logs): one JSON
//! line per lifecycle event, `{"level":…,"event":…,<fields in the given order>}`.
//!
//! Rendering is pure and tested natively; only [`emit`] touches the runtime.
//! Log events, never frames: nothing here may be called once per relayed
//! message. Never put a secret or a message body in a field.

use std::fmt;

use serde_json::Value;

/// How important an event is. Ordered: `Debug < Info < Warn < Error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

impl Level {
    /// The level used when `LOG_LEVEL` is unset or not understood.
    pub const DEFAULT: Level = Level::Info;

    /// `debug`, `info`, `warn` (or `warning`), `error`; any case, trimmed.
    pub fn parse(value: &str) -> Option<Level> {
        match value.trim().to_ascii_lowercase().as_str() {
            "debug" => Some(Level::Debug),
            "info" => Some(Level::Info),
            "warn" | "warning" => Some(Level::Warn),
            "error" => Some(Level::Error),
            _ => None,
        }
    }

    /// The `LOG_LEVEL` variable's meaning: unset or unknown is [`Level::DEFAULT`].
    pub fn from_var(value: Option<&str>) -> Level {
        value.and_then(Level::parse).unwrap_or(Level::DEFAULT)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// True when an event at `level` passes the configured minimum `min`.
pub fn enabled(min: Level, level: Level) -> bool {
    level >= min
}

/// One event as one line of JSON: `level`, `event`, then `fields` in the
/// order given. A field named `level` or `event` would shadow those two, so
/// it is written as `field.level` / `field.event` instead.
pub fn line(level: Level, event: &str, fields: &[(&str, Value)]) -> String {
    let mut out = String::with_capacity(48 + event.len() + fields.len() * 24);
    out.push_str("{\"level\":\"");
    out.push_str(level.as_str());
    out.push_str("\",\"event\":");
    push_json_string(&mut out, event);
    for (key, value) in fields {
        out.push(',');
        if matches!(*key, "level" | "event") {
            push_json_string(&mut out, &format!("field.{key}"));
        } else {
            push_json_string(&mut out, key);
        }
        out.push(':');
        // Serializing a `Value` cannot fail.
        out.push_str(&serde_json::to_string(value).unwrap_or_else(|_| "null".into()));
    }
    out.push('}');
    out
}

fn push_json_string(out: &mut String, s: &str) {
    out.push_str(&serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn levels_parse_and_default_to_info() {
        assert_eq!(Level::from_var(None), Level::Info);
        assert_eq!(Level::from_var(Some("")), Level::Info);
        assert_eq!(Level::from_var(Some("loud")), Level::Info);
        assert_eq!(Level::from_var(Some(" DEBUG ")), Level::Debug);
        assert_eq!(Level::from_var(Some("warning")), Level::Warn);
        assert_eq!(Level::from_var(Some("error")), Level::Error);
        for level in [Level::Debug, Level::Info, Level::Warn, Level::Error] {
            assert_eq!(Level::parse(level.as_str()), Some(level));
        }
    }

    #[test]
    fn minimum_level_filters() {
        assert!(enabled(Level::Info, Level::Info));
        assert!(enabled(Level::Info, Level::Error));
        assert!(!enabled(Level::Info, Level::Debug));
        assert!(!enabled(Level::Error, Level::Warn));
        assert!(enabled(Level::Debug, Level::Debug));
    }

    #[test]
    fn one_line_of_json_in_a_stable_order() {
        let l = line(
            Level::Warn,
            "refused",
            &[("status", json!(403)), ("reason", json!("origin not allowed")), ("path", json!("/session"))],
        );
        assert_eq!(
            l,
            r#"{"level":"warn","event":"refused","status":403,"reason":"origin not allowed","path":"/session"}"#
        );
        let parsed: Value = serde_json::from_str(&l).unwrap();
        assert_eq!(parsed["status"], 403);
    }

    #[test]
    fn no_fields_and_awkward_text_stay_one_valid_line() {
        assert_eq!(line(Level::Info, "x", &[]), r#"{"level":"info","event":"x"}"#);
        let l = line(Level::Error, "a\"b\nc", &[("why", json!("line1\nline2 \u{0} é")), ("n", Value::Null)]);
        assert!(!l.contains('\n'));
        let parsed: Value = serde_json::from_str(&l).unwrap();
        assert_eq!(parsed["event"], "a\"b\nc");
        assert_eq!(parsed["why"], "line1\nline2 \u{0} é");
    }

    #[test]
    fn reserved_keys_do_not_shadow_level_and_event() {
        let l = line(Level::Info, "e", &[("level", json!("x")), ("event", json!("y"))]);
        assert_eq!(l, r#"{"level":"info","event":"e","field.level":"x","field.event":"y"}"#);
    }
}
