// `npm run bench`: the relay (Rust → wasm) against a PartyServer peer and a
// bare JavaScript Durable Object (the floor) doing the same host/client relay,
// all under the same `wrangler dev` (workerd), driven by the same load
// generator (bench/loadgen.js, in child processes), in alternating rounds
// (relay, peer, bare, relay, peer, bare, …). Then the relay alone: the
// Matchmaker's capacity, the idle cost of keep-alive, what floods cost
// (bench/flood.js) and what heartbeat and resume (PROTOCOL.md section 7)
// cost and how fast they find a silent death. Writes
// bench/results.md. Settings: environment variables BENCH_* below.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir, totalmem, hostname } from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { ROOT, VERSION, WRANGLER, relaySnapshot, sleep, startRelay, wranglerEnv } from '../tests/helpers/relay.js';
import { cpuMeter, fdLimit, openFds, rssKiB } from '../tests/helpers/proc.js';
import { Loadgen } from './lib/driver.js';
import { FLOOD_PARTS, floodReport } from './flood.js';

const env = (name, dflt) => (process.env[name] ? Number(process.env[name]) : dflt);
const CFG = {
  rounds: env('BENCH_ROUNDS', 2),
  throughputClients: 8,
  throughputWindow: env('BENCH_WINDOW', 16), // messages in flight per client
  throughputWarmupMs: 1500,
  throughputMs: env('BENCH_THROUGHPUT_MS', 8000),
  messageBytes: 32,
  latencyRate: env('BENCH_LATENCY_RATE', 200),
  latencyWarmupMs: 1000,
  latencyMs: env('BENCH_LATENCY_MS', 8000),
  idleSessions: env('BENCH_IDLE_SESSIONS', 50),
  idleClients: 2,
  idleMs: env('BENCH_IDLE_MS', 15000),
  manySessions: env('BENCH_SESSIONS', 600),
  manyClients: env('BENCH_CLIENTS', 5),
  manyProcs: env('BENCH_PROCS', 2),
  manyConcurrency: env('BENCH_CONCURRENCY', 16), // sessions being set up at once, per process
  manyIdleMs: env('BENCH_MANY_IDLE_MS', 15000),
  // The Matchmaker (relay only).
  mmSearchHosts: env('BENCH_MM_HOSTS', 1000), // hosts searching at once (pairs = half)
  mmStatsSessions: env('BENCH_MM_STATS_SESSIONS', 1000), // sessions whose client count changes at once
  // Idle cost of keep-alive (relay only).
  kaSessions: env('BENCH_KA_SESSIONS', 20),
  kaPeriodSeconds: env('BENCH_KA_PERIOD', 15), // KEEP_ALIVE_SECONDS for the measurement (30 in production)
  kaPeriods: env('BENCH_KA_PERIODS', 3), // periods measured
  kaPlainMs: env('BENCH_KA_PLAIN_MS', 20000),
  // Floods against the default limits (relay only).
  floodFrames: env('BENCH_FLOOD_FRAMES', 50000), // sent at once by a client, then by a host
  floodSlowMiB: env('BENCH_FLOOD_SLOW_MB', 24), // to a client that does not read (within a host's byte burst)
  floodStreamMiB: env('BENCH_FLOOD_STREAM_MB', 128), // at most, streamed past the byte limit
  // Heartbeat and resume (relay only), through the client library.
  resumeRounds: env('BENCH_RESUME_ROUNDS', 2), // off, on, off, on, …
  resumeThroughputMs: env('BENCH_RESUME_THROUGHPUT_MS', 6000),
  resumeLatencyMs: env('BENCH_RESUME_LATENCY_MS', 6000),
  deathClients: env('BENCH_DEATH_CLIENTS', 20), // connections cut at once, each behind its own proxy
  deathRounds: env('BENCH_DEATH_ROUNDS', 3), // per traffic mode (busy and idle)
  deathHz: env('BENCH_DEATH_HZ', 20), // frames a second per client in the busy mode
};
const LIFECYCLE = /lifecycle: session object constructed/;
// The relay's per-socket rate limit (1000 frames/s) would cap the host's
// answers in the throughput run; the others have none, so lift it.
const NO_RATE_LIMIT = { RATE_LIMIT_PER_SECOND: '1000000000', RATE_LIMIT_BURST: '1000000000' };
// BENCH_RELAY_VARS=KEY:VALUE,KEY:VALUE: more variables for the relay (e.g. AGGREGATOR_LEAVES:32).
const RELAY_VARS = Object.fromEntries((process.env.BENCH_RELAY_VARS || '').split(',').filter(Boolean).map((kv) => kv.split(':')));
const IMPLS = [
  { key: 'relay', name: 'relay (Rust/wasm)', config: null /* a snapshot of build/, made in main() */, vars: { LOG_LIFECYCLE: 'true', LOG_LEVEL: 'warn', ...NO_RATE_LIMIT, ...RELAY_VARS } },
  { key: 'peer', name: 'PartyServer (TS)', config: path.join(ROOT, 'bench/peer/wrangler.toml'), vars: { LOG_LIFECYCLE: 'true' } },
  { key: 'bare', name: 'bare JS DO', config: path.join(ROOT, 'bench/bare/wrangler.toml'), vars: { LOG_LIFECYCLE: 'true' } },
];
// wrangler dev's trace collector (dev-only work per WebSocket event) is off
// unless BENCH_LOCAL_OBSERVABILITY=1.
const TRACES = process.env.BENCH_LOCAL_OBSERVABILITY === '1';
const want = (name) => !process.env.BENCH_SCENARIOS || process.env.BENCH_SCENARIOS.split(',').includes(name);

const log = (...a) => console.error('[bench]', ...a);

function rss(w) {
  return rssKiB(w.runtimePid) + (w.proxyPid ? rssKiB(w.proxyPid) : 0);
}

function meterFor(w, loadgens) {
  return cpuMeter({
    workerd: [w.runtimePid],
    proxy: w.proxyPid ? [w.proxyPid] : [],
    wrangler: w.wranglerPids,
    ...Object.fromEntries(loadgens.map((l) => [l.name, [l.pid]])),
  });
}

/** CPU summary: workerd (runtime), its busiest thread, each load generator, the machine. */
function cpuSummary(m, loadgens) {
  const lg = loadgens.map((l) => m[l.name]);
  return {
    workerd: m.workerd.pct, workerdThread: m.workerd.busiestThreadPct, proxy: m.proxy.pct, wrangler: m.wrangler.pct,
    loadgenMax: Math.max(...lg.map((x) => x.pct)), loadgenSum: lg.reduce((a, x) => a + x.pct, 0),
    loadgenProcs: lg.length, machine: m.machine.pct,
  };
}

async function throughputAndLatency(w, r) {
  const hostGen = new Loadgen('loadgen-host');
  const clientGen = new Loadgen('loadgen-clients');
  const gens = [hostGen, clientGen];
  try {
    const { sid } = await hostGen.call('host', { base: w.runtimeWs });
    await clientGen.call('clients', { base: w.runtimeWs, sid, count: CFG.throughputClients });
    await hostGen.call('waitConnected', { n: CFG.throughputClients });

    log('throughput');
    r.throughput = await echoThroughput(w, gens, clientGen, CFG.throughputMs);
    log(`  ${Math.round(r.throughput.roundTrips)} round trips/s`, fmtCpu(r.throughput.cpu));

    log('latency');
    const meter2 = meterFor(w, gens);
    const l = await clientGen.call('latency', {
      rate: CFG.latencyRate, warmupMs: CFG.latencyWarmupMs, durationMs: CFG.latencyMs, size: CFG.messageBytes,
    });
    r.latency = { ...l, cpu: cpuSummary(meter2.stop(), gens) };
    log(`  p50 ${l.p50?.toFixed(2)} ms, p99 ${l.p99?.toFixed(2)} ms, max ${l.max?.toFixed(2)} ms (${l.measured} samples, ${l.lost} lost)`);
    const st = [await hostGen.call('status'), await clientGen.call('status')];
    r.latency.unexpectedCloses = st[0].unexpectedCloses + st[1].unexpectedCloses;
  } finally {
    await Promise.all(gens.map((g) => g.stop()));
  }
}

