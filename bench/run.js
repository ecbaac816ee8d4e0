// `npm run bench`: the relay (Rust → wasm) against a PartyServer peer doing
// the same host/client relay, both under the same `wrangler dev` (workerd),
// driven by the same load generator (bench/loadgen.js, in child processes).
// Writes bench/results.md. Settings: environment variables BENCH_* below.
import { fork, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir, totalmem, hostname } from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { ROOT, WRANGLER, relaySnapshot, startWorker, wranglerEnv } from './lib/worker.js';
import { cpuMeter, fdLimit, openFds, rssKiB } from './lib/proc.js';

const env = (name, dflt) => (process.env[name] ? Number(process.env[name]) : dflt);
const CFG = {
  throughputClients: 8,
  throughputWindow: env('BENCH_WINDOW', 16), // messages in flight per client
  throughputWarmupMs: 1500,
  throughputMs: env('BENCH_THROUGHPUT_MS', 8000),
  messageBytes: 32,
  latencyRate: env('BENCH_LATENCY_RATE', 200),
  latencyWarmupMs: 1000,
  latencyMs: env('BENCH_LATENCY_MS', 10000),
  idleSessions: env('BENCH_IDLE_SESSIONS', 50),
  idleClients: 2,
  idleMs: env('BENCH_IDLE_MS', 15000),
  manySessions: env('BENCH_SESSIONS', 2000),
  manyClients: env('BENCH_CLIENTS', 5),
  manyProcs: env('BENCH_PROCS', 2),
  manyConcurrency: env('BENCH_CONCURRENCY', 16), // sessions being set up at once, per process
  manyIdleMs: env('BENCH_MANY_IDLE_MS', 15000),
};
const LIFECYCLE = /lifecycle: session object constructed/;
const IMPLS = [
  {
    key: 'relay', name: 'relay (Rust/wasm)', config: null, // a snapshot of build/, made in main()
    // The relay's per-socket rate limit (1000 frames/s) would cap the host's
    // answers in the throughput run; the peer has none, so lift it.
    vars: { LOG_LIFECYCLE: 'true', RATE_LIMIT_PER_SECOND: '1000000000', RATE_LIMIT_BURST: '1000000000' },
  },
  { key: 'peer', name: 'PartyServer (TS)', config: path.join(ROOT, 'bench/peer/wrangler.toml'), vars: { LOG_LIFECYCLE: 'true' } },
];

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (...a) => console.error('[bench]', ...a);

/** A forked load generator process, driven by request/answer over IPC. */
class Loadgen {
  constructor(name) {
    this.name = name;
    this.child = fork(path.join(ROOT, 'bench/loadgen.js'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    this.pid = this.child.pid;
    this.pending = new Map();
    this.seq = 0;
    this.child.on('message', ({ id, result, error }) => {
      const p = this.pending.get(id);
      this.pending.delete(id);
      if (error) p?.reject(new Error(`${this.name}: ${error}`)); else p?.resolve(result);
    });
    this.child.on('exit', (code) => {
      for (const p of this.pending.values()) p.reject(new Error(`${this.name} exited (${code})`));
      this.pending.clear();
    });
  }
  call(cmd, args) {
    const id = ++this.seq;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.child.send({ id, cmd, args });
    });
  }
  async stop() {
    if (this.child.exitCode !== null) return;
    const exited = new Promise((r) => this.child.once('exit', r));
    try { await Promise.race([this.call('closeAll'), sleep(5000)]); } catch {}
    this.child.disconnect();
    const t = setTimeout(() => this.child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(t);
  }
}

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
    const { sid } = await hostGen.call('host', { base: w.ws });
    await clientGen.call('clients', { base: w.ws, sid, count: CFG.throughputClients });
    await hostGen.call('waitConnected', { n: CFG.throughputClients });

