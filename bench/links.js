// The link benchmark under `wrangler dev` (`npm run bench:links`): round
// trips per second through a master/slave link against the same traffic
// within one session.
//
// Within one session: an echo host and 4 clients, each client keeping
// BENCH_LINK_IN_FLIGHT frames (default 16) in flight (a frame goes out each
// time one comes back). Through a link: the same 4 clients belong to a slave
// session whose master's host is the echo host, so every frame crosses the
// link twice (slave → master as `<n>: <frame>`, master → slave as the echo).
// The two alternate for BENCH_LINK_ROUNDS rounds (default 4) of
// BENCH_LINK_SECONDS each (default 8, after a 1 s warm-up) on one relay with
// the rate limits out of the way; the result is the median of the per-round
// ratios link ÷ session. Under `wrangler dev` calls between objects take
// microseconds: what 50–150 ms between colos does to a link is measured on
// the simulator (`cargo run --release -p askutron-sim --example links`).
//
// Writes bench/out/links.json and prints a Markdown table.
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import WebSocket from 'ws';
import { parseHostFrame } from '../client/relay-client.js';
import { ROOT, relaySnapshot, startRelay } from '../tests/helpers/relay.js';
import { percentile } from '../tests/helpers/proc.js';

const CLIENTS = 4;
const IN_FLIGHT = Number(process.env.BENCH_LINK_IN_FLIGHT ?? 16);
const ROUNDS = Number(process.env.BENCH_LINK_ROUNDS ?? 4);
const SECONDS = Number(process.env.BENCH_LINK_SECONDS ?? 8);
const WARMUP_MS = 1000;
const VARS = { RATE_LIMIT_PER_SECOND: '1000000000', RATE_LIMIT_BURST: '1000000000', LOG_LEVEL: 'warn' };

/** A socket with a queue of its text frames and a way to wait for one. */
function socket(url) {
  const ws = new WebSocket(url, { perMessageDeflate: false });
  const s = { ws, lines: [], waiters: [], onLine: null };
  ws.on('message', (data) => {
    const line = data.toString();
    if (s.onLine) return s.onLine(line);
    s.lines.push(line);
    for (const w of s.waiters.splice(0)) w();
  });
  s.opened = new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
    ws.once('unexpected-response', (_q, res) => reject(new Error(`HTTP ${res.statusCode} for ${url}`)));
  });
  s.until = async (re) => {
    for (;;) {
      const i = s.lines.findIndex((l) => re.test(l));
      if (i >= 0) return s.lines.splice(0, i + 1)[i];
      await new Promise((r) => s.waiters.push(r));
    }
  };
  s.close = () => ws.close();
  return s;
}

async function host(relay) {
  const h = socket(`${relay.ws}/session?reconnect=false`);
  await h.opened;
  h.sid = parseHostFrame(await h.until(/^session: /)).sid;
  await h.until(/^secret: /);
  return h;
}

async function clientOf(relay, h) {
  const c = socket(`${relay.ws}/session/${h.sid}`);
  await c.opened;
  await h.until(/^connected: /);
  return c;
}

/** The echo host: every `<n>: <frame>` goes back to client n. */
function echo(h) {
  h.onLine = (line) => {
    const f = parseHostFrame(line);
    if (f.kind === 'message') h.ws.send(`${f.client}: ${f.text}`);
  };
}

/** Sets up a scenario; resolves { clients, close }. */
async function setUp(relay, linked) {
  if (!linked) {
    const h = await host(relay);
    const clients = [];
    for (let i = 0; i < CLIENTS; i++) clients.push(await clientOf(relay, h));
    echo(h);
    return { clients, close: () => [h, ...clients].forEach((s) => s.close()) };
  }
  const master = await host(relay);
  const slave = await host(relay);
  const clients = [];
  for (let i = 0; i < CLIENTS; i++) clients.push(await clientOf(relay, slave));
  master.ws.send('/join-session master');
  slave.ws.send('/join-session slave');
  await master.until(/^!added-slave: /);
  for (let i = 0; i < CLIENTS; i++) await master.until(/^connected: /);
  await slave.until(/^!set-master: /);
  echo(master);
  slave.onLine = () => {}; // the slave's host hears its clients' frames too
  return { clients, close: () => [master, slave, ...clients].forEach((s) => s.close()) };
}

/** Runs the clients' ping-pong; resolves { perSecond, p50, p99 } over the measured time. */
async function measure(clients) {
  let counting = false;
  let count = 0;
  const latencies = [];
  for (const c of clients) {
    c.onLine = (line) => {
      const sent = Number(line);
      if (counting) {
        count++;
        latencies.push(performance.now() - sent);
      }
      c.ws.send(String(performance.now()));
    };
    for (let i = 0; i < IN_FLIGHT; i++) c.ws.send(String(performance.now()));
  }
  await new Promise((r) => setTimeout(r, WARMUP_MS));
  counting = true;
  const start = performance.now();
  await new Promise((r) => setTimeout(r, SECONDS * 1000));
  counting = false;
  const elapsed = (performance.now() - start) / 1000;
  for (const c of clients) c.onLine = () => {};
  return { perSecond: count / elapsed, p50: percentile(latencies, 50), p99: percentile(latencies, 99) };
}

async function main() {
  const snapshot = relaySnapshot();
  const relay = await startRelay({ config: snapshot.config, vars: VARS, traces: false });
  const rounds = [];
  try {
    for (let round = 0; round < ROUNDS; round++) {
      const row = {};
      for (const linked of [false, true]) {
        const s = await setUp(relay, linked);
        row[linked ? 'link' : 'session'] = await measure(s.clients);
        s.close();
      }
      row.ratio = row.link.perSecond / row.session.perSecond;
      rounds.push(row);
      console.log(`round ${round + 1}/${ROUNDS}: session ${row.session.perSecond.toFixed(0)}/s, link ${row.link.perSecond.toFixed(0)}/s, ratio ${row.ratio.toFixed(2)}`);
    }
  } finally {
    await relay.stop();
  }
  const ratios = rounds.map((r) => r.ratio).sort((a, b) => a - b);
  const median = ratios.length % 2 ? ratios[(ratios.length - 1) / 2] : (ratios[ratios.length / 2 - 1] + ratios[ratios.length / 2]) / 2;
  const out = path.join(ROOT, 'bench', 'out');
  mkdirSync(out, { recursive: true });
  writeFileSync(path.join(out, 'links.json'), JSON.stringify({ clients: CLIENTS, inFlight: IN_FLIGHT, seconds: SECONDS, rounds, median }, null, 2));
  const ms = (x) => `${x.toFixed(1)} ms`;
  console.log(`\n${CLIENTS} clients × ${IN_FLIGHT} frames in flight, echoed by a host; ${SECONDS} s per run, wrangler dev on loopback.\n`);
  console.log('| round | within one session: round trips/s (p50 / p99) | through a link: round trips/s (p50 / p99) | link ÷ session |');
  console.log('|---|---|---|---|');
  rounds.forEach((r, i) => console.log(`| ${i + 1} | ${r.session.perSecond.toFixed(0)} (${ms(r.session.p50)} / ${ms(r.session.p99)}) | ${r.link.perSecond.toFixed(0)} (${ms(r.link.p50)} / ${ms(r.link.p99)}) | ${r.ratio.toFixed(2)}× |`));
  console.log(`\nMedian link ÷ session: ${median.toFixed(2)}× (target ≥ 0.8×).`);
}

main().catch((e) => { console.error(e); process.exit(1); });