async function idle(w, r) {
  log(`idle: ${CFG.idleSessions} sessions × ${CFG.idleClients} clients, ${CFG.idleMs / 1000} s pause`);
  const gen = new Loadgen('loadgen-idle');
  try {
    const s = await gen.call('sessions', { base: w.runtimeWs, count: CFG.idleSessions, clients: CFG.idleClients, concurrency: 10 });
    if (s.failed) throw new Error(`idle setup failed: ${s.errors.join('; ')}`);
    const warm = await gen.call('relayCheck', {});
    await sleep(1500);
    const constructedBefore = w.count(LIFECYCLE);
    const rssBefore = rss(w);
    const meter = meterFor(w, [gen]);
    await sleep(CFG.idleMs);
    const idleCpu = cpuSummary(meter.stop(), [gen]);
    const constructedIdle = w.count(LIFECYCLE);
    const rssAfter = rss(w);
    const wake = await gen.call('relayCheck', {});
    await sleep(1500);
    const constructedAfter = w.count(LIFECYCLE);
    const st = await gen.call('status');
    r.idle = {
      sessions: s.ok, warm, wake, rssBefore, rssAfter, open: st.open, unexpectedCloses: st.unexpectedCloses, idleCpu,
      constructedBefore, constructedIdle, constructedAfter, reconstructed: constructedAfter - constructedIdle,
    };
    log(`  constructions: ${constructedBefore} before, ${constructedIdle} after the pause, ${constructedAfter} after one message each;`,
      `wake relay ${wake.ok}/${wake.sessions} ok, p50 ${wake.p50?.toFixed(1)} ms (warm ${warm.p50?.toFixed(1)} ms)`);
  } finally {
    await gen.stop();
  }
}

async function many(w, r) {
  const { manyClients: C, manyProcs: P } = CFG;
  await sleep(2000);
  // workerd holds every WebSocket's TCP socket in 2 file descriptors, and each
  // awake Durable Object's SQLite database in 3 (db, -wal, -shm). Past its
  // open-file limit it fails ("Too many open files") and wrangler restarts it,
  // dropping every socket, so stay below the limit unless BENCH_FD_CAP=0.
  const limit = fdLimit(w.runtimePid);
  const baseline = openFds(w.runtimePid);
  const fdsPerSession = 2 * (1 + C) + 3;
  const fit = Math.floor((limit - baseline - 300) / fdsPerSession);
  const S = process.env.BENCH_FD_CAP === '0' ? CFG.manySessions : Math.min(CFG.manySessions, fit);
  r.many = { target: CFG.manySessions, capped: S < CFG.manySessions ? { limit, baseline, fdsPerSession, fit } : null };
  log(`many sessions: ${S} × (1 host + ${C} clients) from ${P} processes`,
    S < CFG.manySessions ? `(target ${CFG.manySessions}: does not fit workerd's open-file limit ${limit}, ${fdsPerSession} per session)` : '');
  const rss0 = rss(w);
  const gens = Array.from({ length: P }, (_, i) => new Loadgen(`loadgen-${i + 1}`));
  try {
    const meter = meterFor(w, gens);
    const per = gens.map((_, i) => Math.floor(S / P) + (i < S % P ? 1 : 0));
    const results = await Promise.all(gens.map((g, i) => g.call('sessions', {
      base: w.runtimeWs, count: per[i], clients: C, concurrency: CFG.manyConcurrency,
    })));
    const cpu = cpuSummary(meter.stop(), gens);
    const ok = results.reduce((a, x) => a + x.ok, 0);
    const seconds = Math.max(...results.map((x) => x.seconds));
    const errors = [...new Set(results.flatMap((x) => x.errors))];
    await sleep(2000);
    const rss1 = rss(w);
    const fds = openFds(w.runtimePid);
    const st1 = await Promise.all(gens.map((g) => g.call('status')));
    const open1 = st1.reduce((a, x) => a + x.open, 0);
    log(`  ${ok}/${S} sessions in ${seconds.toFixed(1)} s (${Math.round((ok * (C + 1)) / seconds)} sockets/s), ${open1} sockets open;`,
      `workerd RSS ${mib(rss0)} → ${mib(rss1)} MiB`, errors.length ? `errors: ${errors.join('; ')}` : '', fmtCpu(cpu));
    const idleMeter = meterFor(w, gens);
    await sleep(CFG.manyIdleMs);
    const idleCpu = cpuSummary(idleMeter.stop(), gens);
    const rss2 = rss(w);
    const constructedIdle = w.count(LIFECYCLE);
    const check = await Promise.all(gens.map((g) => g.call('relayCheck', {})));
    await sleep(1500);
    const reconstructed = w.count(LIFECYCLE) - constructedIdle;
    const st2 = await Promise.all(gens.map((g) => g.call('status')));
    r.many = {
      ...r.many, tried: S, clients: C, ok, failed: S - ok, errors, seconds, sockets: ok * (C + 1), open: open1,
      openAfterIdle: st2.reduce((a, x) => a + x.open, 0), unexpectedCloses: st2.reduce((a, x) => a + x.unexpectedCloses, 0),
      socketsPerSecond: (ok * (C + 1)) / seconds, sessionsPerSecond: ok / seconds,
      setupP50: Math.max(...results.map((x) => x.setupP50 ?? 0)),
      rss0, rss1, rss2, fds, cpu, idleCpu, reconstructed,
      checkOk: check.reduce((a, x) => a + x.ok, 0), checkFailed: check.reduce((a, x) => a + x.failed, 0),
      checkP50: Math.max(...check.map((x) => x.p50 ?? 0)), checkMax: Math.max(...check.map((x) => x.max ?? 0)),
    };
    log(`  after ${CFG.manyIdleMs / 1000} s idle: RSS ${mib(rss2)} MiB; one message per session: ${r.many.checkOk} ok, ${r.many.checkFailed} failed,`,
      `${reconstructed} objects constructed again`);
  } finally {
    await Promise.all(gens.map((g) => g.stop()));
  }
}

/**
 * The Matchmaker and the figures' aggregators (relay only), in their own
 * `wrangler dev` with MAX_CLIENTS=2 so that every host with 1 client pairs
 * with exactly one other.
 *  - /stats reports: N sessions × 1 client; every client is dropped at once,
 *    so each session reports its new count (one call to its leaf aggregator,
 *    1 s after the change, batched by the session; leaves and branches pass
 *    totals up at most once a second); an observer host polls /stats until
 *    it shows 0 clients.
 *  - searches: H hosts × 1 client all send `/join-session` at once; each must
 *    get `!set-master:` or `!added-slave:`.
 */
