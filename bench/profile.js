// `npm run profile`: CPU profiles of the relay under `wrangler dev`, taken
// through workerd's V8 inspector with the Chrome DevTools Protocol
// (Profiler.enable / setSamplingInterval / start / stop), while
//  (a) the throughput load of `npm run bench` runs (1 echo host, 8 clients ×
//      16 in flight), and
//  (b) sessions connect (many sessions × (1 host + 5 clients)).
// Writes bench/out/<phase>.cpuprofile (open in Chrome DevTools or speedscope)
// and prints the top functions by self time, wasm and JS together, with their
// share of busy time (all samples except "(idle)").
//
// Which target: `wrangler dev --inspector-port P` serves an inspector proxy
// on P whose /json lists one target, "Cloudflare Worker" at ws://…/ws; it
// forwards to the runtime workerd's own inspector for the user Worker's
// isolate. Durable Objects of the same script run in that same isolate, so
// the profile covers the router, every Session object and the Matchmaker.
//
// Settings: PROFILE_SECONDS (throughput window, 8), PROFILE_SESSIONS (200),
// PROFILE_INTERVAL_US (sampling interval, 200), PROFILE_TOP (25),
// PROFILE_MD (also write the printed lists to this Markdown file),
// PROFILE_WORKER=relay|peer|bare (default relay: the same profiles of the
// PartyServer peer or the bare JS floor, to compare time per frame).
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import WebSocket from 'ws';
import { ROOT, relaySnapshot, sleep, startRelay } from '../tests/helpers/relay.js';
import { Loadgen } from './lib/driver.js';

const env = (name, dflt) => (process.env[name] ? Number(process.env[name]) : dflt);
const SECONDS = env('PROFILE_SECONDS', 8);
const SESSIONS = env('PROFILE_SESSIONS', 200);
const INTERVAL_US = env('PROFILE_INTERVAL_US', 200);
const TOP = env('PROFILE_TOP', 25);
const OUT = path.join(ROOT, 'bench/out');
const log = (...a) => console.error('[profile]', ...a);

/** A minimal Chrome DevTools Protocol client over the inspector's WebSocket. */
async function cdp(url) {
  const ws = new WebSocket(url, { perMessageDeflate: false, maxPayload: 1 << 30 });
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
  let seq = 0;
  const pending = new Map();
  ws.on('message', (data) => {
    const msg = JSON.parse(data.toString());
    const p = msg.id !== undefined && pending.get(msg.id);
    if (!p) return;
    pending.delete(msg.id);
    if (msg.error) p.reject(new Error(`${p.method}: ${JSON.stringify(msg.error)}`)); else p.resolve(msg.result);
  });
  return {
    send(method, params = {}) {
      const id = ++seq;
      return new Promise((resolve, reject) => {
        pending.set(id, { resolve, reject, method });
        ws.send(JSON.stringify({ id, method, params }));
      });
    },
    close: () => ws.close(),
  };
}

const kindOf = (f) => (f.url.startsWith('wasm://') ? 'wasm' : f.url ? 'js' : f.functionName.startsWith('(') ? 'runtime' : 'runtime API');
const keyOf = (f) => {
  const where = f.url && !f.url.startsWith('wasm://') ? ` ${path.basename(f.url)}:${f.lineNumber + 1}:${f.columnNumber + 1}` : '';
  return `${kindOf(f)}|${f.functionName || '(anonymous)'}${where}`;
};

/**
 * Self time per function (µs), from samples and timeDeltas, with the caller
 * that accounts for most of it. Functions are keyed by name and, for JS, the
 * position in the bundle (the relay's JS is minified, so most are anonymous).
 */
