//! What happened, in order: kept in a ring so a failing seed can print the
//! steps that led to it.

use std::collections::VecDeque;

#[derive(Debug, Clone)]
pub struct Trace {
    lines: VecDeque<String>,
    keep: usize,
    /// Everything, when replaying one seed (`SIM_TRACE=1`).
    pub echo: bool,
}

impl Trace {
    pub fn new(keep: usize) -> Self {
        Trace { lines: VecDeque::new(), keep, echo: std::env::var("SIM_TRACE").is_ok_and(|v| v == "1") }
    }

    /// Whether notes are kept or printed (else `note` costs nothing).
    pub fn is_on(&self) -> bool {
        self.keep > 0 || self.echo
    }

    pub fn note(&mut self, now: f64, line: impl FnOnce() -> String) {
        if !self.is_on() {
            return;
        }
        let line = format!("{:>10.1} {}", now - 1_000_000.0, line());
        if self.echo {
            eprintln!("{line}");
        }
        if self.keep > 0 {
            if self.lines.len() == self.keep {
                self.lines.pop_front();
            }
            self.lines.push_back(line);
        }
    }

    /// The last steps, one per line.
    pub fn tail(&self) -> String {
        self.lines.iter().cloned().collect::<Vec<_>>().join("\n")
    }
}
