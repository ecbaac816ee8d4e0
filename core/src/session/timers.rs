//! The one alarm (PROTOCOL.md section 6): keep-alives, the reconnect
//! deadline, batched figures for `/stats`.

use std::borrow::Cow;

use crate::calls::MatchmakerCall;
use crate::stats::SessionCounts;

use super::*;

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
                out.push(Effect::Send { to: token, text: Cow::Owned(text.clone()) });
                info.keep_alive_due = now + period;
                out.push(Effect::Attach { socket: token, info: info.clone() });
            }
        }
        self.flush_stats(now, out);
    }

    /// Figures changed: report them soon, batched. The due time is only
    /// memory: after a wake-up, the alarm it set reports whatever changed.
    pub(super) fn stats_changed(&mut self, now: f64) {
        if self.record.is_some() && self.stats_due.is_none() {
            self.stats_due = Some(now + STATS_DELAY_MS);
            self.timers_dirty = true;
        }
    }

    pub(super) fn flush_stats(&mut self, now: f64, out: &mut Out<'_>) {
        let counts = SessionCounts::new(self.host.is_some(), self.clients.len() as u32);
        if self.stats_due.is_some_and(|due| due > now) {
            return;
        }
        self.stats_due = None;
        let Some(record) = self.record.as_mut() else { return };
        if counts != record.stats_reported {
            record.stats_reported = counts;
            let call = MatchmakerCall::Report { sid: record.id.clone(), counts };
            Self::call_matchmaker(out, call, Purpose::Notice);
            self.persist(out);
        }
    }

    /// The earliest deadline: reconnect window, stats report, keep-alives.
    pub fn next_deadline(&self) -> Option<f64> {
        let record = self.record.as_ref()?;
        let keep_alives = self.sockets.values().filter(|i| i.keep_alive.is_some()).map(|i| i.keep_alive_due);
        [record.host_away_until, self.stats_due].into_iter().flatten().chain(keep_alives).reduce(f64::min)
    }

    /// Points the one alarm at the earliest deadline, when that may have changed.
    pub(super) fn schedule(&mut self, out: &mut Out<'_>) {
        if !self.timers_dirty {
            return;
        }
        self.timers_dirty = false;
        let wanted = self.next_deadline();
        if self.alarm != Some(wanted) {
            self.alarm = Some(wanted);
            out.push(Effect::SetAlarm(wanted));
        }
    }
}