async function matchmaker(w, r) {
  const P = CFG.manyProcs;
  const gens = Array.from({ length: P }, (_, i) => new Loadgen(`loadgen-mm-${i + 1}`));
  const split = (n) => gens.map((_, i) => Math.floor(n / P) + (i < n % P ? 1 : 0));
  const setup = async (n, group, clients) => {
    const res = await Promise.all(gens.map((g, i) => g.call('sessions', { base: w.runtimeWs, count: split(n)[i], clients, concurrency: CFG.manyConcurrency, group })));
    const ok = res.reduce((a, x) => a + x.ok, 0);
    if (ok < n) throw new Error(`matchmaker setup: ${ok}/${n} sessions (${[...new Set(res.flatMap((x) => x.errors))].join('; ')})`);
  };
  try {
    await gens[0].call('sessions', { base: w.runtimeWs, count: 1, clients: 0, concurrency: 1, group: 'observer' });
    const N = CFG.mmStatsSessions;
    log(`matchmaker /stats: ${N} sessions × 1 client`);
    await setup(N, 'stats', 1);
    const base = await gens[0].call('statsUntil', { group: 'observer', until: N, timeoutMs: 60_000, intervalMs: 200 });
    const meter = meterFor(w, gens);
    const t0 = performance.now();
    await Promise.all(gens.map((g) => g.call('dropClients', { group: 'stats' })));
    const dropMs = performance.now() - t0;
    const seen = await gens[0].call('statsUntil', { group: 'observer', until: 0, timeoutMs: 60_000, intervalMs: 20 });
    const cpu = cpuSummary(meter.stop(), gens);
    const totalMs = dropMs + seen.ms;
    // Sessions report 1 s (STATS_DELAY_MS in src/session_object.rs) after a change.
    const absorbMs = Math.max(1, totalMs - 1000);
    r.stats = { sessions: N, baselineMs: base.ms, dropMs, totalMs, polls: seen.polls, reportsPerSecond: N / (absorbMs / 1000), cpu };
    log(`  ${N} reports absorbed ${Math.round(totalMs)} ms after the drop (${Math.round(absorbMs)} ms after the 1 s batching delay): ~${n0(r.stats.reportsPerSecond)} reports/s`, fmtCpu(cpu));

    const H = CFG.mmSearchHosts;
    log(`matchmaker searches: ${H} hosts × 1 client, all sending /join-session at once`);
    await setup(H, 'search', 1);
    await sleep(2500); // their own /stats reports settle first
    const meter2 = meterFor(w, gens);
    const res = await Promise.all(gens.map((g) => g.call('search', { group: 'search', timeoutMs: 120_000 })));
    const cpu2 = cpuSummary(meter2.stop(), gens);
    const linked = res.reduce((a, x) => a + x.linked, 0);
    const pairs = res.reduce((a, x) => a + x.slaveLines, 0);
    const seconds = Math.max(...res.map((x) => x.seconds));
    const other = {};
    for (const x of res) for (const [k, c] of Object.entries(x.other)) other[k] = (other[k] ?? 0) + c;
    r.search = {
      hosts: H, linked, pairs, masterLines: res.reduce((a, x) => a + x.masterLines, 0), seconds,
      pairsPerSecond: pairs / seconds, searchesPerSecond: linked / seconds, p50: Math.max(...res.map((x) => x.p50 ?? 0)), other, cpu: cpu2,
    };
    log(`  ${linked}/${H} hosts linked (${pairs} pairs) in ${seconds.toFixed(2)} s: ${n0(r.search.pairsPerSecond)} pairs/s, ${n0(r.search.searchesPerSecond)} searches matched/s`,
      Object.keys(other).length ? `other lines: ${JSON.stringify(other)}` : '', fmtCpu(cpu2));
    const st = await Promise.all(gens.map((g) => g.call('status')));
    r.unexpectedCloses = st.reduce((a, x) => a + x.unexpectedCloses, 0);
  } finally {
    await Promise.all(gens.map((g) => g.stop()));
  }
}

/**
 * Idle cost of keep-alive (relay only), in its own `wrangler dev` with
 * KEEP_ALIVE_SECONDS shortened to kaPeriodSeconds. Constructions of session
 * objects (LOG_LIFECYCLE) tell when an evicted object was woken:
 *  1. K sessions without keep-alive: constructions while they sit idle.
 *  2. The eviction delay: wake those K at once, then message session i after
 *     d_i seconds; a construction at that message means it had been evicted.
 *  3. K sessions with keep-alive (host and client): constructions over a few
 *     periods, and the keep-alive texts received.
 * Awake fraction ≈ wakes per period × eviction delay ÷ period.
 */
async function keepAlive(w, r) {
  const K = CFG.kaSessions;
  const P = CFG.kaPeriodSeconds;
  const gen = new Loadgen('loadgen-ka');
  try {
    log(`keep-alive idle cost: ${K} sessions without keep-alive, idle ${CFG.kaPlainMs / 1000} s`);
    await gen.call('sessions', { base: w.runtimeWs, count: K, clients: 1, concurrency: 10, group: 'plain' });
    await sleep(2000);
    const c0 = w.count(LIFECYCLE);
    const meter = meterFor(w, [gen]);
    await sleep(CFG.kaPlainMs);
    const plainCpu = cpuSummary(meter.stop(), [gen]);
    const plainWakes = w.count(LIFECYCLE) - c0;

    // The eviction delay, bracketed.
    const delays = [6, 8, 9, 10, 11, 12, 14].filter((_, i) => i < K);
    log(`  eviction delay: wake ${K} objects, then message one after each of ${delays.join(', ')} s`);
    await gen.call('relayCheck', { group: 'plain' });
    const t0 = performance.now();
    const probe = [];
    for (let i = 0; i < delays.length; i++) {
      await sleep(Math.max(0, t0 + delays[i] * 1000 - performance.now()));
      const before = w.count(LIFECYCLE);
      await gen.call('relayCheck', { group: 'plain', only: [i] });
      await sleep(300);
      probe.push({ afterSeconds: delays[i], evicted: w.count(LIFECYCLE) > before });
    }
    const kept = probe.filter((p) => !p.evicted).map((p) => p.afterSeconds);
    const gone = probe.filter((p) => p.evicted).map((p) => p.afterSeconds);
    const evictLow = kept.length ? Math.max(...kept) : 0;
    const evictHigh = gone.length ? Math.min(...gone) : undefined;
    log(`  evicted after > ${evictLow} s${evictHigh ? ` and ≤ ${evictHigh} s` : ' (never seen)'} idle`);

    log(`  ${K} sessions with keep-alive (host and client), every ${P} s, for ${CFG.kaPeriods} periods`);
    await gen.call('sessions', { base: w.runtimeWs, count: K, clients: 1, concurrency: 10, group: 'ka', keepAlive: 'ka' });
    await sleep(1000);
    const k0 = (await gen.call('keepAlives')).count;
    const c1 = w.count(LIFECYCLE);
    const meter2 = meterFor(w, [gen]);
    const windowMs = CFG.kaPeriods * P * 1000;
    await sleep(windowMs);
    const kaCpu = cpuSummary(meter2.stop(), [gen]);
    const kaWakes = w.count(LIFECYCLE) - c1;
    const kaFrames = (await gen.call('keepAlives')).count - k0;
    const st = await gen.call('status');
    const wakesPerPeriod = kaWakes / K / CFG.kaPeriods;
    const evict = evictHigh ?? evictLow;
    const awake = (period) => Math.min(1, (wakesPerPeriod * evict) / period);
    r.keepAlive = {
      sessions: K, periodSeconds: P, periods: CFG.kaPeriods, plainIdleMs: CFG.kaPlainMs, plainWakes, plainCpu,
      probe, evictLow, evictHigh, kaWakes, kaFrames, expectedFrames: 2 * K * CFG.kaPeriods, wakesPerPeriod, kaCpu,
      awakeAtPeriod: awake(P), awakeAt30: Math.min(1, (Math.max(1, wakesPerPeriod) * evict) / 30), unexpectedCloses: st.unexpectedCloses,
    };
    log(`  without keep-alive: ${plainWakes} wakes in ${CFG.kaPlainMs / 1000} s; with: ${kaWakes} wakes (${wakesPerPeriod.toFixed(2)} per session per period),`,
      `${kaFrames}/${2 * K * CFG.kaPeriods} keep-alive texts; awake ≈ ${pct(100 * r.keepAlive.awakeAtPeriod)} at ${P} s, ≈ ${pct(100 * r.keepAlive.awakeAt30)} at 30 s`);
  } finally {
    await gen.stop();
  }
}

