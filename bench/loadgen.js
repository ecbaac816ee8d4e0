// The load generator: a child process of bench/run.js (forked, commands over
// IPC), so its CPU is apart from the orchestrator's and from workerd's, and
// several can run at once. It speaks the relay's host/client subset
// (PROTOCOL.md 2–3), which the PartyServer peer speaks too.
//
// Hosts here are echo hosts: every `<n>: <msg>` from client n goes back as
// `<n>: <msg>`, so it reaches the client that sent it.
import WebSocket from 'ws';
import { parseHostFrame, RelayHost, RelayClient } from '../client/relay-client.js';
import { pollUntil, sleep } from '../tests/helpers/relay.js';
import { percentile } from '../tests/helpers/proc.js';
import { startProxy } from '../tests/helpers/proxy.js';

/** A percentile of the samples (nearest rank), undefined when there are none. */
const pct = (xs, p) => (xs.length ? percentile(xs, p) : undefined);

const WS_OPTIONS = { perMessageDeflate: false, handshakeTimeout: 30_000 };
const STEP_MS = 30_000;

function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`timeout: ${what}`)), ms); }),
  ]).finally(() => clearTimeout(timer));
}

function opened(ws) {
  return new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
    ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
    ws.once('close', (code) => reject(new Error(`closed ${code} before open`)));
  });
}

/** Sessions this process holds: { sid, group, host, hostFrames, connected, clients: [ws] }. */
const sessions = [];
let closes = 0; // sockets closed by the far end while held
let lastClose = '';

function onUnexpectedClose(what, ws) {
  return (code, reason) => {
    if (!closing && !ws.dropped) { closes++; lastClose = `${what} closed ${code} ${reason}`; }
  };
}
let closing = false;
/** When each keep-alive text arrived (hosts and clients of sessions made with `keepAlive`). */
const keepAliveFrames = [];

/** Connects an echo host; resolves once `session:` and `secret:` arrived. */
async function connectHost(base, query = '', keepAlive = null) {
  const ws = new WebSocket(`${base}/session?reconnect=false${query}`, WS_OPTIONS);
  const s = { sid: null, group: null, host: ws, connected: 0, clients: [], connectedWaiter: null, hostFrames: 0, onLine: null };
  let resolveReady;
  const ready = new Promise((r) => { resolveReady = r; });
  ws.on('message', (data) => {
    const line = data.toString();
    const f = parseHostFrame(line, keepAlive);
    s.hostFrames++;
    if (s.sid === null) {
      if (f.kind === 'session') s.sid = f.sid;
      return;
    }
    if (f.kind === 'secret') { resolveReady(); return; }
    if (s.onLine?.(f, line)) return;
    if (f.kind === 'connected') {
      s.connected++;
      if (s.connectedWaiter && s.connected >= s.connectedWaiter.n) { s.connectedWaiter.resolve(); s.connectedWaiter = null; }
      return;
    }
    if (f.kind === 'disconnected') { s.connected--; return; }
    // `<n>: <msg>` from a client: answer it.
    if (f.kind === 'message' && f.client > 0) ws.send(line);
  });
  await opened(ws);
  ws.on('error', () => {});
  ws.on('close', onUnexpectedClose('host', ws));
  await ready;
  return s;
}

function waitConnected(s, n) {
  if (s.connected >= n) return Promise.resolve();
  return new Promise((resolve) => { s.connectedWaiter = { n, resolve }; });
}

/** A client socket; `onFrame` is swapped per scenario. */
async function connectClient(base, sid, query = '') {
  const ws = new WebSocket(`${base}/session/${sid}${query}`, WS_OPTIONS);
  ws.onFrame = null;
  ws.keepAlive = null;
  ws.on('message', (data) => {
    const f = data.toString();
    if (ws.keepAlive !== null && f === ws.keepAlive) { keepAliveFrames.push(performance.now()); return; }
    ws.onFrame?.(f);
  });
  await opened(ws);
  ws.on('error', () => {});
  ws.on('close', onUnexpectedClose('client', ws));
  return ws;
}

async function setupSession(base, nClients, keepAlive) {
  const ka = keepAlive ? `keepAlive=${encodeURIComponent(keepAlive)}` : '';
  const s = await connectHost(base, ka && `&${ka}`, keepAlive);
  if (keepAlive) s.onLine = (f) => f.kind === 'keepalive' && keepAliveFrames.push(performance.now());
  s.clients = await Promise.all(Array.from({ length: nClients }, () => connectClient(base, s.sid, ka && `?${ka}`)));
  for (const c of s.clients) c.keepAlive = keepAlive ?? null;
  await waitConnected(s, nClients);
  return s;
}

