// Drives relay-client the same way in Node and in Chromium, so each behaviour
// is tested once per runtime: the library objects live in that runtime, their
// events are recorded there, and tests await recorded events.
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { launchChromium } from './browser.js';
import { ROOT, sleep } from './relay.js';

const WAIT_MS = 20_000;

/**
 * Runs inside the runtime under test (it is also sent to the browser as
 * source, so it must not close over anything).
 */
export function harness(lib) {
  const TYPES = ['state', 'frame', 'error', 'message', 'session', 'secret', 'connected', 'disconnected', 'unknown', 'invalid',
    'linked', 'unlinked', 'stats', 'version', 'keepalive'];
  const objs = [];
  const recs = [];
  const clone = (d) => JSON.parse(JSON.stringify(d ?? {}));
  const matches = (detail, match) => Object.entries(match).every(([k, v]) => JSON.stringify(detail[k]) === JSON.stringify(v));
  return {
    lib,
    make(kind, a, b, extra = {}) {
      const opts = kind === 'host' ? { ...a } : { ...b };
      if (extra.countingWebSocket) {
        const Base = opts.WebSocket ?? globalThis.WebSocket;
        const counter = { n: 0 };
        opts.WebSocket = class extends Base { constructor(url) { super(url); counter.n += 1; } };
        extra.counter = counter;
      }
      const o = kind === 'host' ? new lib.RelayHost(opts) : new lib.RelayClient(a, opts);
      const list = [];
      for (const type of TYPES) o.addEventListener(type, (e) => list.push({ type, detail: clone(e.detail), at: Date.now() }));
      o.counter = extra.counter;
      objs.push(o);
      recs.push(list);
      return objs.length - 1;
    },
    call(h, method, args = []) {
      try {
        const r = objs[h][method](...args);
        return { ok: r === undefined || r === objs[h] ? null : r };
      } catch (e) {
        return { error: e.message, code: e.code ?? e.name };
      }
    },
    get(h, prop) {
      const v = objs[h][prop];
      return v instanceof Set ? [...v].sort((x, y) => (x < y ? -1 : 1)) : v;
    },
    /** Sends on the raw socket, past the library's checks: 'binary', 'big' or a flood of n frames. */
    raw(h, what, n = 0) {
      const ws = objs[h].socket;
      if (what === 'binary') ws.send(new Uint8Array([1, 2, 3]));
      else if (what === 'big') ws.send('x'.repeat((1 << 20) + 1));
      else for (let i = 0; i < n; i++) ws.send(`flood ${i}`);
    },
    counted(h) { return objs[h].counter?.n ?? null; },
    /**
     * A barrier for "nothing more happens": resolves once a timer of this
     * runtime fires that is due after any reconnect `h` could have scheduled
     * so far (a first back-off is at most its initialDelayMs), so the events
     * recorded by then include whatever such a reconnect emits.
     */
    settle(h) {
      return new Promise((resolve) => setTimeout(resolve, objs[h].options.initialDelayMs + 1));
    },
    find(h, type, match = {}, from = 0) {
      const list = recs[h];
      for (let i = from; i < list.length; i++) {
        if (list[i].type === type && matches(list[i].detail, match)) return { ...list[i], index: i };
      }
      return null;
    },
    events(h, type) {
      return recs[h].map((e, index) => ({ ...e, index })).filter((e) => !type || e.type === type);
    },
  };
}

/** Recorded events for a failure message, each with its time after the first. */
function listEvents(events) {
  const t0 = events[0]?.at;
  return events.map((e) => `+${e.at - t0} ms ${e.type} ${JSON.stringify(e.detail)}`).join('\n  ');
}

/** The library in this Node process (global WebSocket unless a test injects one). */
export async function nodeDriver() {
  const lib = await import(pathToFileURL(path.join(ROOT, 'client', 'relay-client.js')).href);
  const H = harness(lib);
  return {
    name: 'node',
    lib,
    async make(kind, a, b, extra) { return H.make(kind, a, b, extra); },
    async call(h, method, ...args) { return H.call(h, method, args); },
    async get(h, prop) { return H.get(h, prop); },
    async raw(h, what, n) { return H.raw(h, what, n); },
    async counted(h) { return H.counted(h); },
    async settle(h) { return H.settle(h); },
    async events(h, type) { return H.events(h, type); },
    async waitFor(h, type, match = {}, { from = 0, timeout = WAIT_MS } = {}) {
      const deadline = Date.now() + timeout;
      for (;;) {
        const hit = H.find(h, type, match, from);
        if (hit) return hit;
        if (Date.now() > deadline) {
          throw new Error(`node: no ${type} ${JSON.stringify(match)} within ${timeout} ms; events:\n  ${listEvents(H.events(h))}`);
        }
        await sleep(10);
      }
    },
    async close() {},
  };
}

/** The library as the relay serves it (/relay-client.js), in headless Chromium. */
export async function browserDriver(relayUrl) {
  const browser = await launchChromium();
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (err) => errors.push(err.message));
  await page.goto(`${relayUrl}/`);
  const exportNames = await page.evaluate(async (src) => {
    const lib = await import('/relay-client.js');
    window.H = (0, eval)(`(${src})`)(lib);
    return Object.keys(lib).sort();
  }, harness.toString());
  const ev = (fn, arg) => page.evaluate(fn, arg);
  return {
    name: 'chromium',
    page,
    errors,
    exportNames,
    make: (kind, a, b, extra) => ev(([k, x, y, e]) => window.H.make(k, x, y, e ?? {}), [kind, a, b, extra]),
    call: (h, method, ...args) => ev(([hh, m, aa]) => window.H.call(hh, m, aa), [h, method, args]),
    get: (h, prop) => ev(([hh, p]) => window.H.get(hh, p), [h, prop]),
    raw: (h, what, n) => ev(([hh, w, nn]) => window.H.raw(hh, w, nn), [h, what, n]),
    counted: (h) => ev((hh) => window.H.counted(hh), h),
    settle: (h) => ev((hh) => window.H.settle(hh), h),
    events: (h, type) => ev(([hh, t]) => window.H.events(hh, t), [h, type]),
    async waitFor(h, type, match = {}, { from = 0, timeout = WAIT_MS } = {}) {
      try {
        const handle = await page.waitForFunction(([hh, t, m, f]) => window.H.find(hh, t, m, f), [h, type, match, from], { timeout, polling: 10 });
        return handle.jsonValue();
      } catch (e) {
        const events = await ev((hh) => window.H.events(hh), h).catch(() => []);
        throw new Error(`chromium: no ${type} ${JSON.stringify(match)} within ${timeout} ms; events:\n  ${listEvents(events)}`, { cause: e });
      }
    },
    async close() { await browser.close(); },
  };
}
