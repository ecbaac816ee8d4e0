//! Linked sessions (PROTOCOL.md section 4), as this session sees them: the
//! Matchmaker's steps that make a link, and how a link ends on this side (a
//! partner's messages over a link are in `link_messages.rs`).
//!
//! A link is made in three steps (ARCHITECTURE.md, "Making a link"): the
//! Matchmaker offers the slave the link (the slave holds it as pending and
//! answers with its clients), then asks the master to lead it (the master
//! tells its host `!added-slave:` and the slave's `connected:` lines, and
//! sends `Welcome` over the link), and the slave's host hears `!set-master:`
//! only when `Welcome` arrives. A master that cannot lead (it closed, left,
//! its host is away) refuses, and the slave forgets the link without its
//! host ever hearing of it: a host never hears a link line about a session
//! that is not its partner.

use std::collections::BTreeSet;

use crate::calls::{LinkId, LinkMsg, Step, StepAnswer};
use crate::channel::Outbound;
use crate::group::{ClosingLink, MasterLink, SlaveLink};
use crate::journal::Event;
use crate::wire::say;

use super::effects::Out;
use super::{Effect, SessionCore};

/// How a link ends on this side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ending {
    /// This session's host left it, or the session ended: the partner hears
    /// `Left`; this host hears nothing more (it asked, or is gone).
    Left,
    /// The partner ended it (its `Left` arrived): this host hears the notice.
    PartnerLeft,
    /// The partner does not hold the link, cannot be reached, or a message
    /// of its did not fit the queue: this host hears the notice, the partner
    /// hears `Left`.
    Broken,
    /// A slave's link its master never confirmed: nobody heard of it.
    Abandoned,
}

impl Ending {
    fn reason(self) -> &'static str {
        match self {
            Ending::Left => "left",
            Ending::PartnerLeft => "partner left",
            Ending::Broken => "partner unreachable or out of room",
            Ending::Abandoned => "never confirmed",
        }
    }
}

impl SessionCore {
    // ---- the Matchmaker's steps ---------------------------------------------------

    pub(super) fn take_step(&mut self, now: f64, step: Step, out: &mut Out<'_>) -> StepAnswer {
        match step {
            Step::Offer { link, master, offset, epoch } => self.take_offer(now, link, master, offset, epoch, out),
            Step::Lead { link, slave, offset, span, clients, fills } => {
                self.take_lead(now, link, slave, offset, span, clients, fills, out)
            }
            Step::Undo { link } => self.undo(link, out),
        }
    }

    fn take_offer(
        &mut self,
        now: f64,
        link: LinkId,
        master: String,
        offset: u32,
        epoch: u64,
        out: &mut Out<'_>,
    ) -> StepAnswer {
        let Some(record) = self.record.as_mut() else { return StepAnswer::Refused };
        let group = &mut record.group;
        let repeated = group.master.as_ref().is_some_and(|m| m.link == link);
        if !repeated {
            // It may have stopped searching, or linked otherwise, meanwhile.
            let searching = group.search.is_some() && group.search_epoch == epoch;
            if !searching || group.is_linked() || master == record.id {
                return StepAnswer::Refused;
            }
            group.master = Some(MasterLink {
                sid: master.clone(),
                offset,
                link,
                confirmed: false,
                since: now,
                applied: 0,
                outbox: Vec::new(),
                told: BTreeSet::new(),
            });
            let mut channel = Outbound::new(&master, link, now);
            channel.pause();
            self.channels.insert(link, channel);
            self.persist(out);
        }
        let record = self.record.as_mut().expect("checked");
        let clients: BTreeSet<u32> =
            self.clients.keys().filter_map(|&id| record.group.id_at_master(id).map(|(_, n)| n)).collect();
        let master = record.group.master.as_mut().expect("just taken");
        if master.told != clients {
            master.told = clients.clone();
            self.persist(out);
        }
        StepAnswer::Accepted { clients: clients.into_iter().collect() }
    }

    #[allow(clippy::too_many_arguments)]
    fn take_lead(
        &mut self,
        now: f64,
        link: LinkId,
        slave: String,
        offset: u32,
        span: u32,
        clients: Vec<u32>,
        fills: bool,
        out: &mut Out<'_>,
    ) -> StepAnswer {
        let own: Vec<u32> = self.clients.keys().copied().collect();
        let max = self.settings.max_clients;
        let Some(record) = self.record.as_mut() else { return StepAnswer::Refused };
        let group = &mut record.group;
        if group.slave_by_link(link).is_some() {
            return StepAnswer::Accepted { clients: Vec::new() };
        }
        // It may have closed, left, lost its host or linked otherwise
        // meanwhile: "stop being joinable" holds for links in flight too.
        let frozen = group.frozen.clone().unwrap_or(own);
        let own_top = frozen.last().copied().unwrap_or(0);
        let overlaps = offset < own_top
            || group.slaves.iter().any(|s| offset < s.offset + s.span && s.offset < offset + span || s.sid == slave);
        let count = frozen.len() as u32 + group.slaves.iter().map(|s| s.span).sum::<u32>() + span;
        let refusal = if group.search.is_none() {
            Some("not searching")
        } else if group.master.is_some() {
            Some("a slave")
        } else if group.slaves.len() as u32 >= max {
            Some("as many slaves as MAX_CLIENTS")
        } else if overlaps {
            Some("range taken")
        } else if count > max {
            Some("over MAX_CLIENTS")
        } else if slave == record.id {
            Some("itself")
        } else {
            None
        };
        if let Some(why) = refusal {
            out.push(Effect::Log(
                Event::info("link_refused").with("master", record.id.as_str()).with("slave", slave).with("reason", why),
            ));
            return StepAnswer::Refused;
        }
        let clients: BTreeSet<u32> = clients.into_iter().filter(|&n| n > offset && n <= offset + span).collect();
        group.frozen = Some(frozen);
        group.slaves.push(SlaveLink {
            sid: slave.clone(),
            offset,
            span,
            clients: clients.clone(),
            link,
            applied: 0,
            outbox: Vec::new(),
        });
        if fills {
            // The Matchmaker took the full master out of its pool.
            group.search = None;
            group.search_synced = Some((group.search_epoch, false));
        }
        let sid = record.id.clone();
        let mut channel = Outbound::new(&slave, link, now);
        channel.push(LinkMsg::Welcome).expect("durable messages always fit");
        self.channels.insert(link, channel);
        self.persist(out);
        self.tell_host(out, say::added_slave(&slave));
        for n in clients {
            self.tell_host(out, say::connected(n));
        }
        out.push(Effect::Log(link_made(&sid, &slave, offset)));
        StepAnswer::Accepted { clients: Vec::new() }
    }