/**
 * The clients' echo throughput (BENCH_WINDOW frames in flight each) for
 * `durationMs` after the warm-up, with the CPU of workerd and of the load
 * generators metered over the same time: { roundTrips, leftInFlight, cpu }.
 */
async function echoThroughput(w, gens, clientGen, durationMs) {
  const run = clientGen.call('throughput', {
    warmupMs: CFG.throughputWarmupMs, durationMs, window: CFG.throughputWindow, size: CFG.messageBytes,
  });
  await sleep(CFG.throughputWarmupMs + 100);
  const meter = meterFor(w, gens);
  await sleep(durationMs - 200);
  const cpu = cpuSummary(meter.stop(), gens);
  const t = await run;
  return { roundTrips: t.answered / t.seconds, leftInFlight: t.leftInFlight, cpu };
}

/**
 * What heartbeat and acknowledged resume cost, and what they buy (relay
 * only, through the client library in both load generators):
 *  - the same echo throughput and latency as above, over RelayHost /
 *    RelayClient with resume off and on, in alternating rounds in one
 *    `wrangler dev` (each round a fresh session and fresh processes);
 *  - the detection time of a silent death: clients behind TCP proxies that
 *    blackhole their connection at a random moment, busy (BENCH_DEATH_HZ
 *    frames a second) and idle (heartbeats only); time from the cut to the
 *    library declaring the connection dead, and to the resumed socket.
 */
async function resume(w, r) {
  r.rounds = [];
  for (let i = 0; i < CFG.resumeRounds * 2; i++) {
    const on = i % 2 === 1;
    const hostGen = new Loadgen(`loadgen-lib-host-${i}`);
    const clientGen = new Loadgen(`loadgen-lib-clients-${i}`);
    const gens = [hostGen, clientGen];
    try {
      const { sid } = await hostGen.call('libHost', { base: w.runtimeWs, resume: on });
      await clientGen.call('libClients', { base: w.runtimeWs, sid, count: CFG.throughputClients, resume: on });
      await hostGen.call('libWaitConnected', { n: CFG.throughputClients });
      const { roundTrips, leftInFlight, cpu } = await echoThroughput(w, gens, clientGen, CFG.resumeThroughputMs);
      const l = await clientGen.call('latency', { rate: CFG.latencyRate, warmupMs: CFG.latencyWarmupMs, durationMs: CFG.resumeLatencyMs, size: CFG.messageBytes });
      const counters = [await hostGen.call('libCounters'), await clientGen.call('libCounters')];
      const row = { resume: on, roundTrips, leftInFlight, cpu, p50: l.p50, p99: l.p99, max: l.max, lost: l.lost, counters };
      r.rounds.push(row);
      log(`  resume ${on ? 'on ' : 'off'}: ${n0(row.roundTrips)} round trips/s, latency p50 ${row.p50?.toFixed(2)} ms, p99 ${row.p99?.toFixed(2)} ms`, fmtCpu(cpu));
    } finally {
      await Promise.all(gens.map((g) => g.stop()));
    }
  }
  const med = (on, f) => median(r.rounds.filter((x) => x.resume === on).map(f));
  r.throughputRatio = med(true, (x) => x.roundTrips) / med(false, (x) => x.roundTrips);
  r.p99Ratio = med(true, (x) => x.p99) / med(false, (x) => x.p99);
  log(`  resume on ÷ off: throughput ${r.throughputRatio.toFixed(3)}×, p99 ${r.p99Ratio.toFixed(3)}×`);
  r.death = {};
  for (const [mode, hz] of [['busy', CFG.deathHz], ['idle', 0]]) {
    const gen = new Loadgen(`loadgen-death-${mode}`);
    try {
      log(`  silent deaths, ${mode}: ${CFG.deathClients} clients × ${CFG.deathRounds} rounds${hz ? ` at ${hz} frames/s each` : ' (heartbeats only)'}`);
      const d = await gen.call('deathDetection', { port: w.runtimePort, clients: CFG.deathClients, rounds: CFG.deathRounds, hz });
      r.death[mode] = d;
      log(`    dead after p50 ${ms(d.detectP50)}, p99 ${ms(d.detectP99)}, max ${ms(d.detectMax)}; resumed after p50 ${ms(d.resumeP50)}, p99 ${ms(d.resumeP99)};`,
        `${d.framesSent} frames, ${d.echoesMissing} missing, ${d.outOfOrder} out of order, ${d.gaps} gaps`);
    } finally {
      await gen.stop();
    }
  }
}

function resumeReport(rs) {
  if (!rs) return '_not run_';
  if (rs.error) return `**failed**: ${rs.error.split('\n')[0]}`;
  const on = rs.rounds.filter((x) => x.resume);
  const off = rs.rounds.filter((x) => !x.resume);
  const vals = (xs, f, fmt) => xs.map((x) => fmt(f(x))).join(' · ');
  const verdict = (ok) => (ok ? 'met' : '**missed**');
  const death = (d) => `dead after p50 **${ms(d.detectP50)}**, p99 **${ms(d.detectP99)}**, max ${ms(d.detectMax)} (min ${ms(d.detectMin)}); resumed after p50 ${ms(d.resumeP50)}, p99 ${ms(d.resumeP99)}, max ${ms(d.resumeMax)}; ${d.samples} deaths; ${n0(d.framesSent)} frames echoed, ${d.echoesMissing} missing, ${d.outOfOrder} out of order, ${d.gaps} gaps, ${n0(d.resent)} resent, ${n0(d.duplicatesDropped)} duplicates dropped`;
  const worst = Math.max(...Object.values(rs.death).map((d) => d.detectP99 ?? Infinity));
  return `| | resume off | resume on | on ÷ off (medians) | target |
|---|---|---|---|---|
| **Throughput**, 1 session, ${CFG.throughputClients} library clients × ${CFG.throughputWindow} in flight: round trips/s | ${vals(off, (x) => x.roundTrips, n0)} | ${vals(on, (x) => x.roundTrips, n0)} | **${rs.throughputRatio.toFixed(2)}×** | ≥ 0.95×: ${verdict(rs.throughputRatio >= 0.95)} |
| **Latency** p99 at ${CFG.latencyRate} msg/s | ${vals(off, (x) => x.p99, (v) => v?.toFixed(2))} ms | ${vals(on, (x) => x.p99, (v) => v?.toFixed(2))} ms | **${rs.p99Ratio.toFixed(2)}×** | (lower is better) |
|   … p50 | ${vals(off, (x) => x.p50, (v) => v?.toFixed(2))} ms | ${vals(on, (x) => x.p50, (v) => v?.toFixed(2))} ms | | |
| workerd CPU during throughput (busiest thread) | ${vals(off, (x) => x.cpu.workerd, pct)} (${vals(off, (x) => x.cpu.workerdThread, pct)}) | ${vals(on, (x) => x.cpu.workerd, pct)} (${vals(on, (x) => x.cpu.workerdThread, pct)}) | | |
| **Silent death**, busy (${CFG.deathHz} frames/s per client) | — | ${death(rs.death.busy)} | | p99 ≤ 10 s: ${verdict(rs.death.busy.detectP99 <= 10_000)} |
| **Silent death**, idle (heartbeats only) | — | ${death(rs.death.idle)} | | p99 ≤ 10 s: ${verdict(rs.death.idle.detectP99 <= 10_000)} |

Values are "round 1 · round 2 · …" (off and on alternate: off, on, off, on, … each a fresh session and fresh
load-generator processes in one \`wrangler dev\`). Both columns go through the client library
(client/relay-client.js over the \`ws\` package), so the ratio is the extension's own cost: the relay numbering,
keeping and acknowledging frames, the library numbering and keeping its own, a \`␁ping\` per socket every 3 s and
an \`␁ack\` each way about once a second. A silent death is a TCP proxy that stops carrying the connection's data
both ways without closing it; the library finds it when nothing came for 6 s (\`heartbeatTimeoutMs\`), so a busy
connection is found about 6 s after the cut and an idle one 3–6 s after (its last \`␁pong\` was up to 3 s old),
and resumes after the first back-off (0.25–0.5 s). Worst p99: ${ms(worst)}.`;
}

