//! Lifecycle events the relay reports to its operator: one structured line
//! each, never one per relayed frame. The cores only describe events; the
//! Workers side renders and writes them (`log`).

/// How much an event matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Debug,
    Info,
    Warn,
    Error,
}

/// One lifecycle event: a name and its fields, in a stable order.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub severity: Severity,
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
    pub fn new(severity: Severity, name: &'static str) -> Self {
        Event { severity, name, fields: Vec::new() }
    }
    pub fn info(name: &'static str) -> Self {
        Event::new(Severity::Info, name)
    }
    pub fn warn(name: &'static str) -> Self {
        Event::new(Severity::Warn, name)
    }
    pub fn error(name: &'static str) -> Self {
        Event::new(Severity::Error, name)
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