    fn undo(&mut self, link: LinkId, out: &mut Out<'_>) -> StepAnswer {
        let Some(record) = self.record.as_mut() else { return StepAnswer::Undone { searching: None } };
        let group = &mut record.group;
        if group.master.as_ref().is_some_and(|m| m.link == link && !m.confirmed) {
            group.master = None;
            self.channels.remove(&link);
            self.persist(out);
        }
        let group = &self.record.as_ref().expect("checked").group;
        let searching = (group.search.is_some() && group.master.is_none()).then_some(group.search_epoch);
        StepAnswer::Undone { searching }
    }

    // ---- how a link ends ---------------------------------------------------------------

    /// `/leave-session`, also run when a session ends: every link ends.
    pub(super) fn leave_links(&mut self, now: f64, out: &mut Out<'_>) {
        let Some(record) = self.record.as_ref() else { return };
        let slaves: Vec<LinkId> = record.group.slaves.iter().map(|s| s.link).collect();
        // The master's host no longer reaches its slaves' clients.
        let gone: BTreeSet<u32> = record.group.slave_clients().collect();
        for n in gone {
            self.tell_host(out, say::disconnected(n));
        }
        for link in slaves {
            self.end_slave_link(now, link, Ending::Left, out);
        }
        if self.record.as_ref().is_some_and(|r| r.group.master.is_some()) {
            self.end_master_link(now, Ending::Left, out);
        }
    }

    /// This slave's link to its master ends here.
    pub(super) fn end_master_link(&mut self, now: f64, how: Ending, out: &mut Out<'_>) {
        let Some(record) = self.record.as_mut() else { return };
        let Some(master) = record.group.master.take() else { return };
        let sid = record.id.clone();
        self.close_channel(master.link, &master.sid, how, out);
        if how != Ending::Abandoned {
            self.stop_search(now, out);
        }
        if let Some(record) = self.record.as_mut() {
            record.group.thaw_if_idle();
        }
        self.persist(out);
        if matches!(how, Ending::PartnerLeft | Ending::Broken) && master.confirmed {
            self.deliver_notice(say::MASTER_LEFT.to_string(), out);
        }
        if master.confirmed {
            out.push(Effect::Log(link_ended(&master.sid, &sid, how.reason())));
        }
    }

    /// One of this master's links ends here: its clients first, then the notice.
    pub(super) fn end_slave_link(&mut self, now: f64, link: LinkId, how: Ending, out: &mut Out<'_>) {
        let Some(record) = self.record.as_mut() else { return };
        let Some(pos) = record.group.slaves.iter().position(|s| s.link == link) else { return };
        let slave = record.group.slaves.remove(pos);
        let sid = record.id.clone();
        self.close_channel(link, &slave.sid, how, out);
        if how != Ending::Left {
            for &n in &slave.clients {
                if !self.deliver_notice(say::disconnected(n), out) {
                    // Kept for the take-over: n is not free until then.
                    self.record.as_mut().expect("linked").unheard_gone.insert(n);
                }
            }
            self.deliver_notice(say::slave_left(&slave.sid), out);
        }
        self.stop_search(now, out);
        if let Some(record) = self.record.as_mut() {
            record.group.thaw_if_idle();
        }
        self.persist(out);
        out.push(Effect::Log(link_ended(&sid, &slave.sid, how.reason())));
    }

    /// The link's sender: it delivers `Left` unless the partner ended the
    /// link or never held it; until then the link is owed.
    fn close_channel(&mut self, link: LinkId, peer: &str, how: Ending, out: &mut Out<'_>) {
        let Some(mut channel) = self.channels.remove(&link) else { return };
        if how == Ending::PartnerLeft {
            return;
        }
        // An abandoned link's master may have taken it meanwhile: it hears
        // `Left` too (or answers that it never held the link).
        channel.close();
        self.owed.closing.push(ClosingLink { peer: peer.to_string(), link, outbox: channel.durable() });
        self.channels.insert(link, channel);
        self.persist(out);
    }
}

pub(super) fn link_made(master: &str, slave: &str, offset: u32) -> Event {
    Event::info("link_made").with("master", master).with("slave", slave).with("offset", offset)
}

fn link_ended(master: &str, slave: &str, why: &'static str) -> Event {
    Event::info("link_ended").with("master", master).with("slave", slave).with("reason", why)
}