export function selfTimes(profile) {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n);
  const self = new Map();
  const { samples, timeDeltas } = profile;
  const mean = (profile.endTime - profile.startTime) / Math.max(1, samples.length);
  for (let i = 0; i < samples.length; i++) {
    // A sample stands for the time until the next one.
    const dt = i + 1 < timeDeltas.length ? timeDeltas[i + 1] : mean;
    self.set(samples[i], (self.get(samples[i]) ?? 0) + Math.max(0, dt));
  }
  const fns = new Map();
  const frames = new Map();
  let idle = 0;
  let total = 0;
  for (const [id, us] of self) {
    const node = byId.get(id);
    const f = node.callFrame;
    total += us;
    if (f.functionName === '(idle)') { idle += us; continue; }
    const key = keyOf(f);
    frames.set(key, f);
    const e = fns.get(key) ?? { us: 0, callers: new Map() };
    e.us += us;
    // The nearest caller that is not the function itself.
    let p = parent.get(id);
    while (p && keyOf(p.callFrame) === key) p = parent.get(p.id);
    if (p && p.callFrame.functionName !== '(root)') {
      const ck = keyOf(p.callFrame);
      frames.set(ck, p.callFrame);
      e.callers.set(ck, (e.callers.get(ck) ?? 0) + us);
    }
    fns.set(key, e);
  }
  // Inclusive time (self + callees) of the relay's and the worker crate's
  // functions, counted once per stack even when recursive.
  const incl = new Map();
  const walk = (node, seen) => {
    const key = keyOf(node.callFrame);
    let sum = self.get(node.id) ?? 0;
    const mine = /\|(askutron_relay|worker)::/.test(key) && !seen.has(key);
    if (mine) seen.add(key);
    for (const c of node.children ?? []) sum += walk(byId.get(c), seen);
    if (mine) {
      seen.delete(key);
      incl.set(key, (incl.get(key) ?? 0) + sum);
    }
    return sum;
  };
  const root = profile.nodes.find((n) => !parent.has(n.id));
  if (root) walk(root, new Set());
  const busy = total - idle;
  const inclusive = [...incl].map(([key, us]) => ({ key, us, share: us / busy })).sort((x, y) => y.us - x.us);
  const rows = [...fns].map(([key, e]) => {
    const [kind, name] = key.split(/\|(.*)/s);
    const caller = [...e.callers].sort((x, y) => y[1] - x[1])[0];
    return { key, kind, name, us: e.us, share: e.us / busy, caller: caller?.[0], callerShare: caller ? caller[1] / e.us : 0 };
  }).sort((x, y) => y.us - x.us);
  const byKind = {};
  for (const r of rows) byKind[r.kind] = (byKind[r.kind] ?? 0) + r.us;
  return { rows, busy, idle, total, byKind, samples: samples.length, frames, inclusive };
}

