//! Lifecycle events the relay reports to its operator: one structured line
//! each, never one per relayed frame. The cores only describe events; the
//! Workers side renders and writes them (`log`).

pub use crate::log::Level;

/// One lifecycle event: a name and its fields, in a stable order.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub severity: Level,
    pub name: &'static str,
    pub fields: Vec<(&'static str, Field)>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    Text(String),
    Number(f64),
}

impl From<&str> for Field {
    fn from(s: &str) -> Self {
        Field::Text(s.to_string())
    }
}
impl From<String> for Field {
    fn from(s: String) -> Self {
        Field::Text(s)
    }
}
impl From<u32> for Field {
    fn from(n: u32) -> Self {
        Field::Number(n as f64)
    }
}
impl From<u16> for Field {
    fn from(n: u16) -> Self {
        Field::Number(n as f64)
    }
}
impl From<usize> for Field {
    fn from(n: usize) -> Self {
        Field::Number(n as f64)
    }
}
impl From<f64> for Field {
    fn from(n: f64) -> Self {
        Field::Number(n)
    }
}

impl Event {
    pub fn new(severity: Level, name: &'static str) -> Self {
        Event { severity, name, fields: Vec::new() }
    }
    pub fn info(name: &'static str) -> Self {
        Event::new(Level::Info, name)
    }
    pub fn warn(name: &'static str) -> Self {
        Event::new(Level::Warn, name)
    }
    pub fn error(name: &'static str) -> Self {
        Event::new(Level::Error, name)
    }
    pub fn with(mut self, key: &'static str, value: impl Into<Field>) -> Self {
        self.fields.push((key, value.into()));
        self
    }
    /// The value of a field, for tests.
    pub fn field(&self, key: &str) -> Option<&Field> {
        self.fields.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }
}

impl Event {
    /// One JSON line: `{"level":…,"event":…,<fields in order>}`.
    pub fn to_json(&self) -> String {
        let fields: Vec<(&str, serde_json::Value)> = self
            .fields
            .iter()
            .map(|(key, value)| {
                let value = match value {
                    Field::Text(s) => serde_json::Value::from(s.as_str()),
                    Field::Number(n) if n.fract() == 0.0 && n.abs() < 9e15 => serde_json::Value::from(*n as i64),
                    Field::Number(n) => serde_json::Value::from(*n),
                };
                (*key, value)
            })
            .collect();
        crate::log::line(self.severity, self.name, &fields)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_render_as_one_json_line_in_field_order() {
        let e = Event::warn("socket_refused").with("sid", "a\"b").with("code", 1008u16).with("s", 1.5);
        assert_eq!(e.to_json(), r#"{"level":"warn","event":"socket_refused","sid":"a\"b","code":1008,"s":1.5}"#);
    }
}