// ---- the client library (client/relay-client.js) ----------------------------

/** The library's sockets: the ws package with the load generator's options. */
class LibWebSocket extends WebSocket {
  constructor(url) { super(url, WS_OPTIONS); }
}

/** Resolves once a library object is open, rejects if it closes for good first. */
function libOpen(obj) {
  if (obj.state === 'open') return Promise.resolve();
  return new Promise((resolve, reject) => {
    const on = (e) => {
      if (e.detail.state === 'open') { obj.removeEventListener('state', on); resolve(); }
      if (e.detail.state === 'closed') { obj.removeEventListener('state', on); reject(new Error(`closed: ${e.detail.error}`)); }
    };
    obj.addEventListener('state', on);
  });
}

/**
 * A library object dressed as the raw sockets the scenarios above drive
 * (send, onFrame, readyState, terminate), so throughput and latency run
 * unchanged over RelayHost / RelayClient.
 */
function libAdapter(obj) {
  const a = {
    lib: obj,
    onFrame: null,
    send: (text) => obj.send(text),
    get readyState() { return obj.state === 'open' ? WebSocket.OPEN : WebSocket.CLOSED; },
    terminate: () => obj.close(),
  };
  obj.addEventListener('message', (e) => a.onFrame?.(e.detail.text));
  return a;
}

const libOptions = (resume) => ({ WebSocket: LibWebSocket, resume, maxBufferedMessages: 100_000, maxBufferedBytes: 64 << 20 });

// ---- commands ---------------------------------------------------------------

