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

    /// The earliest deadline: reconnect window, keep-alives, figures, the
    /// search, the links' retries.
    pub fn next_deadline(&self) -> Option<f64> {
        let record = self.record.as_ref();
        let keep_alives = self.sockets.values().filter(|i| i.keep_alive.is_some()).map(|i| i.keep_alive_due);
        [
            record.and_then(|r| r.host_away_until),
            self.figures_deadline(),
            self.search_deadline(),
            self.links_deadline(),
            self.persist_again,
            self.checkup_at,
            self.streams_deadline(),
        ]
        .into_iter()
        .flatten()
        .chain(keep_alives)
        .reduce(f64::min)
    }

    /// Each deadline by name, for a trace.
    pub fn deadlines(&self) -> String {
        let record = self.record.as_ref();
        format!(
            "away {:?} figures {:?} search {:?} links {:?} persist {:?} checkup {:?} streams {:?} keep-alives {:?} calls {:?} synced {:?} owed {:?}",
            record.and_then(|r| r.host_away_until),
            self.figures_deadline(),
            self.search_deadline(),
            self.links_deadline(),
            self.persist_again,
            self.checkup_at,
            self.streams_deadline(),
            self.sockets.values().filter(|i| i.keep_alive.is_some()).map(|i| i.keep_alive_due).reduce(f64::min),
            self.calls.values().collect::<Vec<_>>(),
            record.map(|r| (r.group.search_epoch, r.group.search.is_some(), r.group.search_synced)),
            self.owed.cancel,
        )
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