/** `wrangler deploy --dry-run --outdir`: the bundle as it would be uploaded. */
function dryRunBundle(config) {
  const out = mkdtempSync(path.join(tmpdir(), 'bench-bundle-'));
  try {
    const said = execFileSync(WRANGLER, ['deploy', '--dry-run', '--config', config, '--outdir', out], { cwd: ROOT, env: wranglerEnv(), stdio: ['ignore', 'pipe', 'pipe'] }).toString();
    const m = /Total Upload: (.+?) \/ gzip: (.+?)\s*$/m.exec(said);
    const files = [];
    const walk = (dir) => {
      for (const name of readdirSync(dir)) {
        const p = path.join(dir, name);
        if (statSync(p).isDirectory()) walk(p);
        else if (!name.endsWith('.map') && name !== 'README.md') files.push(p);
      }
    };
    walk(out);
    let raw = 0;
    let gz = 0;
    for (const f of files) {
      const b = readFileSync(f);
      raw += b.length;
      gz += gzipSync(b, { level: 9 }).length;
    }
    return { raw, gz, files: files.map((f) => path.relative(out, f)), wranglerSays: m ? `${m[1]} / gzip ${m[2]}` : '?' };
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}

function bundles() {
  const wasm = readFileSync(path.join(ROOT, 'build/index_bg.wasm'));
  return {
    wasmRaw: wasm.length, wasmGz: gzipSync(wasm, { level: 9 }).length,
    relay: dryRunBundle(IMPLS[0].config),
    peer: dryRunBundle(IMPLS[1].config),
    bare: dryRunBundle(IMPLS[2].config),
  };
}

// ---- formatting ---------------------------------------------------------------

const mib = (kib) => (kib / 1024).toFixed(1);
const kb = (b) => `${(b / 1024).toFixed(1)} KiB`;
const n0 = (x) => (x === undefined || Number.isNaN(x) ? '–' : Math.round(x).toLocaleString('en-US'));
const ms = (x) => (x === undefined ? '–' : `${x.toFixed(2)} ms`);
const pct = (x) => `${Math.round(x)}%`;
function fmtCpu(c) {
  return `[cpu: workerd ${pct(c.workerd)} (busiest thread ${pct(c.workerdThread)}), load generator ${pct(c.loadgenSum)} in ${c.loadgenProcs} processes (max ${pct(c.loadgenMax)}), machine ${pct(c.machine)} of ${cpus().length * 100}%]`;
}
const ratio = (a, b) => (a && b ? `${(a / b).toFixed(2)}×` : '–');

function versions() {
  const run = (cmd, args) => { try { return execFileSync(cmd, args, { env: wranglerEnv() }).toString().trim(); } catch { return '?'; } };
  const workerdBin = path.join(ROOT, 'node_modules/@cloudflare/workerd-linux-64/bin/workerd');
  const pkg = (p) => JSON.parse(readFileSync(path.join(ROOT, p), 'utf8')).version;
  const cpuModel = (readFileSync('/proc/cpuinfo', 'utf8').match(/^model name\s*:\s*(.+)$/m) || [])[1] ?? '?';
  return {
    date: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
    nproc: run('nproc', []), cpuModel, memory: `${(totalmem() / 2 ** 30).toFixed(1)} GiB`, host: hostname(),
    kernel: run('uname', ['-sr']),
    wrangler: pkg('node_modules/wrangler/package.json'),
    workerd: run(workerdBin, ['--version']).replace(/^workerd /, ''),
    node: process.version,
    partyserver: pkg('bench/peer/node_modules/partyserver/package.json'),
    ws: pkg('node_modules/ws/package.json'),
    relay: VERSION,
    fdLimit: run('bash', ['-c', 'ulimit -n']),
  };
}

const median = (xs) => {
  const a = xs.filter((x) => x !== undefined && Number.isFinite(x)).sort((p, q) => p - q);
  if (!a.length) return undefined;
  return a.length % 2 ? a[(a.length - 1) / 2] : (a[a.length / 2 - 1] + a[a.length / 2]) / 2;
};
const get = (r, f) => { try { const x = f(r); return Number.isFinite(x) ? x : undefined; } catch { return undefined; } };

/** The rows of the three-way table: a value per run, and how to show it. */
const ROWS = [
  { key: 'throughput', label: () => `**Throughput**, 1 session, ${CFG.throughputClients} clients × ${CFG.throughputWindow} in flight: round trips/s`, better: 'higher', f: (r) => r.throughput.roundTrips, fmt: n0 },
  { key: 'p50', label: () => `**Latency** p50 at ${CFG.latencyRate} msg/s`, better: 'lower', f: (r) => r.latency.p50, fmt: (x) => (x === undefined ? '–' : x.toFixed(2)), unit: ' ms' },
  { key: 'p99', label: () => `**Latency** p99 at ${CFG.latencyRate} msg/s`, better: 'lower', f: (r) => r.latency.p99, fmt: (x) => (x === undefined ? '–' : x.toFixed(2)), unit: ' ms' },
  { key: 'connect', label: () => `**Connect rate**, sockets/s (${CFG.manyProcs} × ${CFG.manyConcurrency} sessions set up at a time)`, better: 'higher', f: (r) => r.many.socketsPerSecond, fmt: n0 },
  { key: 'rss', label: () => `**workerd RSS per socket**, ${n0(CFG.manySessions)} sessions × (1 host + ${CFG.manyClients} clients) connected`, better: 'lower', f: (r) => ((r.many.rss1 - r.many.rss0) * 1024) / r.many.sockets / 1024, fmt: (x) => (x === undefined ? '–' : x.toFixed(0)), unit: ' KiB' },
  { key: 'rssIdle', label: () => `  … the same after ${CFG.manyIdleMs / 1000} s idle (objects evicted, sockets held)`, better: 'lower', f: (r) => ((r.many.rss2 - r.many.rss0) * 1024) / r.many.sockets / 1024, fmt: (x) => (x === undefined ? '–' : x.toFixed(0)), unit: ' KiB' },
  { key: 'wake', label: () => `**Wake-up**: first round trip after eviction, p50 (${CFG.idleSessions} sessions at once)`, better: 'lower', f: (r) => r.idle.wake.p50, fmt: (x) => (x === undefined ? '–' : x.toFixed(1)), unit: ' ms' },
];

function threeWay(res, b) {
  const runs = (key) => res[key] ?? [];
  const out = ['| | relay | PartyServer | bare JS DO | relay ÷ PartyServer (median; per round) | relay ÷ bare (median; per round) | better |', '|---|---|---|---|---|---|---|'];
  const ratios = {};
  for (const row of ROWS) {
    const vals = (key) => runs(key).map((r) => get(r, row.f));
    const cell = (key) => { const v = vals(key); return v.length ? `${v.map(row.fmt).join(' · ')}${row.unit ?? ''}` : '–'; };
    const rr = (other) => {
      const a = vals('relay');
      const o = vals(other);
      const per = a.map((x, i) => (x !== undefined && o[i] ? x / o[i] : undefined));
      const m = median(per);
      ratios[`${row.key}:${other}`] = m;
      return m === undefined ? '–' : `**${m.toFixed(2)}×**; ${per.map((x) => (x === undefined ? '–' : x.toFixed(2))).join(' · ')}`;
    };
    out.push(`| ${row.label()} | ${cell('relay')} | ${cell('peer')} | ${cell('bare')} | ${rr('peer')} | ${rr('bare')} | ${row.better} |`);
  }
  const gz = (k) => b[k]?.gz;
  const gzRatio = (o) => (gz('relay') && gz(o) ? `**${(gz('relay') / gz(o)).toFixed(2)}×**` : '–');
  ratios['upload:peer'] = gz('relay') / gz('peer');
  ratios['upload:bare'] = gz('relay') / gz('bare');
  out.push(`| **Upload**, gzipped (\`wrangler deploy --dry-run\`, gzip -9) | ${kb(gz('relay'))} | ${kb(gz('peer'))} | ${kb(gz('bare'))} | ${gzRatio('peer')} | ${gzRatio('bare')} | lower |`);
  out.push(`|   … raw | ${kb(b.relay.raw)} (wasm ${kb(b.wasmRaw)}, gzip ${kb(b.wasmGz)}) | ${kb(b.peer.raw)} | ${kb(b.bare.raw)} | | | lower |`);
  return { table: out.join('\n'), ratios };
}

function limitOf(c, scen) {
  return c.loadgenMax >= 80 ? '**load generator**' : c.workerdThread >= 75 ? 'workerd'
    : scen === 'latency' ? 'nothing (fixed offered rate)' : c.machine >= 185 ? 'machine full (other processes)' : 'not clear';
}

function report(v, res, b, extra, wallSeconds) {
  const smoke = process.env.BENCH_SMOKE === '1' || CFG.manySessions < 600 || CFG.rounds < 2;
  const { table } = threeWay(res, b);
  const cpuRows = [];
  for (const impl of IMPLS) {
    (res[impl.key] ?? []).forEach((r, i) => {
      for (const [scen, c] of [['throughput', get(r, (x) => x.throughput.cpu.workerd) !== undefined && r.throughput.cpu], ['latency', r.latency?.cpu], ['many sessions (connecting)', r.many?.cpu]]) {
        if (!c) continue;
        cpuRows.push(`| ${impl.name} | ${i + 1} | ${scen} | ${pct(c.workerd)} | ${pct(c.workerdThread)} | ${pct(c.proxy)} | ${pct(c.wrangler)} | ${pct(c.loadgenSum)} (${c.loadgenProcs} procs, max ${pct(c.loadgenMax)}) | ${pct(c.machine)} | ${limitOf(c, scen)} |`);
      }
    });
  }
  const detailRows = [];
  for (const impl of IMPLS) {
    (res[impl.key] ?? []).forEach((r, i) => {
      const m = r.many;
      const d = r.idle;
      detailRows.push(`| ${impl.name} | ${i + 1} | ${m ? `${n0(m.ok)}/${n0(m.tried)} × (1+${m.clients}) = ${n0(m.sockets)} sockets in ${m.seconds.toFixed(1)} s` : '–'} | ${m ? `${mib(m.rss0)} → ${mib(m.rss1)} → ${mib(m.rss2)}` : '–'} | ${m ? `${n0(m.checkOk)}/${n0(m.ok)} relayed, ${n0(m.reconstructed)} constructed again` : '–'} | ${d ? `${d.constructedIdle - d.constructedBefore} during the pause, ${d.reconstructed}/${d.sessions} at the next message; warm p50 ${ms(d.warm.p50)}, wake p50 / max ${ms(d.wake.p50)} / ${ms(d.wake.max)}` : '–'} | ${r.error ? `**failed**: ${r.error.split('\n')[0]}` : ''} |`);
    });
  }
  const verdicts = [];
  const why = (c) => (c.loadgenMax >= 80 ? 'load generator'
    : c.workerdThread >= 75 ? 'workerd'
      : c.machine >= 185 ? 'machine full (other processes took the cores: a noisy round)' : 'not clear');
  for (const impl of IMPLS) {
    const cs = (res[impl.key] ?? []).map((r) => r.throughput?.cpu).filter(Boolean);
    if (!cs.length) continue;
    verdicts.push(`${impl.name}: ${cs.map((c, i) => `round ${i + 1}: workerd's busiest thread ${pct(c.workerdThread)}, busiest load-generator process ${pct(c.loadgenMax)}, machine ${pct(c.machine)} → **${why(c)}**`).join('; ')}`);
  }
  const cap = Object.values(res).flat().map((r) => r.many?.capped).find(Boolean);
  const manyNote = cap
    ? `**Capped:** ${n0(CFG.manySessions)} sessions do not fit workerd's open-file limit (${n0(cap.limit)}; ${cap.fdsPerSession} descriptors per session: 2 per socket, 3 per awake SQLite database), so ${n0(cap.fit)} were set up.\n`
    : '';
  const notes = [];
  for (const impl of IMPLS) {
    (res[impl.key] ?? []).forEach((r, i) => {
      const k = `${impl.key} round ${i + 1}`;
      if (r.error) notes.push(`- ${k}: **failed**: ${r.error.split('\n')[0]}`);
      if (r.many && r.many.failed) notes.push(`- ${k}: ${r.many.failed} of ${r.many.tried} sessions failed to set up; errors: ${r.many.errors.join('; ')}`);
      if (r.many && r.many.unexpectedCloses) notes.push(`- ${k}: ${r.many.unexpectedCloses} sockets were closed by the server during the many-sessions run.`);
      if (r.latency && r.latency.lost) notes.push(`- ${k}: ${r.latency.lost} latency messages never came back.`);
    });
  }
  const mm = extra.matchmaker;
  const ka = extra.keepAlive;
  const mmText = !mm ? '_not run_' : mm.error ? `**failed**: ${mm.error.split('\n')[0]}` : `| what | figure | workerd CPU (busiest thread) | load generator (max process) |
|---|---|---|---|
| **/stats reports absorbed** (by the aggregators' tree, never the Matchmaker): ${n0(mm.stats.sessions)} sessions each drop their client at once; each reports its new count 1 s later; an observer's \`/stats\` shows 0 clients after | ${n0(mm.stats.totalMs)} ms → **~${n0(mm.stats.reportsPerSecond)} reports/s** (${n0(mm.stats.sessions)} ÷ (${n0(mm.stats.totalMs)} − 1,000 ms)) | ${pct(mm.stats.cpu.workerd)} (${pct(mm.stats.cpu.workerdThread)}) | ${pct(mm.stats.cpu.loadgenMax)} |
| **Searches matched**: ${n0(mm.search.hosts)} hosts × 1 client send \`/join-session\` at once (MAX_CLIENTS=2, so they pair up) | ${n0(mm.search.linked)}/${n0(mm.search.hosts)} linked (${n0(mm.search.pairs)} pairs) in ${mm.search.seconds.toFixed(2)} s → **${n0(mm.search.searchesPerSecond)} searches matched/s** (${n0(mm.search.pairsPerSecond)} pairs/s); link p50 ${ms(mm.search.p50)} after the send${Object.keys(mm.search.other).length ? `; other lines: ${JSON.stringify(mm.search.other)}` : ''} | ${pct(mm.search.cpu.workerd)} (${pct(mm.search.cpu.workerdThread)}) | ${pct(mm.search.cpu.loadgenMax)} |`;
  const kaText = !ka ? '_not run_' : ka.error ? `**failed**: ${ka.error.split('\n')[0]}` : `| | figure |
|---|---|
| sessions without keep-alive, idle ${ka.plainIdleMs / 1000} s: objects woken | ${ka.plainWakes} (of ${ka.sessions}); workerd CPU ${pct(ka.plainCpu.workerd)} |
| eviction delay (idle object woken after d s: constructed again?) | ${ka.probe.map((p) => `${p.afterSeconds} s ${p.evicted ? 'yes' : 'no'}`).join(', ')} → evicted after ${ka.evictLow}–${ka.evictHigh ?? '?'} s idle |
| sessions with keep-alive (host and client), KEEP_ALIVE_SECONDS=${ka.periodSeconds}, ${ka.periods} periods: objects woken | ${ka.kaWakes} = **${ka.wakesPerPeriod.toFixed(2)} per session per period**; keep-alive texts ${ka.kaFrames}/${ka.expectedFrames}; workerd CPU ${pct(ka.kaCpu.workerd)} |
| **fraction of time awake** (≈ wakes per period × eviction delay ÷ period) | without keep-alive **0%**; with keep-alive **~${pct(100 * ka.awakeAtPeriod)}** at ${ka.periodSeconds} s, scaled to the production period 30 s: **~${pct(100 * ka.awakeAt30)}** |`;

  return `# Benchmark: relay vs PartyServer peer vs bare JS Durable Object

${smoke ? '**SMOKE RUN** (small sizes via BENCH_* variables, on a machine shared with other work): the figures show the bench works, they are not the measurement. The real run is `npm run bench` with the defaults on a quiet machine.\n\n' : ''}Written by \`npm run bench\` (bench/run.js) on ${v.date}; the whole run took ${Math.round(wallSeconds)} s; ${CFG.rounds} round(s), in each the three one after the other (relay, PartyServer, bare), each in its own \`wrangler dev\`.

- **Machine**: ${v.nproc} cores (${v.cpuModel}), ${v.memory} memory, ${v.kernel}, open-file limit ${v.fdLimit}
- **Versions**: wrangler ${v.wrangler}, workerd ${v.workerd}, node ${v.node}, partyserver ${v.partyserver}, ws ${v.ws} (load generator), relay ${v.relay}
- **Relay**: build/ (Rust → wasm; copied when the run starts) with \`--var LOG_LIFECYCLE:true\`, \`LOG_LEVEL=warn\` (the relay's one info line per session created; the peers log nothing) and the per-socket rate limit lifted (\`RATE_LIMIT_PER_SECOND\`/\`RATE_LIMIT_BURST\` = 10⁹).
- **PartyServer**: bench/peer/ — the host/client subset (PROTOCOL.md §2–3) as a PartyServer \`Server\` with \`hibernate: true\`, TypeScript.
- **Bare JS DO**: bench/bare/ — the same subset straight on the hibernation API (\`ctx.acceptWebSocket(ws, tags)\`, tags per role/client id, \`serializeAttachment\`, the secret in \`ctx.storage.kv\`), plain JavaScript, no library: the floor.

## Results (every round, and the median of the per-round ratios)

${table}

Values are "round 1 · round 2 · …". A ratio is taken within a round (relay ÷ other, same round), then the median over rounds.
${manyNote}
**Bottleneck (throughput runs):**
${verdicts.map((x) => `- ${x}`).join('\n')}

${notes.length ? `Problems:\n\n${notes.join('\n')}\n` : ''}
## The Matchmaker and the figures (relay only)

${mmText}

Both figures come from one \`wrangler dev\` on this machine, where the Matchmaker and the aggregators
share workerd's one busy thread with every Session object taking part (their alarms, calls and sockets),
so they are lower bounds for those objects alone (reports cross three hops of up to a second each); Cloudflare soft-limits one Durable Object near 1,000 requests/s.
${mm && !mm.error ? [['/stats reports', mm.stats.cpu], ['searches', mm.search.cpu]].map(([what, c]) => (c.workerdThread >= 75
    ? `During the ${what} workerd's thread was saturated (${pct(c.workerdThread)}): that figure is what one core absorbs.`
    : `During the ${what} workerd's thread was **not** saturated (${pct(c.workerdThread)}): the figure is limited by how fast the burst arrives (the sessions' own close events, alarms and calls), not by the Matchmaker, so it is a lower bound; a larger burst (BENCH_MM_${what === 'searches' ? 'HOSTS' : 'STATS_SESSIONS'}) gets closer.`)).join(' ') : ''}

