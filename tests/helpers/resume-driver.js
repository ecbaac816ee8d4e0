// Numbered traffic through relay-client, the same in Node and in Chromium, for
// the resume tests: a host and its clients exchange frames at a fixed rate
// both ways ("h<k>" from the host to each client, "c<k>" from each client to
// the host, k = 0, 1, 2, … per direction and client), every receiver records
// what reached its app and the gaps it was told of, and a check says whether
// each stream arrived exactly once and in order (or jumped only where a gap
// was announced). The library objects live in the runtime under test; tests
// await conditions on what they recorded.
import assert from 'node:assert/strict';
import { launchChromium } from './browser.js';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { ROOT, sleep } from './relay.js';
import { startProxy } from './proxy.js';

const WAIT_MS = 60_000;

/**
 * Runs inside the runtime under test (it is sent to the browser as source,
 * so it must not close over anything). `lib` is relay-client.
 */
export function traffic(lib) {
  const peers = {}; // name → peer
  let host = null;
  let timer = null;
  const now = () => Date.now();
  const t0 = now();

  function record(name, obj) {
    const p = { name, obj, gaps: [], errors: [], states: [], resumed: [], dead: [], protocol: [], extension: 0, lines: [] };
    obj.addEventListener('state', (e) => {
      const d = e.detail;
      p.states.push({ at: now() - t0, state: d.state, code: d.code, detail: d.detail, error: d.error });
      if (d.state === 'reconnecting' && /heartbeat/.test(d.detail ?? '')) p.dead.push(now() - t0);
    });
    obj.addEventListener('resumed', (e) => p.resumed.push({ at: now() - t0, ...e.detail }));
    obj.addEventListener('error', (e) => { if (e.detail.code === 'protocol') p.protocol.push(e.detail.message); });
    peers[name] = p;
    return p;
  }

  /** A stream's receiver: the sequence numbers that reached the app, and where gaps were announced. */
  const stream = () => ({ sent: 0, got: [], gapsAt: [], late: [] });

  /**
   * Exactly once and in order; a jump only right after an announced gap.
   * `bad`: what broke that; `doubled`: frames that came again (a repeat of
   * an earlier number), which `␁resume <m> reset` permits (at least once).
   */
  function check(s) {
    let expect = 0;
    const bad = [];
    let doubled = 0;
    s.got.forEach((k, i) => {
      if (k < expect) { doubled += 1; return; }
      if (k !== expect && !(k > expect && s.gapsAt.includes(i))) bad.push(`#${i}: got ${k}, expected ${expect}`);
      expect = k + 1;
    });
    return { bad, doubled };
  }

  return {
    lib,
    /** The host; resolves its session id once it is open. */
    async host(opts) {
      const h = new lib.RelayHost(opts);
      const p = record('host', h);
      p.toClient = {}; // client id → stream of h<k> sent (the receiver is the client's)
      p.fromClient = {}; // client id → stream of c<k> received
      h.addEventListener('message', (e) => {
        const { client, text } = e.detail;
        if (text.startsWith('\u0001')) p.extension += 1;
        const s = (p.fromClient[client] ??= stream());
        const m = /^c(\d+)$/.exec(text);
        if (m) s.got.push(Number(m[1]));
      });
      h.addEventListener('gap', (e) => {
        p.gaps.push({ at: now() - t0, ...e.detail });
        for (const s of Object.values(p.fromClient)) s.gapsAt.push(s.got.length);
      });
      // What the relay told the host about its clients while the traffic ran.
      for (const type of ['connected', 'disconnected', 'unknown']) {
        h.addEventListener(type, (e) => {
          const last = p.lines.at(-1);
          const what = `${type} ${e.detail.client}`;
          if (last?.what === what) last.count += 1; else p.lines.push({ at: now() - t0, what, count: 1 });
        });
      }
      host = p;
      const open = new Promise((resolve, reject) => h.addEventListener('state', (e) => {
        if (e.detail.state === 'open') resolve();
        if (e.detail.state === 'closed') reject(new Error(`host closed: ${e.detail.error}`));
      }));
      h.connect();
      await open;
      return h.sid;
    },

    /** A client `name` of session `sid`; resolves the id its host heard in `connected:`. */
    async client(name, sid, opts) {
      const c = new lib.RelayClient(sid, opts);
      const p = record(name, c);
      p.fromHost = stream();
      c.addEventListener('message', (e) => {
        const { text } = e.detail;
        if (text.startsWith('\u0001')) p.extension += 1;
        const m = /^h(\d+)$/.exec(text);
        if (m) p.fromHost.got.push(Number(m[1]));
      });
      c.addEventListener('gap', (e) => { p.gaps.push({ at: now() - t0, ...e.detail }); p.fromHost.gapsAt.push(p.fromHost.got.length); });
      const heard = new Promise((resolve) => {
        const on = (e) => { if (!Object.values(peers).some((x) => x.id === e.detail.client)) { host.obj.removeEventListener('connected', on); resolve(e.detail.client); } };
        host.obj.addEventListener('connected', on);
      });
      c.connect();
      p.id = await heard;
      p.toHost = stream();
      host.toClient[p.id] = p.fromHost; // what the host sends p, as p receives it
      host.fromClient[p.id] ??= stream();
      return p.id;
    },

    /** Every client and the host send one numbered frame each way, `hz` times a second. */
    start(hz = 60) {
      const step = () => {
        for (const p of Object.values(peers)) {
          if (p === host) continue;
          const down = host.toClient[p.id];
          try { host.obj.send(p.id, `h${down.sent}`); down.sent += 1; } catch (e) { host.errors.push(e.message); }
          const up = host.fromClient[p.id];
          try { p.obj.send(`c${up.sent}`); up.sent += 1; } catch (e) { p.errors.push(e.message); }
        }
      };
      timer = setInterval(step, 1000 / hz);
    },
    stop() { clearInterval(timer); timer = null; },

    /** The library's debugging hook: the peer's socket goes silent both ways. */
    blackhole(name) { return peers[name].obj._blackhole(); },

    /** A peer's recorded events and counters. */
    peer(name) {
      const p = peers[name];
      const { obj, toClient, fromClient, fromHost, toHost, ...rest } = p;
      return { ...rest, counters: obj.counters, state: obj.state, sid: obj.sid };
    },

    /** Per stream: sent, received, the last received, and what broke the order. */
    streams() {
      const out = {};
      for (const p of Object.values(peers)) {
        if (p === host) continue;
        const down = host.toClient[p.id];
        const up = host.fromClient[p.id];
        out[`host>${p.name}`] = { sent: down.sent, got: down.got.length, last: down.got.at(-1) ?? -1, gaps: down.gapsAt.length, ...check(down) };
        out[`${p.name}>host`] = { sent: up.sent, got: up.got.length, last: up.got.at(-1) ?? -1, gaps: up.gapsAt.length, ...check(up) };
      }
      return out;
    },

    /** True once every stream's receiver has frame `sent - 1` (all of it, when stopped). */
    allArrived() {
      return Object.values(this.streams()).every((s) => s.last === s.sent - 1);
    },
    /** True once every stream got `n` more frames than `base` (a streams() result). */
    flowing(base, n = 30) {
      const now2 = this.streams();
      return Object.entries(now2).every(([k, s]) => s.got >= (base?.[k]?.got ?? 0) + n);
    },
    resumedAtLeast(name, k) { return peers[name].resumed.length >= k; },
    /** Milliseconds on this runtime's clock since the driver started (the clock of the recorded events). */
    mark() { return now() - t0; },
    close() { this.stop(); for (const p of Object.values(peers)) p.obj.close(); },
  };
}

