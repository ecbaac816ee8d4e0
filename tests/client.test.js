// relay-client (client/) against the built worker under `wrangler dev`: each
// behaviour once in Node 22 (global WebSocket) and once in headless Chromium
// (the copy the relay serves at /relay-client.js). Network trouble comes from
// a TCP proxy (tests/helpers/proxy.js): latency, cuts, refusals, close frames.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, symlinkSync, writeFileSync, readFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import path from 'node:path';
import WS from 'ws';
import { startRelay, host, join, barrier, client as rawClient, ROOT } from './helpers/relay.js';
import { startProxy, startBlackHole } from './helpers/proxy.js';
import { nodeDriver, browserDriver } from './helpers/client-driver.js';

const MAX_CLIENTS = 3;
let relay;
let node;
let chrome;
const cleanups = [];

before(async () => {
  relay = await startRelay({
    vars: { MAX_CLIENTS: String(MAX_CLIENTS), RECONNECT_SECONDS: '30', RATE_LIMIT_PER_SECOND: '20', RATE_LIMIT_BURST: '40' },
  });
  node = await nodeDriver();
  chrome = await browserDriver(relay.url);
});

after(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => {});
  await chrome?.close();
  await relay?.stop();
});

const later = (fn) => cleanups.push(fn);
const port = (url) => Number(new URL(url).port);
async function proxy(opts) {
  const p = await startProxy(port(relay.url), opts);
  later(() => p.stop());
  return p;
}
async function hostPeer(query) {
  const h = await host(relay, query);
  later(async () => h.terminate());
  return h;
}

// ---- the package itself ------------------------------------------------------

const RUNTIME_EXPORTS = ['CLOSE', 'CLOSE_DROPPED', 'CLOSE_POLICY', 'MAX_FRAME_BYTES', 'MAX_KEEP_ALIVE_BYTES', 'NO_SLOTS_TEXT',
  'RelayClient', 'RelayError', 'RelayHost', 'closePolicy', 'newUuid', 'parseHostFrame', 'redactUrl', 'relayBase'];

test('package: imports by name through its exports map, in Node and Chromium', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'relay-client-consumer-'));
  mkdirSync(path.join(dir, 'node_modules'));
  symlinkSync(path.join(ROOT, 'client'), path.join(dir, 'node_modules', 'relay-client'), 'dir');
  writeFileSync(path.join(dir, 'use.mjs'), "import * as m from 'relay-client'; console.log(JSON.stringify(Object.keys(m).sort()));\n");
  const run = spawnSync(process.execPath, ['use.mjs'], { cwd: dir, encoding: 'utf8' });
  assert.equal(run.status, 0, run.stderr);
  assert.deepEqual(JSON.parse(run.stdout), RUNTIME_EXPORTS);
  const pkg = JSON.parse(readFileSync(path.join(ROOT, 'client', 'package.json'), 'utf8'));
  assert.equal(pkg.type, 'module');
  assert.deepEqual(pkg.exports['.'], { types: './relay-client.d.ts', default: './relay-client.js' });
  assert.deepEqual(chrome.exportNames, RUNTIME_EXPORTS, 'the copy served at /relay-client.js has the same exports');
  assert.equal(await (await fetch(`${relay.url}/relay-client.js`)).text(), readFileSync(path.join(ROOT, 'client', 'relay-client.js'), 'utf8'),
    '/relay-client.js is the package source, byte for byte');
});

