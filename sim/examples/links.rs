//! The link benchmark (`npm run bench:links`): what one link between a master
//! and a slave carries when their objects are a round trip apart, on the
//! simulator (the real cores, no faults).
//!
//! `cargo run --release -p askutron-sim --example links -- --rtt 100 --rates 500,1000,2000,4000,8000`
//!
//! Setup: a master and a slave session in two colos `--rtt` ms apart (one
//! way is half of it), four clients each, linked by the Matchmaker. Every
//! client sends frames at a steady rate (the rate given is per direction and
//! per group of four clients) to the master's host, which echoes each one
//! back to its sender at once. The slave's clients' frames cross the link
//! both ways: slave to master on the way in (`<n>: <frame>` at the master's
//! host), master to slave on the way back (`<n>: <frame>` from the host).
//! The master's own clients make the same traffic within one session, for
//! comparison. The simulator gives sockets no latency of their own, so a
//! frame's delay is exactly what the relay's objects and the calls between
//! them add.
//!
//! Printed per offered rate: frames/s delivered through the link each way
//! (every frame sent in the measured seconds, counted when it arrives),
//! the delay (p50, p99, max) each way through the link and within the
//! session, the calls/s into a session's object (p99 of 1 s windows: how
//! well the link batches), and whether every frame arrived exactly once and
//! in order. Targets (issue 16): ≥ 2,000 frames/s each way, p99 ≤ one round
//! trip + 20 ms.

use std::collections::HashMap;

use askutron_core::settings::Settings;
use askutron_sim::meter::{Kind, Meter};
use askutron_sim::{Config, Network, ObjectId, Sim, Sock};

const CLIENTS: u32 = 4;
/// The simulation's clock step: frames due within a tick leave at its start.
const TICK_MS: f64 = 1.0;

struct Options {
    rtt_ms: f64,
    rates: Vec<f64>,
    seconds: f64,
}

fn options() -> Options {
    let mut o = Options { rtt_ms: 100.0, rates: vec![500.0, 1000.0, 2000.0, 4000.0, 8000.0], seconds: 10.0 };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--rtt" => o.rtt_ms = value.parse().expect("--rtt <ms>"),
            "--rates" => o.rates = value.split(',').map(|r| r.parse().expect("--rates <n,n,...>")).collect(),
            "--seconds" => o.seconds = value.parse().expect("--seconds <s>"),
            other => panic!("unknown option {other} (--rtt, --rates, --seconds)"),
        }
        i += 2;
    }
    o
}

/// Delays of one path, in ms.
#[derive(Default)]
struct Delays(Vec<f64>);

impl Delays {
    fn quantiles(&mut self) -> (f64, f64, f64) {
        if self.0.is_empty() {
            return (f64::NAN, f64::NAN, f64::NAN);
        }
        self.0.sort_by(f64::total_cmp);
        let at = |q: f64| self.0[((self.0.len() as f64 - 1.0) * q).round() as usize];
        (at(0.5), at(0.99), *self.0.last().expect("not empty"))
    }
}

struct Row {
    offered: f64,
    in_link: f64,
    out_link: f64,
    delays: [(f64, f64, f64); 4],
    session_calls_p99: u32,
    exact: bool,
}

/// Sends `/join-session …` and waits until the line comes.
fn wait_for(sim: &mut Sim, sock: &Sock, prefix: &str) -> String {
    for _ in 0..10_000 {
        if let Some(line) = sim.frames(sock).into_iter().find(|l| l.starts_with(prefix)) {
            return line;
        }
        sim.advance(10.0);
    }
    panic!("no {prefix} line");
}