    log('throughput');
    const run = clientGen.call('throughput', {
      warmupMs: CFG.throughputWarmupMs, durationMs: CFG.throughputMs, window: CFG.throughputWindow, size: CFG.messageBytes,
    });
    await sleep(CFG.throughputWarmupMs + 100);
    const meter = meterFor(w, gens);
    await sleep(CFG.throughputMs - 200);
    const cpu = cpuSummary(meter.stop(), gens);
    const t = await run;
    r.throughput = { roundTrips: t.answered / t.seconds, leftInFlight: t.leftInFlight, cpu };
    log(`  ${Math.round(r.throughput.roundTrips)} round trips/s`, fmtCpu(cpu));

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
    const s = await gen.call('sessions', { base: w.ws, count: CFG.idleSessions, clients: CFG.idleClients, concurrency: 10 });
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
      base: w.ws, count: per[i], clients: C, concurrency: CFG.manyConcurrency,
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
    relay: (readFileSync(path.join(ROOT, 'Cargo.toml'), 'utf8').match(/^version = "(.+)"$/m) || [])[1],
    fdLimit: run('bash', ['-c', 'ulimit -n']),
  };
}

function report(v, res, b, wallSeconds) {
  const [a, p] = [res.relay, res.peer];
  const rows = [];
  const row = (what, better, fa, fp, va, vp) => rows.push(`| ${what} | ${fa} | ${fp} | ${ratio(va, vp)} | ${better} |`);
  const g = (r, f) => { try { return f(r); } catch { return undefined; } };
  row(`**Throughput**, 1 session, ${CFG.throughputClients} clients × ${CFG.throughputWindow} in flight: round trips/s (client → host → client)`, 'higher',
    n0(g(a, (r) => r.throughput.roundTrips)), n0(g(p, (r) => r.throughput.roundTrips)), g(a, (r) => r.throughput.roundTrips), g(p, (r) => r.throughput.roundTrips));
  row('  … frames relayed/s (each round trip is 2)', 'higher',
    n0(g(a, (r) => 2 * r.throughput.roundTrips)), n0(g(p, (r) => 2 * r.throughput.roundTrips)), g(a, (r) => r.throughput.roundTrips), g(p, (r) => r.throughput.roundTrips));
  for (const [k, label] of [['p50', 'p50'], ['p99', 'p99'], ['max', 'max']]) {
    row(`**Latency** at ${CFG.latencyRate} msg/s offered, round trip ${label}`, 'lower',
      ms(g(a, (r) => r.latency[k])), ms(g(p, (r) => r.latency[k])), g(a, (r) => r.latency[k]), g(p, (r) => r.latency[k]));
  }
  const held = (r) => `${n0(r.many.ok)} × (1+${r.many.clients}) = ${n0(r.many.sockets)} sockets`;
  row(`**Many sessions** held at once (aim: ${n0(CFG.manySessions)} × (1 host + ${CFG.manyClients} clients); see below)`, 'higher',
    g(a, held) ?? '–', g(p, held) ?? '–', g(a, (r) => r.many.sockets), g(p, (r) => r.many.sockets));
  row('  connect rate, sockets/s (sessions/s)', 'higher',
    g(a, (r) => `${n0(r.many.socketsPerSecond)} (${n0(r.many.sessionsPerSecond)})`) ?? '–', g(p, (r) => `${n0(r.many.socketsPerSecond)} (${n0(r.many.sessionsPerSecond)})`) ?? '–',
    g(a, (r) => r.many.socketsPerSecond), g(p, (r) => r.many.socketsPerSecond));
  const perSock = (r, x) => ((r.many[x] - r.many.rss0) * 1024) / r.many.sockets;
  const perSession = (r, x) => (r.many[x] - r.many.rss0) / 1024 / r.many.ok;
  const memCell = (r, x) => `${kb(perSock(r, x))} (${perSession(r, x).toFixed(2)} MiB per session)`;
  row('  workerd RSS per connected socket, all connected', 'lower',
    g(a, (r) => memCell(r, 'rss1')) ?? '–', g(p, (r) => memCell(r, 'rss1')) ?? '–', g(a, (r) => perSock(r, 'rss1')), g(p, (r) => perSock(r, 'rss1')));
  row(`  … the same after ${CFG.manyIdleMs / 1000} s idle (every object evicted, sockets still held)`, 'lower',
    g(a, (r) => memCell(r, 'rss2')) ?? '–', g(p, (r) => memCell(r, 'rss2')) ?? '–', g(a, (r) => perSock(r, 'rss2')), g(p, (r) => perSock(r, 'rss2')));
  row(`  workerd CPU while they sit idle (${CFG.manyIdleMs / 1000} s, % of a core)`, 'lower',
    g(a, (r) => pct(r.many.idleCpu.workerd)) ?? '–', g(p, (r) => pct(r.many.idleCpu.workerd)) ?? '–');
  row('  workerd RSS before → connected → idle (MiB)', '',
    g(a, (r) => `${mib(r.many.rss0)} → ${mib(r.many.rss1)} → ${mib(r.many.rss2)}`) ?? '–', g(p, (r) => `${mib(r.many.rss0)} → ${mib(r.many.rss1)} → ${mib(r.many.rss2)}`) ?? '–');
  row('  then one message per session: relayed / objects constructed again', '',
    g(a, (r) => `${n0(r.many.checkOk)}/${n0(r.many.ok)} / ${n0(r.many.reconstructed)}`) ?? '–', g(p, (r) => `${n0(r.many.checkOk)}/${n0(r.many.ok)} / ${n0(r.many.reconstructed)}`) ?? '–');
  const idleCell = (r) => `${r.idle.constructedIdle - r.idle.constructedBefore} during the pause, ${r.idle.reconstructed}/${r.idle.sessions} at the next message; ${r.idle.wake.ok}/${r.idle.wake.sessions} relayed`;
  row(`**Idle**: ${CFG.idleSessions} sessions idle ${CFG.idleMs / 1000} s, then one message each: objects constructed`, '',
    g(a, idleCell) ?? '–', g(p, idleCell) ?? '–');
  row(`  workerd CPU during the pause (% of a core)`, 'lower',
    g(a, (r) => pct(r.idle.idleCpu.workerd)) ?? '–', g(p, (r) => pct(r.idle.idleCpu.workerd)) ?? '–');
  row(`  first round trip after the pause (wake; all ${CFG.idleSessions} at once) p50 / max, vs warm p50`, 'lower',
    g(a, (r) => `${ms(r.idle.wake.p50)} / ${ms(r.idle.wake.max)} (warm ${ms(r.idle.warm.p50)})`) ?? '–',
    g(p, (r) => `${ms(r.idle.wake.p50)} / ${ms(r.idle.wake.max)} (warm ${ms(r.idle.warm.p50)})`) ?? '–', g(a, (r) => r.idle.wake.p50), g(p, (r) => r.idle.wake.p50));
  row('**Bundle**: relay build/index_bg.wasm raw / gzip -9', 'lower', `${kb(b.wasmRaw)} / ${kb(b.wasmGz)}`, '–');
  row('  whole upload (`wrangler deploy --dry-run --outdir`) raw / gzip -9', 'lower',
    `${kb(b.relay.raw)} / ${kb(b.relay.gz)}`, `${kb(b.peer.raw)} / ${kb(b.peer.gz)}`, b.relay.gz, b.peer.gz);
  row('  … as wrangler reports it ("Total Upload")', 'lower', b.relay.wranglerSays, b.peer.wranglerSays);

  const cpuRows = [];
  for (const [key, r] of Object.entries(res)) {
    for (const [scen, c] of [['throughput', g(r, (x) => x.throughput.cpu)], ['latency', g(r, (x) => x.latency.cpu)], ['many sessions (connecting)', g(r, (x) => x.many.cpu)]]) {
      if (!c) continue;
      const limit = c.loadgenMax >= 80 ? '**load generator**' : c.workerdThread >= 75 ? 'workerd' : c.machine >= 185 ? 'machine full'
        : scen === 'latency' ? 'nothing (fixed offered rate)' : 'not clear';
      cpuRows.push(`| ${IMPLS.find((i) => i.key === key).name} | ${scen} | ${pct(c.workerd)} | ${pct(c.workerdThread)} | ${pct(c.proxy)} | ${pct(c.wrangler)} | ${pct(c.loadgenSum)} (${c.loadgenProcs} procs, max ${pct(c.loadgenMax)}) | ${pct(c.machine)} | ${limit} |`);
    }
  }

  const t = g(a, (r) => r.throughput.cpu);
  const tp = g(p, (r) => r.throughput.cpu);
  const verdict = (c) => (c.workerdThread >= 75 && c.loadgenMax < 80
    ? `workerd's busiest thread was saturated (${pct(c.workerdThread)} of a core) while the busiest load-generator process used ${pct(c.loadgenMax)} and the whole machine ${pct(c.machine)} of ${v.nproc}00%`
    : `not conclusive: workerd's busiest thread ${pct(c.workerdThread)}, busiest load-generator process ${pct(c.loadgenMax)}, machine ${pct(c.machine)}`);
  const cap = Object.values(res).map((r) => r.many?.capped).find(Boolean);
  const manyNote = cap
    ? `**Why not ${n0(CFG.manySessions)} × ${CFG.manyClients}:** workerd holds each WebSocket's TCP socket in 2 file descriptors and each awake Durable Object's SQLite database in 3 (\`.sqlite\`, \`-wal\`, \`-shm\`; seen in \`/proc/<workerd>/fd\`), so a session of 1 host + ${CFG.manyClients} clients needs ${cap.fdsPerSession}. workerd's open-file limit here is ${n0(cap.limit)} (soft = hard; raising it needs CAP_SYS_RESOURCE, which this machine does not grant: \`prlimit\` fails with EPERM), with ${cap.baseline} in use before the run, so ${n0(cap.fit)} sessions is the most that fits (${n0(CFG.manySessions)} × ${CFG.manyClients} would need about ${n0(CFG.manySessions * cap.fdsPerSession)}). Past the limit workerd stops accepting and drops every socket: uncapped runs (\`BENCH_FD_CAP=0\`) on this machine got about 1,450 (peer) and 1,500 (relay) sessions up, then every socket was lost and new connections were refused (the peer's wrangler printed "Too many open files (os error 24)" and restarted the runtime). Memory was not the limit (${v.memory}).\n`
    : '';
  const notes = [];
  for (const [key, r] of Object.entries(res)) {
    if (r.error) notes.push(`- ${key}: **failed**: ${r.error.split('\n')[0]}`);
    if (r.many && r.many.failed) notes.push(`- ${key}: ${r.many.failed} of ${r.many.tried} sessions failed to set up (largest held: ${r.many.ok}); errors: ${r.many.errors.join('; ')}`);
    if (r.many && r.many.unexpectedCloses) notes.push(`- ${key}: ${r.many.unexpectedCloses} sockets were closed by the server during the many-sessions run.`);
    if (r.latency && r.latency.lost) notes.push(`- ${key}: ${r.latency.lost} latency messages never came back.`);
  }

  return `# Benchmark: relay vs PartyServer peer

Written by \`npm run bench\` (bench/run.js) on ${v.date}; the whole run took ${Math.round(wallSeconds)} s.

- **Machine**: ${v.nproc} cores (${v.cpuModel}), ${v.memory} memory, ${v.kernel}, open-file limit ${v.fdLimit}
- **Versions**: wrangler ${v.wrangler}, workerd ${v.workerd}, node ${v.node}, partyserver ${v.partyserver}, ws ${v.ws} (load generator), relay ${v.relay}
- **Relay**: build/ (Rust → wasm; copied when the run starts, so edits to src/ meanwhile cannot make wrangler rebuild and restart it) under \`wrangler dev\`, with \`--var LOG_LIFECYCLE:true\` and the per-socket rate limit lifted (\`RATE_LIMIT_PER_SECOND\`/\`RATE_LIMIT_BURST\` = 10⁹) so it does not cap the throughput run.
- **Peer**: bench/peer/ — the same host/client subset (PROTOCOL.md §2–3) as a PartyServer \`Server\` with \`static options = { hibernate: true }\`, one per session, TypeScript, same wrangler/workerd.
- The two run one after the other, never at the same time, each in its own \`wrangler dev\`.

## Results

| | relay | PartyServer | ratio relay ÷ peer | better |
|---|---|---|---|---|
${rows.join('\n')}

${manyNote}
${notes.length ? `Problems:\n\n${notes.join('\n')}\n` : ''}
## CPU during the measurements (% of one core)

| worker | scenario | workerd (runtime) | its busiest thread | workerd (proxy) | wrangler (node) | load generator | machine (of ${v.nproc}00%) | what limits |
|---|---|---|---|---|---|---|---|---|
${cpuRows.join('\n')}

**Is the load generator the bottleneck?** It runs in separate processes (bench/loadgen.js, forked by
bench/run.js: for throughput and latency one process holds the host and another the 8 clients; for
many sessions ${CFG.manyProcs} processes share the sessions), and bench/run.js reads every process's CPU time from
\`/proc/<pid>/stat\` (and per thread from \`/proc/<pid>/task/*/stat\`) over the measuring window.
Throughput run: relay — ${t ? verdict(t) : '–'}; PartyServer — ${tp ? verdict(tp) : '–'}.
A Durable Object's JavaScript/wasm runs on one workerd thread, so a busiest thread near 100% means
workerd is the limit; a load-generator process well below 100% has time to spare, and a machine
below ${v.nproc}00% means nobody was starved of a core. The "machine" column counts everything on the machine,
other people's work too (e.g. a test suite running meanwhile), so compare it with the sum of the others.
Absolute figures are \`wrangler dev\`'s on a ${v.nproc}-core machine, not Cloudflare's; the ratios are the point.

## How it is measured

- **Where the sockets go.** \`wrangler dev\` starts two workerd processes: a proxy on the port it prints
  and the runtime that runs the Worker. The load generator connects straight to the runtime's own
  entry port (found in \`/proc/net/tcp\` from the runtime's sockets), so the proxy — which production
  does not have — costs nothing and is not a second bottleneck (its CPU column stays near 0). RSS is
  the runtime's plus the proxy's \`VmRSS\`.
- **Local observability off.** By default \`wrangler dev\` attaches a trace collector to the Worker (a
  tail worker that stores every event in SQLite; \`X_LOCAL_OBSERVABILITY\`). That is dev-only work on
  every WebSocket event, production does not do it, and it made each event about 3× as expensive for
  both workers (and kept wrangler's node process busy), hiding the difference between them. The bench
  runs wrangler with \`X_LOCAL_OBSERVABILITY=false\` (${process.env.BENCH_LOCAL_OBSERVABILITY === '1' ? '**not this time: BENCH_LOCAL_OBSERVABILITY=1**' : 'as this time'}); \`BENCH_LOCAL_OBSERVABILITY=1\` keeps it.
- **Frames**: text, ${CFG.messageBytes} bytes of payload, no permessage-deflate (the load generator does not offer it).
- **Throughput**: 1 session, 1 echo host (answers every \`<n>: <msg>\` with \`<n>: <msg>\`), 8 clients
  each keeping ${CFG.throughputWindow} messages in flight (closed loop); answers counted over ${CFG.throughputMs / 1000} s after ${CFG.throughputWarmupMs / 1000} s of warm-up.
- **Latency**: same session, open loop: one message every ${(1000 / CFG.latencyRate).toFixed(1)} ms round-robin over the 8 clients
  (${CFG.latencyRate} msg/s), ${CFG.latencyMs / 1000} s measured after ${CFG.latencyWarmupMs / 1000} s warm-up; time from send to the echo arriving back at the same client.
- **Many sessions**: ${CFG.manyProcs} load-generator processes, each setting up ${CFG.manyConcurrency} sessions at a time
  (host connects and reads \`session:\`/\`secret:\`, then its ${CFG.manyClients} clients connect and the host has seen
  ${CFG.manyClients} \`connected:\`). Connect rate = sockets (hosts + clients) ÷ time to set up all sessions. RSS
  per socket = (RSS with everything connected − RSS before) ÷ sockets. Then ${CFG.manyIdleMs / 1000} s without traffic, RSS
  again, and one message per session (client 1 → host → client 1) to show every session still relays.
- **Idle**: ${CFG.idleSessions} sessions × ${CFG.idleClients} clients, one message each (warm), then ${CFG.idleMs / 1000} s without traffic, then one
  message each again. Both workers print \`lifecycle: session object constructed\` from their Durable
  Object's constructor (\`LOG_LIFECYCLE=true\`), counted in wrangler's output: none during the pause, and
  one per session at the next message means workerd had evicted every hibernated object and the
  message woke it (a new instance, state from storage and socket attachments) and was relayed.
- **Bundle**: build/index_bg.wasm as built; both workers' whole upload as \`wrangler deploy --dry-run --outdir\`
  writes it (relay: ${b.relay.files.join(', ')}; peer: ${b.peer.files.join(', ')}), gzip level 9 per file.

Run it again with \`npm run bench\`; sizes can be changed with BENCH_SESSIONS, BENCH_CLIENTS, BENCH_PROCS,
BENCH_CONCURRENCY, BENCH_THROUGHPUT_MS, BENCH_LATENCY_MS, BENCH_LATENCY_RATE, BENCH_IDLE_MS, BENCH_MANY_IDLE_MS,
BENCH_WINDOW; BENCH_ONLY=relay|peer runs one side only, BENCH_SCENARIOS=throughput,idle,many a subset,
BENCH_FD_CAP=0 tries the full session count even past workerd's open-file limit, BENCH_LOCAL_OBSERVABILITY=1
keeps wrangler's trace collector on.

<details><summary>Raw figures (JSON)</summary>

\`\`\`json
${JSON.stringify({ config: CFG, versions: v, bundles: b, results: res }, null, 1)}
\`\`\`
</details>
`;
}