/** The first characters of the source at a JS frame, so a minified function can be recognised. */
async function snippets(client, keys, frames) {
  const sources = new Map();
  const out = new Map();
  for (const key of keys) {
    const f = frames.get(key);
    if (!f || !f.url || f.url.startsWith('wasm://')) continue;
    if (!sources.has(f.scriptId)) {
      try {
        sources.set(f.scriptId, (await client.send('Debugger.getScriptSource', { scriptId: f.scriptId })).scriptSource.split('\n'));
      } catch {
        sources.set(f.scriptId, null);
      }
    }
    const lines = sources.get(f.scriptId);
    const line = lines?.[f.lineNumber];
    if (line) {
      // What names it (e.g. `__wbg_send_…:` or `deserializeAttachment(`) is just before it.
      const before = line.slice(Math.max(0, f.columnNumber - 120), f.columnNumber);
      const named = /([\w$]+)\s*[:=]\s*(?:\/\* @__PURE__ \*\/\s*)?(?:__name\()?(?:async\s+)?function\s*$/.exec(before);
      const body = line.slice(f.columnNumber, f.columnNumber + 110);
      out.set(key, (named ? `${named[1]}${body}` : `…${before.slice(-40)}⟨${body}`).replace(/\s+/g, ' '));
    }
  }
  return out;
}

async function table(client, title, prof, extra, wallMs, units) {
  const s = selfTimes(prof);
  const per = units ? ` = **${(s.busy / units.n).toFixed(1)} µs per ${units.what}** in the isolate` : '';
  const top = s.rows.slice(0, TOP);
  const snip = await snippets(client, [...top.map((r) => r.key), ...top.map((r) => r.caller).filter(Boolean)], s.frames);
  const short = (name, n = 100) => (name.length > n ? `${name.slice(0, n - 1)}…` : name);
  const code = (x) => `\`${x.replace(/`/g, "'").replace(/\|/g, '\\|')}\``;
  const label = (key) => {
    const [kind, name] = key.split(/\|(.*)/s);
    const sn = snip.get(key);
    return `${code(short(name))}${sn ? ` ${code(short(sn, 150))}` : ''}${kind === 'wasm' ? ' (wasm)' : ''}`;
  };
  const lines = [
    `### ${title}`,
    '',
    `${extra} Inside the isolate (JS + wasm + runtime API) ${(s.busy / 1000).toFixed(0)} ms of ${(wallMs / 1000).toFixed(1)} s wall${per}`,
    `(${s.samples} samples every ${INTERVAL_US} µs); the rest ("(idle)" to V8) is workerd outside the isolate (sockets, WebSocket framing, I/O) or waiting.`,
    `Busy time by kind: ${Object.entries(s.byKind).sort((a, b) => b[1] - a[1]).map(([k, us]) => `${k} ${((100 * us) / s.busy).toFixed(1)}%`).join(', ')}.`,
    '',
    '| # | self ms | % of busy | kind | function (JS: position in the bundle, then its source) | mostly called from |',
    '|---|---|---|---|---|---|',
    ...top.map((r, i) => `| ${i + 1} | ${(r.us / 1000).toFixed(1)} | ${(100 * r.share).toFixed(1)}% | ${r.kind} | ${label(r.key)} | ${r.caller ? `${label(r.caller)} (${Math.round(100 * r.callerShare)}%)` : ''} |`),
    '',
  ];
  if (s.inclusive.length) {
    lines.push('Inclusive time (self + everything called, JS and runtime API included) of the top Rust functions of the relay and the worker crate:', '',
      '| # | incl. ms | % of busy | function |', '|---|---|---|---|',
      ...s.inclusive.slice(0, 15).map((r, i) => `| ${i + 1} | ${(r.us / 1000).toFixed(1)} | ${(100 * r.share).toFixed(1)}% | ${code(short(r.key.split(/\|(.*)/s)[1], 120))} |`), '');
  }
  return lines.join('\n');
}

async function inspectorTarget(port) {
  const list = await (await fetch(`http://127.0.0.1:${port}/json`)).json();
  const t = list.find((x) => x.webSocketDebuggerUrl);
  if (!t) throw new Error(`no inspector target on port ${port}: ${JSON.stringify(list)}`);
  return t;
}

async function profiled(client, name, body) {
  await client.send('Profiler.setSamplingInterval', { interval: INTERVAL_US });
  await client.send('Profiler.start');
  const t0 = performance.now();
  const info = await body();
  const { profile } = await client.send('Profiler.stop');
  const wallMs = performance.now() - t0;
  const file = path.join(OUT, `${name}.cpuprofile`);
  writeFileSync(file, JSON.stringify(profile));
  log(`${name}: ${((performance.now() - t0) / 1000).toFixed(1)} s profiled → ${path.relative(ROOT, file)}`);
  return { profile, info, file, wallMs };
}

let current = null;
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, async () => { await current?.stop({ removeState: true }).catch(() => {}); process.exit(130); });
}

