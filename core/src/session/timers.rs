//! The one alarm (PROTOCOL.md section 6): keep-alives, the reconnect
//! deadline, figures to report, a search to renew, calls to try again.

use super::effects::Out;
use super::{Effect, SessionCore};

/// A keep-alive due within this much of an alarm is sent by that alarm, so one
/// wake-up serves sockets whose periods started close together.
const KEEP_ALIVE_SLACK_MS: f64 = 5.0;

impl SessionCore {
    pub(super) fn alarm_fired(&mut self, now: f64, out: &mut Out<'_>) {
        // The alarm that fired is gone; whatever is due next is set again.
        self.alarm = Some(None);
        self.timers_dirty = true;
        if !self.live_record(now, out) {
            return;
        }
        let period = self.settings.keep_alive_ms;
        for (&token, info) in self.sockets.iter_mut() {
            let Some(text) = &info.keep_alive else { continue };
            if info.keep_alive_due <= now + KEEP_ALIVE_SLACK_MS {
                // Never part of a resume stream's numbering (section 7).
                out.push(Effect::SendUncounted { to: token, text: text.clone() });
                info.keep_alive_due = now + period;
                out.push(Effect::Attach { socket: token, info: info.clone() });
            }
        }
        self.confirm_timed_out(now, out);
    }

    /// Every deadline the one alarm serves, by name: the reconnect window,
    /// figures, the search, the links' retries, a write to repeat, the
    /// check-up of stored work, resume streams to store, keep-alives. One
    /// list for the alarm and for the trace, so the trace never leaves one
    /// out (seed 352's alarm loop hid in a deadline the trace did not print).
    fn named_deadlines(&self) -> [(&'static str, Option<f64>); 8] {
        [
            ("away", self.record.as_ref().and_then(|r| r.host_away_until)),
            ("figures", self.figures_deadline()),
            ("search", self.search_deadline()),
            ("links", self.links_deadline()),
            ("persist", self.persist_again),
            ("checkup", self.checkup_at),
            ("streams", self.streams_deadline()),
            (
                "keep-alives",
                self.sockets.values().filter(|i| i.keep_alive.is_some()).map(|i| i.keep_alive_due).reduce(f64::min),
            ),
        ]
    }

    /// The earliest deadline.
    pub fn next_deadline(&self) -> Option<f64> {
        self.named_deadlines().into_iter().filter_map(|(_, at)| at).reduce(f64::min)
    }

    /// Each deadline by name, and the calls and search behind them, for a trace.
    pub fn deadlines(&self) -> String {
        let mut line: Vec<String> = self.named_deadlines().iter().map(|(name, at)| format!("{name} {at:?}")).collect();
        line.push(format!("calls {:?}", self.calls.values().collect::<Vec<_>>()));
        line.push(format!(
            "synced {:?}",
            self.record.as_ref().map(|r| (r.group.search_epoch, r.group.search.is_some(), r.group.search_synced))
        ));
        line.push(format!("owed {:?}", self.owed.cancel));
        line.join(" ")
    }

    /// Points the one alarm at the earliest deadline, when that may have
    /// changed (a deadline already past fires at once).
    pub(super) fn schedule(&mut self, now: f64, out: &mut Out<'_>) {
        if !self.timers_dirty {
            return;
        }
        self.timers_dirty = false;
        let wanted = self.next_deadline().map(|at| at.max(now));
        if self.alarm != Some(wanted) {
            self.alarm = Some(wanted);
            out.push(Effect::SetAlarm(wanted));
        }
    }
}