fn run(o: &Options, rate: f64) -> Row {
    // Rate limits out of the way: this measures the link, not the limits.
    let settings = Settings {
        rate_per_second: 1e9,
        rate_burst: 1e9,
        rate_bytes_per_second: 1e12,
        rate_bytes_burst: 1e12,
        ..Settings::default()
    };
    let network = Network { round_trip_ms: (o.rtt_ms, o.rtt_ms), same_colo_ms: 0.0, colos: 2, ..Network::LOOPBACK };
    let mut sim = Sim::new(Config { network, ..Config::new(settings) });
    sim.keep_history = false;
    sim.place(ObjectId::Session("master".into()), 0);
    sim.place(ObjectId::Session("slave".into()), 1);
    sim.place(ObjectId::Matchmaker, 0);

    let master = sim.host("id=master").expect("master");
    let slave = sim.host("id=slave").expect("slave");
    let own: Vec<Sock> = (0..CLIENTS).map(|_| sim.client("master", "").expect("client")).collect();
    let far: Vec<Sock> = (0..CLIENTS).map(|_| sim.client("slave", "").expect("client")).collect();
    sim.settle();
    sim.send(&master, "/join-session master");
    sim.send(&slave, "/join-session slave");
    wait_for(&mut sim, &slave, "!set-master: ");
    wait_for(&mut sim, &master, "!added-slave: ");
    sim.settle();
    sim.frames(&master);
    sim.frames(&slave);
    // The master's ids: its own clients 1..=4, the slave's 5..=8.
    let by_id: HashMap<u32, (&Sock, bool)> = own
        .iter()
        .enumerate()
        .map(|(i, s)| (i as u32 + 1, (s, false)))
        .chain(far.iter().enumerate().map(|(i, s)| (CLIENTS + i as u32 + 1, (s, true))))
        .collect();

    let start = sim.now;
    let end = start + o.seconds * 1000.0;
    sim.meter = Some(Meter::new(start));
    let per_client_ms = 1000.0 * CLIENTS as f64 / rate;
    let mut next_send: Vec<f64> =
        (0..2 * CLIENTS).map(|i| start + per_client_ms * i as f64 / (2 * CLIENTS) as f64).collect();
    let mut sent = vec![0u64; 2 * CLIENTS as usize];
    let mut got_at_host = vec![0u64; 2 * CLIENTS as usize];
    let mut got_back = vec![0u64; 2 * CLIENTS as usize];
    let mut exact = true;
    // [link in, link out, session in, session out]
    let mut delays: [Delays; 4] = Default::default();
    let (mut in_link, mut out_link) = (0u64, 0u64);
    let socks: Vec<&Sock> = own.iter().chain(far.iter()).collect();

    while sim.now < end + 5_000.0 {
        // Clients send what is due (until the end; then the pipes drain).
        for (i, sock) in socks.iter().enumerate() {
            while next_send[i] <= sim.now && next_send[i] < end {
                sent[i] += 1;
                sim.send_unsettled(sock, &format!("{} {}", sent[i], next_send[i]));
                next_send[i] += per_client_ms;
            }
        }
        sim.advance(TICK_MS);
        // The master's host echoes every client frame back to its sender.
        for r in sim.received(&master) {
            let Some((id, rest)) = r.text.split_once(": ") else { continue };
            let Ok(id) = id.parse::<u32>() else { continue };
            let Some(&(_, through_link)) = by_id.get(&id) else { continue };
            let (n, t) = rest.split_once(' ').expect("n t");
            let index = (id - 1) as usize;
            let n: u64 = n.parse().expect("n");
            got_at_host[index] += 1;
            exact &= n == got_at_host[index];
            delays[if through_link { 0 } else { 2 }].0.push(r.at - t.parse::<f64>().expect("t"));
            if through_link {
                in_link += 1;
            }
            sim.send_unsettled(&master, &format!("{id}: {n} {}", r.at));
        }
        for (i, sock) in socks.iter().enumerate() {
            let through_link = i >= CLIENTS as usize;
            for r in sim.received(sock) {
                let (n, t) = r.text.split_once(' ').expect("n t");
                let n: u64 = n.parse().expect("n");
                got_back[i] += 1;
                exact &= n == got_back[i];
                delays[if through_link { 1 } else { 3 }].0.push(r.at - t.parse::<f64>().expect("t"));
                if through_link {
                    out_link += 1;
                }
            }
        }
        sim.frames(&slave);
    }
    exact &= sent == got_at_host && sent == got_back;
    let mut meter = sim.meter.take().expect("meter");
    meter.finish();
    Row {
        offered: rate,
        in_link: in_link as f64 / o.seconds,
        out_link: out_link as f64 / o.seconds,
        delays: delays.each_mut().map(|d| d.quantiles()),
        session_calls_p99: meter.percentiles(Kind::Session).1,
        exact,
    }
}

fn main() {
    let o = options();
    println!(
        "One link, master and slave {} ms apart (round trip), {CLIENTS} clients each sending to the master's host, echoed back; {} s per rate.",
        o.rtt_ms, o.seconds
    );
    println!(
        "| offered frames/s each way | through the link, slave → master | master → slave | delay in p50 / p99 / max (ms) | delay out p50 / p99 / max (ms) | within the session p99 in / out (ms) | calls/s into a session (p99) | every frame once, in order |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let mut ok = true;
    let mut at_target = None;
    for &rate in &o.rates {
        let r = run(&o, rate);
        let [li, lo, si, so] = r.delays;
        println!(
            "| {:.0} | {:.0} | {:.0} | {:.1} / {:.1} / {:.1} | {:.1} / {:.1} / {:.1} | {:.1} / {:.1} | {} | {} |",
            r.offered,
            r.in_link,
            r.out_link,
            li.0,
            li.1,
            li.2,
            lo.0,
            lo.1,
            lo.2,
            si.1,
            so.1,
            r.session_calls_p99,
            if r.exact { "yes" } else { "NO" }
        );
        ok &= r.exact;
        let bound = o.rtt_ms + 20.0;
        if r.in_link >= 0.99 * rate && r.out_link >= 0.99 * rate && li.1 <= bound && lo.1 <= bound {
            at_target = Some(rate);
        }
    }
    match at_target {
        Some(rate) => println!(
            "Highest offered rate carried in full with p99 ≤ {:.0} ms (round trip + 20 ms) each way: {rate:.0} frames/s (target ≥ 2000).",
            o.rtt_ms + 20.0
        ),
        None => println!("No offered rate was carried in full with p99 ≤ {:.0} ms.", o.rtt_ms + 20.0),
    }
    if !ok {
        eprintln!("some frames were lost, doubled or reordered");
        std::process::exit(1);
    }
}