async function main() {
  mkdirSync(OUT, { recursive: true });
  const which = process.env.PROFILE_WORKER ?? 'relay';
  const snapshot = which === 'relay' ? relaySnapshot() : { config: path.join(ROOT, `bench/${which}/wrangler.toml`), remove() {} };
  const vars = { RATE_LIMIT_PER_SECOND: '1000000000', RATE_LIMIT_BURST: '1000000000', LOG_LEVEL: 'warn' };
  const gens = [];
  let client;
  const sections = [];
  const pending = [];
  try {
    // The trace collector off, as in the bench (BENCH_LOCAL_OBSERVABILITY=1 keeps it).
    const w = (current = await startRelay({ config: snapshot.config, vars, traces: process.env.BENCH_LOCAL_OBSERVABILITY === '1', logFile: true }));
    await w.findRuntime();
    const target = await inspectorTarget(w.inspectorPort);
    log(`wrangler dev: runtime workerd pid ${w.runtimePid} on ${w.runtimePort}; inspector ${target.webSocketDebuggerUrl} (${target.title})`);
    client = await cdp(target.webSocketDebuggerUrl);
    await client.send('Profiler.enable');

    // (a) throughput
    const hostGen = new Loadgen('loadgen-host');
    const clientGen = new Loadgen('loadgen-clients');
    gens.push(hostGen, clientGen);
    const { sid } = await hostGen.call('host', { base: w.runtimeWs });
    await clientGen.call('clients', { base: w.runtimeWs, sid, count: 8 });
    await hostGen.call('waitConnected', { n: 8 });
    const warmupMs = 1500;
    const run = clientGen.call('throughput', { warmupMs, durationMs: SECONDS * 1000 + 1000, window: 16, size: 32 });
    await sleep(warmupMs + 200);
    const a = await profiled(client, `throughput${which === 'relay' ? '' : `-${which}`}`, async () => { await sleep(SECONDS * 1000); });
    const t = await run;
    const rps = t.answered / t.seconds;
    const frames = 2 * rps * (a.wallMs / 1000);
    pending.push(['(a) Throughput: 1 echo host, 8 clients × 16 in flight',
      a.profile, `${Math.round(rps)} round trips/s while profiled (${Math.round(2 * rps)} frames relayed/s; profiling slows it).`, a.wallMs, { n: frames, what: 'relayed frame' }]);
    await Promise.all([hostGen.stop(), clientGen.stop()]);
    gens.length = 0;

    // (b) connects
    const g1 = new Loadgen('loadgen-1');
    const g2 = new Loadgen('loadgen-2');
    gens.push(g1, g2);
    const b = await profiled(client, `connect${which === 'relay' ? '' : `-${which}`}`, async () => {
      const half = Math.ceil(SESSIONS / 2);
      const res = await Promise.all([g1, g2].map((g, i) => g.call('sessions', { base: w.runtimeWs, count: i ? SESSIONS - half : half, clients: 5, concurrency: 16 })));
      return { ok: res.reduce((x, r) => x + r.ok, 0), seconds: Math.max(...res.map((r) => r.seconds)) };
    });
    pending.push([`(b) Connects: ${SESSIONS} sessions × (1 host + 5 clients), 2 × 16 set up at a time`,
      b.profile, `${b.info.ok}/${SESSIONS} sessions in ${b.info.seconds.toFixed(1)} s (${Math.round((b.info.ok * 6) / b.info.seconds)} sockets/s while profiled).`, b.wallMs, { n: b.info.ok * 6, what: 'socket connected' }]);
    // Sources of the minified JS, to label its functions (after profiling:
    // the debugger is not on while measuring).
    await client.send('Debugger.enable');
    for (const [title, prof, extra, wallMs, units] of pending) sections.push(await table(client, title, prof, extra, wallMs, units));
  } finally {
    client?.close();
    await Promise.all(gens.map((g) => g.stop()));
    await current?.stop({ removeState: true });
    snapshot.remove();
  }
  const md = `${which === 'relay' ? '' : `**Worker: bench/${which}/** (not the relay).\n\n`}Profiles of build/ taken by \`npm run profile\` on ${new Date().toISOString().replace(/\.\d+Z$/, 'Z')} (self time per function; "% of busy" is of all samples but "(idle)"; kind: wasm = the relay's Rust (names from the wasm name section), js = the bundled build/index.js (wasm-bindgen glue and the worker shim, minified: shown with the first characters of its source), runtime API = functions of workerd/V8 called from JS (e.g. \`exec\` is SQL, \`getWebSockets\`, \`send\`), runtime = "(program)" (native work not attributed to a JS frame) and "(garbage collector)").\n\n${sections.join('\n')}`;
  console.log(md);
  if (process.env.PROFILE_MD) writeFileSync(path.resolve(ROOT, process.env.PROFILE_MD), md);
}

main().catch((e) => { console.error(e); process.exit(1); });