## Idle cost of keep-alive (relay only)

${kaText}

An evicted object costs nothing (its sockets stay open in the runtime); an awake one is billed for
its wall time. A keep-alive alarm wakes the object, the handler sends the texts, and the object then
stays in memory until the runtime evicts it again (the eviction delay above), so each period costs
about one eviction delay of wake time.

## Floods (relay only)

${floodReport(extra.flood, CFG)}

## Heartbeat and resume (relay only; PROTOCOL.md section 7)

${resumeReport(extra.resume)}

## Every run

| worker | round | many sessions | workerd RSS before → connected → idle (MiB) | after idle: one message per session | idle scenario (${CFG.idleSessions} sessions × ${CFG.idleClients} clients, ${CFG.idleMs / 1000} s pause) | |
|---|---|---|---|---|---|---|
${detailRows.join('\n')}

## CPU during the measurements (% of one core)

| worker | round | scenario | workerd (runtime) | its busiest thread | workerd (proxy) | wrangler (node) | load generator | machine (of ${v.nproc}00%) | what limits |
|---|---|---|---|---|---|---|---|---|---|
${cpuRows.join('\n')}

The load generator runs in separate processes (bench/loadgen.js); bench/run.js reads every process's
CPU time from \`/proc/<pid>/stat\` (per thread from \`/proc/<pid>/task/*/stat\`) over each measuring
window. A Durable Object's JavaScript/wasm runs on one workerd thread, so a busiest thread near 100%
means workerd is the limit; a load-generator process well below 100% has time to spare. The
"machine" column counts everything on the machine, other people's work too. Absolute figures are
\`wrangler dev\`'s on a ${v.nproc}-core machine, not Cloudflare's; the ratios are the point.

## How it is measured

- **Rounds.** relay, PartyServer, bare, relay, PartyServer, bare, … (\`BENCH_ROUNDS\`, default 2), each run
  in a fresh \`wrangler dev\` with fresh storage, so slow phases of a shared machine hit all three alike.
- **Where the sockets go.** \`wrangler dev\` starts a proxy workerd and the runtime workerd; the load
  generator connects straight to the runtime's entry port, so the dev-only proxy is not measured. RSS
  is the runtime's plus the proxy's \`VmRSS\`. Wrangler's trace collector is off
  (\`X_LOCAL_OBSERVABILITY=false\`${process.env.BENCH_LOCAL_OBSERVABILITY === '1' ? '; **on this time: BENCH_LOCAL_OBSERVABILITY=1**' : ''}).
- **Frames**: text, ${CFG.messageBytes} bytes of payload, no permessage-deflate.
- **Throughput**: 1 session, 1 echo host, ${CFG.throughputClients} clients each keeping ${CFG.throughputWindow} messages in flight (closed loop);
  answers counted over ${CFG.throughputMs / 1000} s after ${CFG.throughputWarmupMs / 1000} s of warm-up.
- **Latency**: the same session, open loop at ${CFG.latencyRate} msg/s round-robin over the clients, ${CFG.latencyMs / 1000} s measured
  after ${CFG.latencyWarmupMs / 1000} s; send → echo back at the same client.
- **Many sessions / connect rate / RSS**: ${CFG.manyProcs} load-generator processes, each setting up ${CFG.manyConcurrency} sessions at a
  time (host reads \`session:\`/\`secret:\`, its ${CFG.manyClients} clients connect, the host has seen ${CFG.manyClients} \`connected:\`).
  Connect rate = sockets ÷ time to set up all. RSS per socket = (RSS connected − RSS before) ÷ sockets.
  Then ${CFG.manyIdleMs / 1000} s idle, RSS again, one message per session.
- **Wake-up**: ${CFG.idleSessions} sessions × ${CFG.idleClients} clients, one message each (warm), ${CFG.idleMs / 1000} s without traffic (every
  object evicted: constructors print \`lifecycle: session object constructed\` with \`LOG_LIFECYCLE=true\`,
  counted in wrangler's output), then one message each again, all at once: that round trip's p50.
- **Upload**: each worker's whole upload as \`wrangler deploy --dry-run --outdir\` writes it, gzip -9 per file
  (relay: ${b.relay.files.join(', ')}; wrangler says ${b.relay.wranglerSays}; PartyServer: ${b.peer.wranglerSays}; bare: ${b.bare.wranglerSays}).
- **Matchmaker**, **keep-alive**, **floods** and **heartbeat and resume**: see their sections; each runs once in its own \`wrangler dev\`.

Run it again with \`npm run bench\`. Settings: BENCH_ROUNDS, BENCH_SESSIONS, BENCH_CLIENTS, BENCH_PROCS,
BENCH_CONCURRENCY, BENCH_THROUGHPUT_MS, BENCH_LATENCY_MS, BENCH_LATENCY_RATE, BENCH_IDLE_SESSIONS,
BENCH_IDLE_MS, BENCH_MANY_IDLE_MS, BENCH_WINDOW, BENCH_MM_HOSTS, BENCH_MM_STATS_SESSIONS, BENCH_KA_SESSIONS,
BENCH_KA_PERIOD, BENCH_KA_PERIODS, BENCH_KA_PLAIN_MS, BENCH_FLOOD_FRAMES, BENCH_FLOOD_SLOW_MB, BENCH_FLOOD_STREAM_MB,
BENCH_RESUME_ROUNDS, BENCH_RESUME_THROUGHPUT_MS, BENCH_RESUME_LATENCY_MS, BENCH_DEATH_CLIENTS, BENCH_DEATH_ROUNDS, BENCH_DEATH_HZ; BENCH_ONLY=relay,peer,bare a subset of workers;
BENCH_SCENARIOS=throughput,idle,many,matchmaker,keepalive,flood,resume a subset of scenarios; BENCH_FD_CAP=0 tries the
full session count past workerd's open-file limit; BENCH_LOCAL_OBSERVABILITY=1 keeps wrangler's trace
collector on; BENCH_SMOKE=1 marks the results as a smoke run; BENCH_RESULTS=<file> writes there instead of bench/results.md.

<details><summary>Raw figures (JSON)</summary>

\`\`\`json
${JSON.stringify({ config: CFG, versions: v, bundles: b, results: res, ...extra }, null, 1)}
\`\`\`
</details>
`;
}