// On Ctrl-C, stop wrangler (it runs in its own process group) before leaving.
let current = null;
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, async () => {
    log(`${sig}: stopping wrangler`);
    await current?.stop().catch(() => {});
    process.exit(130);
  });
}

async function main() {
  const t0 = performance.now();
  const v = versions();
  const snapshot = relaySnapshot();
  IMPLS[0].config = snapshot.config;
  log(`${v.nproc} cores, ${v.memory}; wrangler ${v.wrangler}, workerd ${v.workerd}, node ${v.node}, partyserver ${v.partyserver}`);
  log('bundle sizes (wrangler deploy --dry-run)');
  const b = bundles();
  const only = process.env.BENCH_ONLY;
  const res = {};
  for (const impl of IMPLS) {
    if (only && only !== impl.key) continue;
    log(`=== ${impl.name}: starting wrangler dev --config ${path.relative(ROOT, impl.config)}`);
    const r = (res[impl.key] = {});
    let w;
    try {
      w = current = await startWorker({ config: impl.config, vars: impl.vars });
      log(`runtime workerd pid ${w.runtimePid} on port ${w.runtimePort} (proxy pid ${w.proxyPid} on ${w.port}); wrangler's output: ${w.logFile}`);
      r.rssMiB = { started: +mib(rss(w)) };
      const want = (name) => !process.env.BENCH_SCENARIOS || process.env.BENCH_SCENARIOS.split(',').includes(name);
      if (want('throughput')) await throughputAndLatency(w, r);
      r.rssMiB.afterLatency = +mib(rss(w));
      if (want('idle')) await idle(w, r);
      r.rssMiB.afterIdle = +mib(rss(w));
      if (want('many')) await many(w, r);
      r.rssMiB.end = +mib(rss(w));
      if (!w.alive()) throw new Error('the runtime workerd is gone (restarted?)');
    } catch (e) {
      r.error = e.stack || String(e);
      log(`${impl.name} failed: ${r.error}`);
      if (w) log(`wrangler's output: ${w.logFile}`);
    } finally {
      await w?.stop();
    }
  }
  snapshot.remove();
  const md = report(v, res, b, (performance.now() - t0) / 1000);
  writeFileSync(path.join(ROOT, 'bench/results.md'), md);
  console.log(md.slice(0, md.indexOf('## How it is measured')));
  log(`wrote bench/results.md in ${Math.round((performance.now() - t0) / 1000)} s`);
  if (Object.values(res).some((r) => r.error)) process.exitCode = 1;
}

main().catch((e) => { console.error(e); process.exit(1); });