/** The driver in this Node process (the library from client/, the global WebSocket). */
export async function nodeTraffic() {
  const lib = await import(pathToFileURL(path.join(ROOT, 'client', 'relay-client.js')).href);
  const T = traffic(lib);
  return {
    name: 'node',
    call: async (method, ...args) => T[method](...args),
    async until(method, args = [], { timeout = WAIT_MS, what = method } = {}) {
      const deadline = Date.now() + timeout;
      for (;;) {
        const v = T[method](...args);
        if (v) return v;
        if (Date.now() > deadline) throw new Error(`node: never ${what}; streams: ${JSON.stringify(T.streams())}`);
        await sleep(10);
      }
    },
    async close() { T.close(); },
  };
}

/**
 * The driver in headless Chromium, with the library as the relay at `pageUrl`
 * serves it (/relay-client.js), on the page it serves. In a new page of
 * `browser` if given (left open on close), else of a browser of its own.
 */
export async function browserTraffic(pageUrl, { browser: shared } = {}) {
  const browser = shared ?? await launchChromium();
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (err) => errors.push(err.message));
  await page.goto(`${pageUrl}/`);
  await page.evaluate(async (src) => {
    const lib = await import('/relay-client.js');
    window.T = (0, eval)(`(${src})`)(lib);
  }, traffic.toString());
  return {
    name: 'chromium',
    page,
    errors,
    call: (method, ...args) => page.evaluate(([m, a]) => window.T[m](...a), [method, args]),
    async until(method, args = [], { timeout = WAIT_MS, what = method } = {}) {
      try {
        const handle = await page.waitForFunction(([m, a]) => window.T[m](...a), [method, args], { timeout, polling: 50 });
        return handle.jsonValue();
      } catch (e) {
        const streams = await page.evaluate(() => window.T.streams()).catch(() => ({}));
        throw new Error(`chromium: never ${what}; streams: ${JSON.stringify(streams)}`, { cause: e });
      }
    },
    async close() {
      await page.evaluate(() => window.T.close()).catch(() => {});
      await (shared ? page.close() : browser.close());
    },
  };
}