// On Ctrl-C, stop wrangler (it runs in its own process group) before leaving.
let current = null;
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, async () => {
    log(`${sig}: stopping wrangler`);
    await current?.stop({ removeState: true }).catch(() => {});
    process.exit(130);
  });
}

/** One worker in its own `wrangler dev`: start, run `body(w)`, stop. */
async function withWorker(name, config, vars, body) {
  log(`=== ${name}: starting wrangler dev --config ${path.relative(ROOT, config)}`);
  let w;
  try {
    w = current = await startRelay({ config, vars, traces: TRACES, logFile: true });
    await w.findRuntime();
    log(`runtime workerd pid ${w.runtimePid} on port ${w.runtimePort} (proxy pid ${w.proxyPid} on ${w.port}); wrangler's output: ${w.logFile}`);
    await body(w);
    if (!w.alive()) throw new Error('the runtime workerd is gone (restarted?)');
  } catch (e) {
    log(`${name} failed: ${e.stack || e}`);
    if (w) log(`wrangler's output: ${w.logFile}`);
    throw e;
  } finally {
    await w?.stop({ removeState: true });
    current = null;
  }
}

function printRound(res, round) {
  const line = (key) => {
    const r = res[key]?.[round];
    if (!r) return null;
    return `${key}: ${ROWS.map((row) => `${row.key} ${row.fmt(get(r, row.f))}${row.unit ?? ''}`).join(', ')}`;
  };
  log(`--- round ${round + 1}: ${IMPLS.map((i) => line(i.key)).filter(Boolean).join(' | ')}`);
}