test('package: the .d.ts declares every export and type-checks a consumer (and rejects a wrong one)', () => {
  const dts = readFileSync(path.join(ROOT, 'client', 'relay-client.d.ts'), 'utf8');
  const declared = [...dts.matchAll(/^export declare (?:const|function|class) (\w+)/gm)].map((m) => m[1]).sort();
  assert.deepEqual(declared, RUNTIME_EXPORTS);
  const dir = mkdtempSync(path.join(tmpdir(), 'relay-client-types-'));
  mkdirSync(path.join(dir, 'node_modules'));
  symlinkSync(path.join(ROOT, 'client'), path.join(dir, 'node_modules', 'relay-client'), 'dir');
  writeFileSync(path.join(dir, 'good.ts'), `
import { RelayHost, RelayClient, CLOSE, closePolicy, type StateDetail, type GapDetail, type ResumeCounters } from 'relay-client';
const host = new RelayHost({ base: 'ws://127.0.0.1:8787', keepAlive: 'ping', maxRetries: 5 });
host.addEventListener('message', (e) => { const n: number = e.detail.client; const t: string = e.detail.text; void n; void t; });
host.addEventListener('state', (e) => { const s: StateDetail = e.detail; void s.unsent; });
const sent: boolean = host.send(1, 'hi');
const client = new RelayClient('sid', { base: 'ws://127.0.0.1:8787', uuid: false, maxBufferedMessages: 10 });
client.addEventListener('message', (e) => { const t: string = e.detail.text; void t; });
const code: 4001 = CLOSE.TAKEN_OVER;
const retry: boolean = closePolicy(1008).retry;
void sent; void code; void retry; client.connect().close();
// Resume (PROTOCOL.md section 7).
const r = new RelayClient('sid', { base: 'ws://127.0.0.1:8787', resume: true, heartbeatIntervalMs: 3000, heartbeatTimeoutMs: 6000, resumeWindowBytes: 1 << 18 });
r.addEventListener('gap', (e) => { const g: GapDetail = e.detail; const to: number | null = g.to; void to; });
r.addEventListener('resumed', (e) => { const n: number = e.detail.resent; void n; });
r.addEventListener('state', (e) => { const u: string[] | undefined = e.detail.unacked; void u; void e.detail.resumed?.handled; });
const counters: ResumeCounters = r.counters;
const on: boolean = r.resume && r._blackhole();
const hb: 4005 = CLOSE.NO_HEARTBEAT;
host.addEventListener('session', (e) => { const b: boolean | undefined = e.detail.resuming; void b; });
void counters.lost; void on; void hb;
`);
  writeFileSync(path.join(dir, 'bad.ts'), `
import { RelayHost } from 'relay-client';
new RelayHost({ base: 'ws://x' }).send('1', 'hi');
`);
  writeFileSync(path.join(dir, 'bad-resume.ts'), `
import { RelayClient } from 'relay-client';
new RelayClient('s', { resume: 'yes' });
`);
  const tsc = path.join(ROOT, 'node_modules', '.bin', 'tsc');
  const flags = ['--noEmit', '--strict', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--target', 'es2022', '--lib', 'es2022,dom'];
  const good = spawnSync(tsc, [...flags, 'good.ts'], { cwd: dir, encoding: 'utf8' });
  assert.equal(good.status, 0, good.stdout + good.stderr);
  const bad = spawnSync(tsc, [...flags, 'bad.ts'], { cwd: dir, encoding: 'utf8' });
  assert.notEqual(bad.status, 0, 'a string client id must not type-check');
  assert.match(bad.stdout, /bad\.ts.*'string' is not assignable to parameter of type 'number'/);
  const badResume = spawnSync(tsc, [...flags, 'bad-resume.ts'], { cwd: dir, encoding: 'utf8' });
  assert.notEqual(badResume.status, 0, 'resume must be a boolean');
});

// ---- behaviour, once per runtime ---------------------------------------------

for (const env of ['node', 'chromium']) {
  describe(env, { concurrency: true }, () => {
    const d = () => (env === 'node' ? node : chrome);

    /** A library object; `connect()`ed unless told not to. */
    async function make(kind, a, b, { connect = true, extra } = {}) {
      const h = await d().make(kind, a, b, extra);
      later(() => d().call(h, 'close'));
      if (connect) await d().call(h, 'connect');
      return h;
    }
    const last = async (h) => (await d().events(h)).length;
    /**
     * Asserts the `closed` state (a waitFor result) was final: no reconnect
     * was scheduled, and no state followed it. The barrier first: a timer of
     * the library's own runtime due after any reconnect the object could have
     * scheduled, so such a reconnect would be among the recorded events.
     */
    async function stayedClosed(h, closed) {
      await d().settle(h);
      const states = await d().events(h, 'state');
      assert.deepEqual(states.filter((e) => e.detail.state === 'reconnecting').map((e) => e.detail), [], 'no reconnecting state');
      assert.deepEqual(states.filter((e) => e.index > closed.index).map((e) => e.detail), [], `nothing after the final ${JSON.stringify(closed.detail)}`);
    }

    test('host and client talk through the relay (default WebSocket)', async () => {
      const h = await make('host', { base: relay.ws });
      const { detail: { sid } } = await d().waitFor(h, 'session');
      const c = await make('client', sid, { base: relay.ws });
      await d().waitFor(c, 'state', { state: 'open' });
      await d().waitFor(h, 'connected', { client: 1 });
      assert.deepEqual(await d().call(c, 'send', 'hi\nthere'), { ok: true });
      await d().waitFor(h, 'message', { client: 1, text: 'hi\nthere' });
      await d().call(h, 'send', 1, 'yo');
      await d().waitFor(c, 'message', { text: 'yo' });
      assert.deepEqual(await d().get(h, 'clients'), [1]);
    });

    test('an injected WebSocket constructor is used', async () => {
      const h = await hostPeer();
      const opts = { base: relay.ws };
      if (env === 'node') opts.WebSocket = WS; // the "ws" package instead of the global one
      const c = await make('client', h.sid, opts, { extra: { countingWebSocket: true } });
      await d().waitFor(c, 'state', { state: 'open' });
      assert.equal(await h.next(), 'connected: 1');
      assert.equal(await d().counted(c), 1);
      await d().call(c, 'send', 'via the injected constructor');
      assert.equal(await h.next(), '1: via the injected constructor');
    });

    test('connect timeout: a relay that never answers ends in a clear error', async () => {
      const hole = await startBlackHole();
      later(() => hole.stop());
      const c = await make('client', 'sid', { base: hole.ws, connectTimeoutMs: 300 });
      const closed = await d().waitFor(c, 'state', { state: 'closed' });
      const { detail } = closed;
      assert.equal(detail.errorCode, 'connect-failed');
      assert.match(detail.error, /connect timeout \(300 ms\)/);
      await stayedClosed(c, closed);
    });

    test('a refused upgrade (404 for a missing session, 409 for a taken id) ends in a clear error and a final state', async () => {
      const c = await make('client', `missing-${Math.random().toString(36).slice(2)}`, { base: relay.ws });
      const closed = await d().waitFor(c, 'state', { state: 'closed' });
      const { detail } = closed;
      assert.equal(detail.errorCode, 'connect-failed');
      assert.match(detail.error, /refused the upgrade \(e\.g\. 404 session not found/);
      await d().waitFor(c, 'error', { code: 'connect-failed' });
      await stayedClosed(c, closed);
      assert.equal(await d().get(c, 'state'), 'closed');
      assert.equal(await d().get(c, 'active'), false);

      const taken = await hostPeer();
      const h = await make('host', { base: relay.ws, id: taken.sid });
      const hClosed = await d().waitFor(h, 'state', { state: 'closed' });
      assert.equal(hClosed.detail.errorCode, 'connect-failed');
      await stayedClosed(h, hClosed);
    });

    test('back-off with jitter, then give up after maxRetries', async () => {
      const h = await hostPeer();
      const p = await proxy();
      const c = await make('client', h.sid, { base: p.ws, initialDelayMs: 200, factor: 2, jitter: 0.5, maxRetries: 3 });
      await d().waitFor(c, 'state', { state: 'open' });
      p.refuse();
      p.cut();
      const closed = await d().waitFor(c, 'state', { state: 'closed' });
      assert.equal(closed.detail.errorCode, 'gave-up');
      assert.match(closed.detail.error, /gave up after 3 failed reconnect attempts/);
      const retries = (await d().events(c, 'state')).filter((e) => e.detail.state === 'reconnecting').map((e) => e.detail);
      assert.deepEqual(retries.map((r) => r.attempt), [1, 2, 3]);
      retries.forEach((r, k) => {
        const base = 200 * 2 ** k;
        assert.ok(r.retryInMs >= base * 0.5 && r.retryInMs <= base, `attempt ${k + 1}: ${r.retryInMs} ms within [${base / 2}, ${base}]`);
      });
      assert.equal(retries[0].code, 1006);
    });

    test('sends while reconnecting are buffered (bounded) and flushed in order', async () => {
      const h = await hostPeer();
      const p = await proxy();
      const c = await make('client', h.sid, { base: p.ws, initialDelayMs: 3000, jitter: 0, maxBufferedMessages: 3 });
      await d().waitFor(c, 'state', { state: 'open' });
      assert.equal(await h.next(), 'connected: 1');
      p.cut();
      await d().waitFor(c, 'state', { state: 'reconnecting' });
      for (const m of ['a', 'b', 'c']) assert.deepEqual(await d().call(c, 'send', m), { ok: false }, `${m} is buffered`);
      assert.deepEqual(await d().call(c, 'send', 'd'), { error: 'send buffer full (3 messages, 3 bytes) while reconnecting', code: 'buffer-full' });
      assert.equal(await d().get(c, 'buffered'), 3);
      assert.deepEqual(await h.take(5), ['disconnected: 1', 'connected: 1', '1: a', '1: b', '1: c']);
      assert.equal(await d().get(c, 'buffered'), 0);
    });

    describe('close codes', { concurrency: true }, () => {
      test('1003 (binary frame): final, not retried', async () => {
        const h = await hostPeer();
        const c = await make('client', h.sid, { base: relay.ws });
        await d().waitFor(c, 'state', { state: 'open' });
        await d().raw(c, 'binary');
        const closed = await d().waitFor(c, 'state', { state: 'closed' });
        const { detail } = closed;
        assert.equal(detail.code, 1003);
        assert.equal(detail.errorCode, 'closed');
        await stayedClosed(c, closed);
      });

      test('1009 (frame over 1 MiB): send() refuses it up front; from the relay, final', async () => {
        const h = await hostPeer();
        const c = await make('client', h.sid, { base: relay.ws });
        await d().waitFor(c, 'state', { state: 'open' });
        const tooBig = await d().call(c, 'send', 'x'.repeat((1 << 20) + 1));
        assert.equal(tooBig.code, 'too-big');
        assert.equal(await d().get(c, 'state'), 'open');
        await d().raw(c, 'big');
        const closed = await d().waitFor(c, 'state', { state: 'closed' });
        assert.equal(closed.detail.code, 1009);
        await stayedClosed(c, closed);
      });

      test('1008 (rate limit): final, not retried', async () => {
        const h = await hostPeer();
        const c = await make('client', h.sid, { base: relay.ws });
        await d().waitFor(c, 'state', { state: 'open' });
        await d().raw(c, 'flood', 200);
        const closed = await d().waitFor(c, 'state', { state: 'closed' });
        const { detail } = closed;
        assert.equal(detail.code, 1008);
        assert.match(detail.error, /1008 rate limit exceeded/);
        await stayedClosed(c, closed);
      });

      test('1013 (host unavailable): retried; the client is back once the host takes over', async () => {
        const h = await hostPeer();
        const c = await make('client', h.sid, { base: relay.ws, initialDelayMs: 300 });
        await d().waitFor(c, 'state', { state: 'open' });
        assert.equal(await h.next(), 'connected: 1');
        h.close();
        await h.closed(); // the relay has handled the host's close: the session now waits
        const chunk = 'q'.repeat(100 * 1024);
        for (let i = 0; i < 3; i++) await d().call(c, 'send', chunk);
        const retry = await d().waitFor(c, 'state', { state: 'reconnecting', code: 1013 });
        const back = await hostPeer(`id=${h.sid}&secret=${h.secret}`);
        await d().waitFor(c, 'state', { state: 'open' }, { from: retry.index });
        assert.equal(await back.until('connected: 1').then(() => 'ok'), 'ok');
      });

      test('4001 (taken over elsewhere): final, the host does not take the session back', async () => {
        const h = await make('host', { base: relay.ws });
        const { detail: { secret } } = await d().waitFor(h, 'secret');
        const sid = await d().get(h, 'sid');
        const other = await hostPeer(`id=${sid}&secret=${secret}`);
        const closed = await d().waitFor(h, 'state', { state: 'closed' });
        const { detail } = closed;
        assert.equal(detail.code, 4001);
        assert.equal(detail.errorCode, 'closed');
        await stayedClosed(h, closed);
        assert.deepEqual(await barrier(other), [], 'the other host still holds the session, undisturbed');
      });

      test('4002 (replaced by the same uuid): final, no fight over the id', async () => {
        const h = await hostPeer();
        const uuid = `u-${Math.random().toString(36).slice(2)}`;
        const c = await make('client', h.sid, { base: relay.ws, uuid });
        await d().waitFor(c, 'state', { state: 'open' });
        assert.equal(await h.next(), 'connected: 1');
        const twin = await rawClient(relay, h.sid, `client=${uuid}`);
        const closed = await d().waitFor(c, 'state', { state: 'closed' });
        const { detail } = closed;
        assert.equal(detail.code, 4002);
        await stayedClosed(c, closed);
        assert.deepEqual(await h.take(2), ['disconnected: 1', 'connected: 1']);
        twin.send('still mine');
        assert.equal(await h.next(), '1: still mine');
        twin.close();
      });

      test('4003 (session full): final, with the relay\'s error text', async () => {
        const h = await hostPeer();
        for (let i = 0; i < MAX_CLIENTS; i++) await join(relay, h);
        const c = await make('client', h.sid, { base: relay.ws });
        await d().waitFor(c, 'message', { text: 'error: no slots available, max clients reached' });
        const closed = await d().waitFor(c, 'state', { state: 'closed' });
        const { detail } = closed;
        assert.equal(detail.code, 4003);
        await stayedClosed(c, closed);
      });

      test('4004 (session closed): final', async () => {
        const h = await hostPeer('reconnect=false');
        const c = await make('client', h.sid, { base: relay.ws });
        await d().waitFor(c, 'state', { state: 'open' });
        h.close();
        const closed = await d().waitFor(c, 'state', { state: 'closed' });
        const { detail } = closed;
        assert.equal(detail.code, 4004);
        assert.match(detail.error, /4004 session closed: the session ended/);
        await stayedClosed(c, closed);
      });

      test('1000, 1001, 1011 and 1006 (no close frame): retried, and the client is back', async () => {
        const h = await hostPeer();
        const p = await proxy();
        const c = await make('client', h.sid, { base: p.ws, initialDelayMs: 100 });
        await d().waitFor(c, 'state', { state: 'open' });
        for (const code of [1000, 1001, 1011, 1006]) {
          const from = await last(c);
          if (code === 1006) p.cut(); else p.closeWith(code, 'from the proxy');
          await d().waitFor(c, 'state', { state: 'reconnecting', code }, { from });
          await d().waitFor(c, 'state', { state: 'open' }, { from });
        }
      });
    });

    test('state follows the relay\'s close frame, not the TCP teardown; sends meanwhile are kept, not thrown', async () => {
      const h = await hostPeer('reconnect=false');
      const c = await make('client', h.sid, { base: relay.ws });
      await d().waitFor(c, 'state', { state: 'open' });
      h.close();
      const closing = await d().waitFor(c, 'state', { state: 'closing' });
      assert.equal(closing.detail.byRelay, true);
      assert.deepEqual(await d().call(c, 'send', 'late'), { ok: false }, 'buffered, not thrown');
      const closed = await d().waitFor(c, 'state', { state: 'closed' });
      assert.ok(closing.index < closed.index);
      assert.equal(closed.detail.code, 4004);
      assert.deepEqual(closed.detail.unsent, ['late'], 'the final state reports what never left');
    });

    // With resume off, a switch is a take-over of sections 2–3 (the clients listed again, a client's
    // disconnected:/connected:); with resume on (the default) see tests/resume.test.js.
    test('resume off: host take-over loses no client frames (old host socket behind 50 ms of latency)', async () => {
      const p = await proxy({ latencyMs: 50 });
      const h = await make('host', { base: p.ws, resume: false });
      const { detail: { sid } } = await d().waitFor(h, 'session');
      await d().waitFor(h, 'secret');
      const a = await rawClient(relay, sid);
      const b = await rawClient(relay, sid);
      await d().waitFor(h, 'connected', { client: 2 });
      for (let i = 0; i < 5; i++) { a.send(`a${i}`); b.send(`b${i}`); }
      assert.deepEqual(await d().call(h, 'drop'), { ok: true });
      for (let i = 5; i < 10; i++) { a.send(`a${i}`); b.send(`b${i}`); }
      await d().waitFor(h, 'message', { client: 1, text: 'a9' });
      await d().waitFor(h, 'message', { client: 2, text: 'b9' });
      const msgs = (await d().events(h, 'message')).map((e) => e.detail);
      const of = (n) => msgs.filter((m) => m.client === n).map((m) => m.text);
      assert.deepEqual(of(1), Array.from({ length: 10 }, (_, i) => `a${i}`));
      assert.deepEqual(of(2), Array.from({ length: 10 }, (_, i) => `b${i}`));
      const again = await d().waitFor(h, 'session', { sid, takeOver: true });
      await d().waitFor(h, 'connected', { client: 2 }, { from: again.index });
      assert.equal(await d().get(h, 'state'), 'open');
      assert.deepEqual(await d().get(h, 'clients'), [1, 2]);
      a.close(); b.close();
    });

    test('resume off: client drop() loses no host frames (make before break with its uuid)', async () => {
      const h = await hostPeer();
      const p = await proxy({ latencyMs: 50 });
      const c = await make('client', h.sid, { base: p.ws, resume: false });
      await d().waitFor(c, 'state', { state: 'open' });
      assert.equal(await h.next(), 'connected: 1');
      for (let i = 0; i < 5; i++) h.send(`1: h${i}`);
      assert.deepEqual(await d().call(c, 'drop'), { ok: true });
      assert.deepEqual(await h.take(2), ['disconnected: 1', 'connected: 1']);
      for (let i = 5; i < 10; i++) h.send(`1: h${i}`);
      await d().waitFor(c, 'message', { text: 'h9' });
      const texts = (await d().events(c, 'message')).map((e) => e.detail.text);
      assert.deepEqual(texts, Array.from({ length: 10 }, (_, i) => `h${i}`));
    });

    test('leave() and a final close() clear the host\'s own view of its links and clients', async () => {
      const m = await make('host', { base: relay.ws });
      const s = await make('host', { base: relay.ws });
      const msid = (await d().waitFor(m, 'session')).detail.sid;
      const ssid = (await d().waitFor(s, 'session')).detail.sid;
      const cl = await rawClient(relay, msid);
      await d().waitFor(m, 'connected', { client: 1 });
      await d().call(m, 'command', '/join-session master');
      await d().call(s, 'command', `/join-session id=${msid}`);
      await d().waitFor(m, 'linked', { role: 'master', sid: ssid });
      await d().waitFor(s, 'linked', { role: 'slave', sid: msid });
      await d().call(m, 'leave');
      assert.deepEqual(await d().get(m, 'slaves'), [], 'cleared at once: the relay tells only the other side');
      await d().waitFor(m, 'unlinked', { role: 'master', sid: ssid, self: true });
      await d().waitFor(s, 'unlinked', { role: 'slave', sid: msid });
      assert.equal(await d().get(s, 'master'), null);
      assert.deepEqual(await d().get(m, 'clients'), [1]);
      await d().call(m, 'close');
      assert.equal(await d().get(m, 'state'), 'closed');
      assert.deepEqual(await d().get(m, 'clients'), []);
      cl.close();
    });
  });
}

test('no page errors in Chromium', () => {
  assert.deepEqual(chrome.errors, []);
});