// ---- the scenario, shared by tests/resume.test.js (Node) and tests/page.test.js (Chromium)

/**
 * The scenario, in whichever runtime T drives: a host and `clients` clients,
 * each behind its own proxy, exchanging numbered frames at 60 Hz both ways.
 * `cut(names, outageMs)` blackholes those peers' connections and refuses new
 * ones for `outageMs`, then waits until each has resumed and traffic flows
 * again. Returns the proxies and the helpers; the caller runs the phases.
 */
export async function setUpTraffic(T, relayPort, { clients = 3, libOptions = {}, later }) {
  const proxies = { host: await startProxy(relayPort) };
  later(() => proxies.host.stop());
  // A game's settings: sends buffered while reconnecting, and retries at
  // least every 2 s, so a socket is back within 2 s of its network.
  const opts = { maxBufferedMessages: 100_000, maxBufferedBytes: 64 << 20, maxRetries: 50, maxDelayMs: 2000, ...libOptions };
  const sid = await T.call('host', { base: proxies.host.ws, ...opts });
  for (let i = 1; i <= clients; i++) {
    proxies[`c${i}`] = await startProxy(relayPort);
    later(() => proxies[`c${i}`].stop());
    await T.call('client', `c${i}`, sid, { base: proxies[`c${i}`].ws, ...opts });
  }
  await T.call('start', 60);
  await T.until('flowing', [null, 30], { what: 'traffic flowing' });
  const detections = [];

  async function cut(names, outageMs) {
    const before = {};
    for (const n of names) before[n] = (await T.call('peer', n)).resumed.length;
    const at = await T.call('mark');
    for (const n of names) {
      proxies[n].refuse(true);
      assert.ok(proxies[n].blackhole() >= 1, `${n} had a connection to cut`);
    }
    // The outage's length is the scenario, not a wait for something.
    const back = setTimeout(() => { for (const n of names) proxies[n].refuse(false); }, outageMs);
    try {
      for (const n of names) {
        await T.until('resumedAtLeast', [n, before[n] + 1], { what: `${n} resumed`, timeout: outageMs + 60_000 });
      }
    } finally {
      clearTimeout(back);
      for (const n of names) proxies[n].refuse(false);
    }
    for (const n of names) {
      const p = await T.call('peer', n);
      detections.push({ who: n, outageMs, deadAfterMs: (p.dead.at(-1) ?? NaN) - at, resumedAfterMs: p.resumed.at(-1).at - at, counters: p.counters });
    }
    const base = await T.call('streams');
    await T.until('flowing', [base, 30], { what: `traffic flowing again after cutting ${names.join(' + ')}` });
  }
  return { sid, proxies, cut, detections };
}