async function main() {
  const t0 = performance.now();
  const v = versions();
  const snapshot = relaySnapshot();
  IMPLS[0].config = snapshot.config;
  log(`${v.nproc} cores, ${v.memory}; wrangler ${v.wrangler}, workerd ${v.workerd}, node ${v.node}, partyserver ${v.partyserver}`);
  log('bundle sizes (wrangler deploy --dry-run)');
  const b = bundles();
  const only = process.env.BENCH_ONLY?.split(',');
  const res = {};
  const extra = {};
  let failed = false;
  for (let round = 0; round < CFG.rounds; round++) {
    for (const impl of IMPLS) {
      if (only && !only.includes(impl.key)) continue;
      const r = {};
      (res[impl.key] ??= []).push(r);
      try {
        await withWorker(`${impl.name}, round ${round + 1}/${CFG.rounds}`, impl.config, impl.vars, async (w) => {
          r.rssMiB = { started: +mib(rss(w)) };
          if (want('throughput')) await throughputAndLatency(w, r);
          if (want('idle')) await idle(w, r);
          if (want('many')) await many(w, r);
          r.rssMiB.end = +mib(rss(w));
        });
      } catch (e) {
        r.error = e.stack || String(e);
        failed = true;
      }
    }
    printRound(res, round);
  }
  if (!only || only.includes('relay')) {
    if (want('matchmaker')) {
      const r = (extra.matchmaker = {});
      try {
        await withWorker('relay: the Matchmaker', IMPLS[0].config, { ...NO_RATE_LIMIT, MAX_CLIENTS: '2' }, (w) => matchmaker(w, r));
      } catch (e) { r.error = e.stack || String(e); failed = true; }
    }
    if (want('keepalive')) {
      const r = (extra.keepAlive = {});
      try {
        await withWorker('relay: keep-alive idle cost', IMPLS[0].config, { LOG_LIFECYCLE: 'true', KEEP_ALIVE_SECONDS: String(CFG.kaPeriodSeconds) }, (w) => keepAlive(w, r));
        Object.assign(r, r.keepAlive);
        delete r.keepAlive;
      } catch (e) { r.error = e.stack || String(e); failed = true; }
    }
    if (want('resume')) {
      const r = (extra.resume = {});
      try {
        await withWorker('relay: heartbeat and resume', IMPLS[0].config, { LOG_LEVEL: 'warn', ...NO_RATE_LIMIT }, (w) => resume(w, r));
      } catch (e) { r.error = e.stack || String(e); failed = true; }
    }
    if (want('flood')) {
      const r = (extra.flood = {});
      for (const part of FLOOD_PARTS) {
        try {
          await withWorker(`relay: floods, ${part.name}`, IMPLS[0].config, { LOG_LEVEL: 'warn' }, async (w) => {
            log(`flood: ${part.name}`);
            r[part.key] = await part.run(w, CFG);
            log(`  ${JSON.stringify(r[part.key])}`);
          });
        } catch (e) { r[part.key] = { error: e.stack || String(e) }; failed = true; }
      }
    }
  }
  snapshot.remove();
  const md = report(v, res, b, extra, (performance.now() - t0) / 1000);
  const out = path.resolve(ROOT, process.env.BENCH_RESULTS ?? 'bench/results.md');
  writeFileSync(out, md);
  console.log(md.slice(0, md.indexOf('## Every run')));
  log(`wrote ${path.relative(ROOT, out)} in ${Math.round((performance.now() - t0) / 1000)} s`);
  if (failed) process.exitCode = 1;
}

main().catch((e) => { console.error(e); process.exit(1); });