const commands = {
  /** An echo host for one session; the clients may live in another process. */
  async host({ base }) {
    const s = await withTimeout(connectHost(base), STEP_MS, 'host connect');
    sessions.push(s);
    return { sid: s.sid };
  },

  async waitConnected({ n }) {
    await withTimeout(waitConnected(sessions[0], n), STEP_MS, `${n} clients connected`);
    return { connected: sessions[0].connected };
  },

  /** `count` clients of session `sid` (whose host is elsewhere). */
  async clients({ base, sid, count }) {
    const clients = await withTimeout(Promise.all(Array.from({ length: count }, () => connectClient(base, sid))), STEP_MS, 'clients connect');
    sessions.push({ sid, host: null, clients });
    return { clients: clients.length };
  },

  /**
   * Closed loop: every client keeps `window` messages in flight through the
   * echo host. Counts answers that arrive inside the measuring window.
   */
  async throughput({ warmupMs, durationMs, window, size }) {
    const clients = sessions.flatMap((s) => s.clients);
    const payload = 'x'.repeat(size);
    let running = true;
    let counting = false;
    let answered = 0;
    let inflight = 0;
    let drained;
    const allDrained = new Promise((r) => { drained = r; });
    for (const c of clients) {
      c.onFrame = () => {
        inflight--;
        if (counting) answered++;
        if (running) { c.send(payload); inflight++; } else if (inflight === 0) drained();
      };
    }
    for (const c of clients) for (let i = 0; i < window; i++) { c.send(payload); inflight++; }
    await sleep(warmupMs);
    counting = true;
    const t0 = performance.now();
    await sleep(durationMs);
    counting = false;
    const seconds = (performance.now() - t0) / 1000;
    running = false;
    await withTimeout(allDrained, 15_000, `draining ${inflight} messages`).catch(() => {});
    for (const c of clients) c.onFrame = null;
    return { answered, seconds, leftInFlight: inflight };
  },

  /**
   * Open loop at `rate` messages/s spread over all clients, round-robin.
   * Latency = send → the echo arriving back at the same client.
   */
  async latency({ rate, warmupMs, durationMs, size }) {
    const clients = sessions.flatMap((s) => s.clients);
    const pad = 'y'.repeat(Math.max(0, size - 12));
    const sentAt = new Map();
    const samples = [];
    let measuring = false;
    for (const c of clients) {
      c.onFrame = (f) => {
        const seq = Number(f.slice(0, f.indexOf(' ')));
        const t = sentAt.get(seq);
        if (t === undefined) return;
        sentAt.delete(seq);
        if (t.measured) samples.push(performance.now() - t.at);
      };
    }
    const interval = 1000 / rate;
    const total = Math.round(((warmupMs + durationMs) / 1000) * rate);
    const t0 = performance.now();
    let late = 0;
    for (let seq = 0; seq < total; seq++) {
      const due = t0 + seq * interval;
      const wait = due - performance.now();
      if (wait > 1) await sleep(wait);
      else if (wait < -5) late++;
      measuring = due - t0 >= warmupMs;
      sentAt.set(seq, { at: performance.now(), measured: measuring });
      clients[seq % clients.length].send(`${seq} ${pad}`);
    }
    const offeredSeconds = (performance.now() - t0) / 1000;
    const deadline = Date.now() + 5000;
    while (sentAt.size && Date.now() < deadline) await sleep(20);
    for (const c of clients) c.onFrame = null;
    return {
      sent: total, measured: samples.length, lost: sentAt.size, late, offeredRate: total / offeredSeconds,
      p50: pct(samples, 50), p99: pct(samples, 99), max: pct(samples, 100),
    };
  },

  /**
   * Many sessions: `count` sessions of 1 host + `clients` clients each, at
   * most `concurrency` being set up at a time. Stops early at the first
   * `maxErrors` failures.
   */
  async sessions({ base, count, clients, concurrency, maxErrors = 20, group = null, keepAlive = null }) {
    const errors = [];
    let next = 0;
    let ok = 0;
    const t0 = performance.now();
    const setupMs = [];
    const workerLoop = async () => {
      while (next < count && errors.length < maxErrors) {
        next++;
        const t = performance.now();
        try {
          const s = await withTimeout(setupSession(base, clients, keepAlive), STEP_MS, 'session setup');
          s.group = group;
          sessions.push(s);
          ok++;
          setupMs.push(performance.now() - t);
        } catch (e) {
          errors.push(e.message);
        }
      }
    };
    await Promise.all(Array.from({ length: concurrency }, workerLoop));
    return {
      ok, failed: errors.length, errors: [...new Set(errors)].slice(0, 5), seconds: (performance.now() - t0) / 1000,
      setupP50: pct(setupMs, 50), setupMax: pct(setupMs, 100),
    };
  },

  /**
   * One message per held session: its first client sends, the host echoes,
   * the client must get it back. Returns how many made it and their latency.
   */
  async relayCheck({ concurrency = 200, timeoutMs = 20_000, group, only }) {
    let held = sessions.filter((s) => s.host && s.clients.length && (group === undefined || s.group === group));
    if (only !== undefined) held = only.map((i) => held[i]);
    const times = [];
    let failed = 0;
    let next = 0;
    const one = async (s, i) => {
      const c = s.clients[0];
      const text = `check ${i}`;
      const t = performance.now();
      const got = new Promise((resolve) => { c.onFrame = (f) => { if (f === text) resolve(); }; });
      c.send(text);
      await withTimeout(got, timeoutMs, 'relay check');
      times.push(performance.now() - t);
      c.onFrame = null;
    };
    const loop = async () => {
      while (next < held.length) {
        const i = next++;
        try { await one(held[i], i); } catch { failed++; }
      }
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, held.length) }, loop));
    return {
      sessions: held.length, ok: times.length, failed,
      p50: pct(times, 50), max: pct(times, 100),
    };
  },

  /**
   * Matchmaking storm: every host of `group` sends `line` (`/join-session`)
   * at once; waits until each is linked (`!set-master:` or `!added-slave:`)
   * or `timeoutMs` passes. Times are from the first send.
   */
  async search({ group, line = '/join-session', timeoutMs = 60_000 }) {
    const held = sessions.filter((s) => s.group === group);
    const linkedAt = [];
    let masters = 0;
    let slaves = 0;
    const other = new Map();
    let done;
    const all = new Promise((r) => { done = r; });
    let t0;
    for (const s of held) {
      let linked = false;
      s.onLine = (f, line) => {
        if (f.kind === 'set-master' || f.kind === 'added-slave') {
          if (f.kind === 'added-slave') slaves++; else masters++;
          if (!linked) { linked = true; linkedAt.push(performance.now() - t0); if (linkedAt.length === held.length) done(); }
          return true;
        }
        if (f.kind === 'connected' || f.kind === 'disconnected') return false;
        const k = line.replace(/[0-9a-f-]{36}/g, '<sid>').slice(0, 60);
        other.set(k, (other.get(k) ?? 0) + 1);
        return true;
      };
    }
    t0 = performance.now();
    for (const s of held) s.host.send(line);
    await withTimeout(all, timeoutMs, 'search links').catch(() => {});
    for (const s of held) s.onLine = null;
    return {
      hosts: held.length, linked: linkedAt.length, masterLines: masters, slaveLines: slaves,
      seconds: (pct(linkedAt, 100) ?? 0) / 1000, p50: pct(linkedAt, 50),
      other: Object.fromEntries(other),
    };
  },

  /** Closes every client socket of `group` at once (this side). */
  async dropClients({ group }) {
    let n = 0;
    for (const s of sessions) {
      if (s.group !== group) continue;
      for (const c of s.clients) { c.dropped = true; c.terminate(); n++; }
      s.clients = [];
    }
    return { dropped: n };
  },

  /**
   * `/stats` from the first host of `group`, again and again, until
   * `numClientsOnline` equals `until`. Returns when that happened (ms after the
   * call) and how many polls it took.
   */
  async statsUntil({ group, until, timeoutMs = 60_000, intervalMs = 20 }) {
    const s = sessions.find((x) => x.group === group);
    const ask = () => {
      const got = new Promise((resolve) => {
        s.onLine = (f) => { if (f.kind !== 'stats') return false; resolve(f.stats); return true; };
      });
      s.host.send('/stats');
      return withTimeout(got, 10_000, '/stats answer');
    };
    try {
      const { value, polls, ms } = await pollUntil(ask, (st) => st.numClientsOnline === until,
        { everyMs: intervalMs, timeoutMs, what: `/stats showing ${until} clients` });
      return { ms, polls, stats: value };
    } finally {
      s.onLine = null;
    }
  },

  /**
   * An echo host made with the client library (resume on or off): every
   * message from client n goes back to n.
   */
  async libHost({ base, resume }) {
    const h = new RelayHost({ base, ...libOptions(resume) });
    h.addEventListener('message', (e) => { if (e.detail.client > 0) h.send(e.detail.client, e.detail.text); });
    const s = { sid: null, group: 'lib', host: libAdapter(h), clients: [], connected: 0 };
    h.addEventListener('connected', () => { s.connected++; s.connectedWaiter?.(); });
    const open = libOpen(h);
    const session = new Promise((resolve) => h.addEventListener('secret', resolve, { once: true }));
    h.connect();
    await withTimeout(Promise.all([open, session]), STEP_MS, 'library host open');
    s.sid = h.sid;
    sessions.push(s);
    return { sid: h.sid };
  },

  async libWaitConnected({ n }) {
    const s = sessions.find((x) => x.host?.lib);
    await withTimeout(new Promise((resolve) => {
      const check = () => { if (s.connected >= n) resolve(); };
      s.connectedWaiter = check;
      check();
    }), STEP_MS, `${n} library clients connected`);
    return { connected: s.connected };
  },

  /** `count` library clients of session `sid` (resume on or off), for throughput and latency. */
  async libClients({ base, sid, count, resume }) {
    const clients = Array.from({ length: count }, () => new RelayClient(sid, { base, ...libOptions(resume) }));
    const opened = clients.map(libOpen);
    for (const c of clients) c.connect();
    await withTimeout(Promise.all(opened), STEP_MS, 'library clients open');
    sessions.push({ sid, host: null, clients: clients.map(libAdapter) });
    return { clients: clients.length };
  },

  /** What the library objects' resume counters say (summed): resumes, dead, gaps, duplicates. */
  async libCounters() {
    const sum = {};
    for (const s of sessions) {
      for (const a of [s.host, ...s.clients]) {
        if (!a?.lib) continue;
        for (const [k, v] of Object.entries(a.lib.counters)) sum[k] = (sum[k] ?? 0) + v;
      }
    }
    return sum;
  },

  /**
   * A silent death, measured: `clients` library clients (resume on) of one
   * session, each behind its own TCP proxy to `port`, each sending `hz`
   * frames a second to an echo host (0: idle, heartbeats only). Each round
   * every proxy blackholes its connection (open, carrying nothing) at a
   * random moment within `spreadMs`; for each, the time from the cut until
   * the library declares the connection dead (heartbeat), and until it has
   * resumed on a new socket. Frames are checked: every echo once, in order.
   */
  async deathDetection({ port, clients: n, rounds, hz = 0, spreadMs = 3000, perSession = 8 }) {
    const base = `ws://127.0.0.1:${port}`;
    const hosts = [];
    const peers = [];
    for (let i = 0; i < n; i++) {
      if (i % perSession === 0) {
        // An echo host per `perSession` clients (MAX_CLIENTS is 8).
        const h = new RelayHost({ base, ...libOptions(true) });
        h.addEventListener('message', (e) => { if (e.detail.client > 0) h.send(e.detail.client, e.detail.text); });
        const hOpen = libOpen(h);
        h.connect();
        await withTimeout(hOpen, STEP_MS, 'host open'); // after session:, secret: and ␁resume
        hosts.push(h);
      }
      const proxy = await startProxy(port);
      const c = new RelayClient(hosts.at(-1).sid, { base: proxy.ws, ...libOptions(true) });
      const p = { c, proxy, sent: 0, next: 0, bad: 0, dead: [], resumed: [] };
      c.addEventListener('message', (e) => { if (Number(e.detail.text) !== p.next) p.bad++; p.next = Number(e.detail.text) + 1; });
      c.addEventListener('state', (e) => { if (e.detail.state === 'reconnecting' && /heartbeat/.test(e.detail.detail ?? '')) p.dead.push(performance.now()); });
      c.addEventListener('resumed', () => p.resumed.push(performance.now()));
      const open = libOpen(c);
      c.connect();
      await withTimeout(open, STEP_MS, 'client open');
      peers.push(p);
    }
    const timer = hz > 0 ? setInterval(() => { for (const p of peers) p.c.send(String(p.sent++)); }, 1000 / hz) : null;
    const detect = [];
    const resume = [];
    try {
      await sleep(1000);
      for (let r = 0; r < rounds; r++) {
        await Promise.all(peers.map(async (p) => {
          await sleep(Math.random() * spreadMs);
          const before = p.resumed.length;
          const at = performance.now();
          p.proxy.blackhole();
          await withTimeout((async () => { while (p.resumed.length === before) await sleep(20); })(), 60_000, 'a resume');
          detect.push(p.dead.at(-1) - at);
          resume.push(p.resumed.at(-1) - at);
        }));
      }
    } finally {
      clearInterval(timer);
    }
    // Every echo once and in order: wait for the last one.
    const deadline = Date.now() + 15_000;
    while (hz > 0 && peers.some((p) => p.next < p.sent) && Date.now() < deadline) await sleep(50);
    const lost = peers.reduce((a, p) => a + (p.sent - p.next), 0);
    const bad = peers.reduce((a, p) => a + p.bad, 0);
    const counters = peers.map((p) => p.c.counters);
    for (const h of hosts) h.close();
    for (const p of peers) { p.c.close(); await p.proxy.stop(); }
    return {
      samples: detect.length, hz,
      detectP50: pct(detect, 50), detectP99: pct(detect, 99), detectMax: pct(detect, 100), detectMin: pct(detect, 0),
      resumeP50: pct(resume, 50), resumeP99: pct(resume, 99), resumeMax: pct(resume, 100),
      framesSent: peers.reduce((a, p) => a + p.sent, 0), echoesMissing: lost, outOfOrder: bad,
      gaps: counters.reduce((a, c) => a + c.gaps, 0), duplicatesDropped: counters.reduce((a, c) => a + c.duplicates, 0),
      resent: counters.reduce((a, c) => a + c.resent, 0),
    };
  },

  /** Keep-alive texts received so far, and when (ms on this process's clock). */
  async keepAlives() {
    return { count: keepAliveFrames.length, now: performance.now(), at: keepAliveFrames.slice() };
  },

  /** Sockets held, and how many the far end closed meanwhile. */
  async status() {
    let open = 0;
    for (const s of sessions) for (const ws of [s.host, ...s.clients]) if (ws && ws.readyState === WebSocket.OPEN) open++;
    return { open, unexpectedCloses: closes, lastClose };
  },

  async closeAll() {
    closing = true;
    for (const s of sessions) for (const ws of [...s.clients, s.host]) ws?.terminate();
    sessions.length = 0;
    return {};
  },

  /** CPU this process used so far (also visible in /proc; this is a cross-check). */
  async cpu() {
    const u = process.cpuUsage();
    return { seconds: (u.user + u.system) / 1e6 };
  },
};

process.on('message', async ({ id, cmd, args }) => {
  try {
    const result = await commands[cmd](args ?? {});
    process.send({ id, result });
  } catch (e) {
    process.send({ id, error: e.stack || String(e) });
  }
});
process.on('disconnect', () => process.exit(0));