/**
 * Stops the traffic, waits for every frame, and checks every stream: all of
 * it, once, in order (or jumping only at an announced gap). `doublesFrom`:
 * senders ('host', 'c1', …) whose frames may come twice, because the relay
 * said `␁resume <m> reset` to them (PROTOCOL.md 7.5: at least once).
 */
export async function finishTraffic(T, { doublesFrom = [] } = {}) {
  await T.call('stop');
  const host = await T.call('peer', 'host');
  const told = `; the host was told: ${JSON.stringify(host.lines)}; states: ${JSON.stringify(host.states.slice(-12))}`;
  await T.until('allArrived', [], { what: `every frame sent arrived${told}` });
  const streams = await T.call('streams');
  for (const [name, s] of Object.entries(streams)) {
    assert.deepEqual(s.bad, [], `${name}: exactly once and in order${told}`);
    if (!doublesFrom.includes(name.split('>')[0])) assert.equal(s.doubled, 0, `${name}: ${s.doubled} frames came twice${told}`);
    if (!s.gaps) assert.equal(s.got - s.doubled, s.sent, `${name}: ${s.got - s.doubled} of ${s.sent}`);
  }
  return streams;
}

/**
 * The relay's settings for the scenario. Resending what an outage held back
 * is a burst: a host at 3 × 60 Hz cut for 20 s has 3,600 frames to send
 * again at once, over the default rate limits. LOG_LIFECYCLE shows the
 * session object being constructed again after its eviction.
 */
export const SCENARIO_VARS = Object.freeze({ LOG_LIFECYCLE: 'true', RATE_LIMIT_PER_SECOND: '100000', RATE_LIMIT_BURST: '100000' });
const CONSTRUCTED = /lifecycle: session object constructed/;

/**
 * The scenario, in whichever runtime T drives, against `relay`
 * (startRelay with SCENARIO_VARS): a host and three clients at 60 Hz both
 * ways; the host cut for 5 s, then a client, then both, then everyone long
 * enough for the session's object to be evicted before the resume. Every
 * stream must arrive once and in order with no gap (nothing is old enough to
 * leave the relay's window), and the object must have been constructed
 * again. Returns the streams and the detection times, for diagnostics.
 */
export async function cutsScenario(T, relay, later) {
  const { cut, detections } = await setUpTraffic(T, relay.port, { clients: 3, later });
  await cut(['host'], 5000);
  await cut(['c2'], 5000);
  await cut(['host', 'c3'], 5000);
  // Everyone silent long enough for workerd to evict the session's object
  // (about 10 s idle); the resume then wakes a fresh one, which has only
  // what the relay stored. (Under 30 s of silence: past that, the waking
  // object closes the silent sockets 4005.)
  const constructed = relay.count(CONSTRUCTED);
  await cut(['host', 'c1', 'c2', 'c3'], 18_000);
  const streams = await finishTraffic(T);
  assert.ok(relay.count(CONSTRUCTED) > constructed, 'the session object was evicted during the long cut and constructed again');
  for (const name of ['host', 'c1', 'c2', 'c3']) {
    const p = await T.call('peer', name);
    assert.equal(p.extension, 0, `${name}: no extension line reached the app`);
    assert.deepEqual(p.gaps, [], `${name}: no gap`);
    assert.deepEqual(p.errors, [], `${name}: no send failed`);
    assert.deepEqual(p.protocol, [], `${name}: no protocol error`);
  }
  return { streams, detections: detections.map(({ counters, ...d }) => d) };
}
