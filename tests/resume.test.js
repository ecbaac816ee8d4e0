// Heartbeat and acknowledged resume (PROTOCOL.md section 7) through the client
// library (client/relay-client.js), which uses it by default:
//  - against a scripted relay (tests/helpers/fake-relay.js), the library's
//    own logic: numbering, dedupe, resend, gaps, the off switch;
//  - against the built worker under `wrangler dev`, through TCP proxies that
//    blackhole a connection (it stays open but carries nothing, either way):
//    a host and three clients at 60 Hz both ways, cut in turn, together, and
//    long enough for the session's object to be evicted, in Node (the same
//    scenario runs in Chromium with the page's library in tests/page.test.js);
//    a cut that outlasts the relay's window (a gap); and the relay's side of
//    the section as written, with raw sockets.
// Every stream must arrive exactly once and in order, or jump only where its
// side was told of a gap.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startRelay, host as rawHost, barrier, Peer, sleep, freePort } from './helpers/relay.js';
import { startProxy } from './helpers/proxy.js';
import { startFakeRelay } from './helpers/fake-relay.js';
import { nodeTraffic, setUpTraffic, finishTraffic, cutsScenario, SCENARIO_VARS } from './helpers/resume-driver.js';
import { RelayHost, RelayClient } from '../client/relay-client.js';

const EXT = '\u0001';
const port = (url) => Number(new URL(url).port);

/** Resolves with the detail of the next `type` event of `obj` matching `ok`. */
function next(obj, type, ok = () => true) {
  return new Promise((resolve) => {
    const on = (e) => { if (ok(e.detail)) { obj.removeEventListener(type, on); resolve(e.detail); } };
    obj.addEventListener(type, on);
  });
}
const opened = (obj) => next(obj, 'state', (d) => d.state === 'open');

/** Polls `fn` (state the library keeps, e.g. its counters) until it holds; the test's timeout is the bound. */
async function until(fn) {
  while (!fn()) await sleep(10);
}

/** Waits until a recorder holds an event of `type` whose fields match `match`; returns it. */
async function seen(events, type, match = {}, from = 0) {
  const hit = () => events.find((e, i) => i >= from && e.type === type && Object.entries(match).every(([k, v]) => e[k] === v));
  await until(hit);
  return hit();
}

/** Records every event of a library object, for assertions after a barrier. */
function recorder(obj, types = ['message', 'gap', 'resumed', 'state', 'error', 'connected', 'disconnected', 'session']) {
  const list = [];
  for (const type of types) obj.addEventListener(type, (e) => list.push({ type, ...e.detail }));
  return list;
}

/** A WebSocket constructor that records what the library sends, for negative checks. */
function spyingWebSocket(sent) {
  return class extends WebSocket {
    send(data) { sent.push(data); super.send(data); }
  };
}

// ---- the library against a scripted relay ----------------------------------

describe('the library against a scripted relay', { concurrency: true, timeout: 30_000 }, () => {
  let relay;
  const cleanups = [];
  const later = (fn) => cleanups.push(fn);
  before(async () => { relay = await startFakeRelay({ windowBytes: 64 * 1024 }); });
  after(async () => {
    for (const c of cleanups.reverse()) await c().catch(() => {});
    await relay?.stop();
  });

  async function hostAndClient(opts = {}, clientOpts = {}) {
    const h = new RelayHost({ base: relay.ws, ...opts });
    later(async () => h.close());
    const hEvents = recorder(h);
    // Listeners first: the runtime may hand over several frames in one task.
    const session = next(h, 'session');
    const hOpen = opened(h);
    h.connect();
    const { sid } = await session;
    await hOpen;
    const c = new RelayClient(sid, { base: relay.ws, ...clientOpts });
    later(async () => c.close());
    const cEvents = recorder(c);
    const heard = next(h, 'connected');
    const cOpen = opened(c);
    c.connect();
    await cOpen;
    const { client: id } = await heard;
    return { h, c, id, sid, hEvents, cEvents };
  }

  test('on by default: resume=1 in both URLs, a uuid for the client, no keepAlive asked for', async () => {
    const { h, c, hEvents, cEvents } = await hostAndClient({ keepAlive: 'ka' }, { keepAlive: 'ka' });
    assert.equal(h.resume, true);
    assert.equal(c.resume, true);
    const url = (events) => events.find((e) => e.type === 'state' && e.state === 'connecting').url;
    assert.match(url(hEvents), /\/session\?resume=1$/);
    assert.match(url(cEvents), new RegExp(`\\?client=${c.uuid}&resume=1$`));
    assert.equal(h.keepAlive, null, 'the heartbeat replaces keepAlive');
    const resumed = cEvents.find((e) => e.type === 'resumed');
    assert.deepEqual(resumed, { type: 'resumed', have: 0, handled: 0, resent: 0, fresh: false, reset: false });
  });

  test('resume: false is today\'s behaviour: no resume=, keepAlive passed, no U+0001 line sent', async () => {
    const sent = [];
    const WS = spyingWebSocket(sent);
    const { h, c, id, hEvents, cEvents } = await hostAndClient(
      { resume: false, keepAlive: 'ka', WebSocket: WS, heartbeatIntervalMs: 10, ackIntervalMs: 10 },
      { resume: false, WebSocket: WS, heartbeatIntervalMs: 10, ackIntervalMs: 10 },
    );
    assert.match(hEvents.find((e) => e.state === 'connecting').url, /\/session\?keepAlive=ka$/);
    assert.equal(h.keepAlive, 'ka');
    c.send('one');
    h.send(id, 'two');
    await seen(hEvents, 'message', { text: 'one' });
    await seen(cEvents, 'message', { text: 'two' });
    // Barrier: a resume object opened after these two, with the same periods,
    // has sent several heartbeats and acks; the library's timer ticks for all
    // of its objects alike, so these two had as many chances to send theirs.
    const controlSent = [];
    const control = new RelayClient(h.sid, { base: relay.ws, WebSocket: spyingWebSocket(controlSent), heartbeatIntervalMs: 10, ackIntervalMs: 10 });
    later(async () => control.close());
    control.connect();
    control.send('control');
    await until(() => controlSent.filter((s) => s === `${EXT}ping`).length >= 3 && controlSent.some((s) => s.startsWith(`${EXT}ack `)));
    assert.deepEqual(sent.filter((s) => s.startsWith(EXT)), []);
    assert.deepEqual(sent, ['one', `${id}: two`]);
    assert.deepEqual(h.counters.sent, 0, 'nothing numbered');
  });

  test('a client without a uuid cannot resume: off by default, an error if asked for', () => {
    assert.equal(new RelayClient('s', { base: relay.ws, uuid: false }).resume, false);
    assert.throws(() => new RelayClient('s', { base: relay.ws, uuid: false, resume: true }), /resume needs a client uuid/);
  });

  test('text starting with U+0001 is refused with resume on (it would read as an extension line), sent with it off', async () => {
    const { h, c, id } = await hostAndClient();
    assert.throws(() => c.send(`${EXT}ack 5`), (e) => e.code === 'reserved');
    assert.throws(() => h.send(id, `${EXT}x`), (e) => e.code === 'reserved');
    assert.throws(() => h.command(`${EXT}ping`), (e) => e.code === 'reserved');
    assert.equal(c.send(`not ${EXT} first`), true);
    const off = new RelayClient('s', { base: relay.ws, resume: false });
    later(async () => off.close());
    off.connect();
    assert.equal(off.send(`${EXT}x`), false, 'buffered, not refused');
  });

  test('extension lines never reach the app; acks let own frames go', async () => {
    const { h, c, id, hEvents, cEvents } = await hostAndClient({ heartbeatIntervalMs: 50, ackIntervalMs: 50 }, { heartbeatIntervalMs: 50, ackIntervalMs: 50 });
    for (let i = 0; i < 20; i++) { c.send(`c${i}`); h.send(id, `h${i}`); }
    await seen(hEvents, 'message', { text: 'c19' });
    await seen(cEvents, 'message', { text: 'h19' });
    // Acknowledged within a few ack periods: the kept frames go.
    await until(() => !c.counters.unacked && !h.counters.unacked);
    for (const e of [...hEvents, ...cEvents]) if (e.type === 'message') assert.ok(!e.text.startsWith(EXT), JSON.stringify(e));
    assert.equal(c.counters.acked, 20);
    assert.equal(h.counters.acked, 20);
    assert.equal(c.counters.received, 20);
  });

  test('a blackholed socket is found dead by the heartbeat; the resume resends and dedupes', async () => {
    const { h, c, id, hEvents, cEvents } = await hostAndClient({}, { heartbeatIntervalMs: 100, heartbeatTimeoutMs: 400, initialDelayMs: 50 });
    c.send('before');
    await seen(hEvents, 'message', { text: 'before' });
    const cutAt = cEvents.length;
    assert.equal(c._blackhole(), true);
    for (let i = 0; i < 5; i++) { c.send(`lost ${i}`); h.send(id, `missed ${i}`); }
    const resumed = await seen(cEvents, 'resumed', {}, cutAt);
    assert.equal(resumed.resent, 5, 'the five frames sent into the void go again');
    assert.equal(resumed.have, 0, 'nothing had come from the host before the cut');
    await seen(hEvents, 'message', { text: 'lost 4' });
    await seen(cEvents, 'message', { text: 'missed 4' });
    assert.deepEqual(hEvents.filter((e) => e.type === 'message').map((e) => e.text), ['before', 'lost 0', 'lost 1', 'lost 2', 'lost 3', 'lost 4']);
    assert.deepEqual(cEvents.filter((e) => e.type === 'message').map((e) => e.text), ['missed 0', 'missed 1', 'missed 2', 'missed 3', 'missed 4']);
    const dead = cEvents.find((e) => e.type === 'state' && e.state === 'reconnecting');
    assert.match(dead.detail, /no frame for \d+ ms: connection dead \(heartbeat\)/);
    assert.equal(dead.code, 1006);
    assert.equal(hEvents.filter((e) => e.type === 'disconnected').length, 0, 'to the host, the client never left');
    assert.equal(c.counters.dead, 1);
    assert.equal(c.counters.resumes, 1);
  });

  test('drop() with resume: the new socket\'s replay of what the old one delivered is dropped, nothing is doubled', async () => {
    const { h, c, id, cEvents } = await hostAndClient();
    for (let i = 0; i < 50; i++) h.send(id, `a${i}`);
    assert.equal(c.drop(), true);
    for (let i = 0; i < 50; i++) h.send(id, `b${i}`);
    await seen(cEvents, 'message', { text: 'b49' });
    const texts = cEvents.filter((e) => e.type === 'message').map((e) => e.text);
    assert.deepEqual(texts, [...Array.from({ length: 50 }, (_, i) => `a${i}`), ...Array.from({ length: 50 }, (_, i) => `b${i}`)]);
    assert.equal(c.counters.received, 100);
  });

  test('a client told of a gap (the relay lost what it kept) hears of it once, then continues in order', async () => {
    const { h, c, id, sid, cEvents } = await hostAndClient({}, { heartbeatIntervalMs: 100, heartbeatTimeoutMs: 400, initialDelayMs: 50 });
    h.send(id, 'kept 0');
    await seen(cEvents, 'message', { text: 'kept 0' });
    c._blackhole();
    for (let i = 0; i < 3; i++) h.send(id, `gone ${i}`);
    // Barrier: the relay handles a host's frames in order, so it has numbered them once /version is answered.
    const version = next(h, 'version');
    h.command('/version');
    await version;
    relay.forget(sid, id);
    const gap = await seen(cEvents, 'gap');
    assert.deepEqual(gap, { type: 'gap', dir: 'in', from: 2, to: 4, lost: 3, why: gap.why });
    h.send(id, 'after');
    await seen(cEvents, 'message', { text: 'after' });
    assert.deepEqual(cEvents.filter((e) => e.type === 'message' || e.type === 'gap').map((e) => e.text ?? `gap ${e.from}-${e.to}`),
      ['kept 0', 'gap 2-4', 'after']);
    assert.equal(c.counters.lost, 3);
  });

  test('a host told of a gap gets its view afresh: clients listed again after the gap event', async () => {
    // The host behind a proxy that refuses it while the relay forgets, so its resume comes after.
    const p = await startProxy(relay.port);
    later(() => p.stop());
    const { h, c, id, sid, hEvents } = await hostAndClient({ base: p.ws, heartbeatIntervalMs: 100, heartbeatTimeoutMs: 400, initialDelayMs: 50 });
    c.send('x');
    await seen(hEvents, 'message', { text: 'x' });
    p.refuse(true);
    p.blackhole();
    c.send('lost to the reset');
    // Handled by the relay (and numbered on the host's stream) once acknowledged.
    await until(() => c.counters.acked === 2);
    relay.forget(sid, 'host');
    p.refuse(false);
    const gap = await seen(hEvents, 'gap');
    assert.deepEqual(gap, { type: 'gap', dir: 'in', from: 3, to: 3, lost: 1, why: gap.why }, 'frames 1 and 2 were connected: 1 and 1: x');
    await seen(hEvents, 'connected', { client: id }, hEvents.indexOf(gap));
    assert.deepEqual([...h.clients], [id]);
    const after = hEvents.slice(hEvents.indexOf(gap));
    assert.deepEqual(after.filter((e) => e.type !== 'state' && e.type !== 'resumed').map((e) => e.type), ['gap', 'connected']);
    assert.ok(!hEvents.some((e) => e.type === 'message' && e.text === 'lost to the reset'));
  });

  test('a relay without section 7 (no ␁resume): a clear final error, not a silent hang', async () => {
    const { WebSocketServer } = await import('ws');
    const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
    await new Promise((r) => wss.once('listening', r));
    later(async () => wss.close());
    const c = new RelayClient('s', { base: `ws://127.0.0.1:${wss.address().port}`, connectTimeoutMs: 300 });
    c.connect();
    const closed = await next(c, 'state', (d) => d.state === 'closed');
    assert.equal(closed.errorCode, 'connect-failed');
    assert.match(closed.error, /does not seem to implement heartbeat and resume \(PROTOCOL\.md section 7\); pass resume: false/);
  });

  test('a final close reports own frames the relay never acknowledged', async () => {
    const { c } = await hostAndClient({}, { ackIntervalMs: 60_000 });
    c._blackhole();
    c.send('never acknowledged');
    const closed = next(c, 'state', (d) => d.state === 'closed');
    c.close();
    assert.deepEqual((await closed).unacked, ['never acknowledged']);
    assert.deepEqual((await closed).unsent, []);
  });

  test('60 Hz traffic, a host and two clients, each cut in turn: every frame once and in order (scripted relay)', async () => {
    const T = await nodeTraffic();
    later(() => T.close());
    const { cut } = await setUpTraffic(T, relay.port, { clients: 2, later, libOptions: { heartbeatIntervalMs: 200, heartbeatTimeoutMs: 800, initialDelayMs: 50 } });
    await cut(['host'], 300);
    await cut(['c1'], 300);
    await cut(['host', 'c2'], 300);
    await finishTraffic(T);
  });
});

// ---- the relay under wrangler dev -------------------------------------------

describe('under wrangler dev', { concurrency: false }, () => {
  let relay;
  const cleanups = [];
  const later = (fn) => cleanups.push(fn);
  before(async () => {
    relay = await startRelay({ vars: SCENARIO_VARS });
    // The build under test must speak section 7: a resume host's third line is `␁resume 0`.
    const h = await rawHost(relay, 'resume=1');
    const third = await h.next();
    h.terminate();
    assert.equal(third, `${EXT}resume 0`, 'the relay answers a new resume host with ␁resume 0 (PROTOCOL.md 7.5): is build/ older than section 7?');
  });
  after(async () => {
    for (const c of cleanups.reverse()) await c().catch(() => {});
    await relay?.stop();
  });

  test('Node: a host and three clients at 60 Hz both ways; the host cut for 5 s, a client, both, then all until the object is evicted', async (t) => {
    const T = await nodeTraffic();
    later(() => T.close());
    const { streams, detections } = await cutsScenario(T, relay, later);
    t.diagnostic(`streams: ${JSON.stringify(streams)}`);
    t.diagnostic(`detections: ${JSON.stringify(detections)}`);
  });

  test('a client silent over 30 s when the object wakes is closed 4005: its host is told (disconnected:, unknown:), the client\'s resume is a connect', async () => {
    const h = new RelayHost({ base: relay.ws });
    later(async () => h.close());
    const hEvents = recorder(h, ['connected', 'disconnected', 'unknown', 'message', 'state']);
    const hOpen = opened(h);
    h.connect();
    await hOpen;
    const p = await startProxy(relay.port);
    later(() => p.stop());
    const c = new RelayClient(h.sid, { base: p.ws, maxDelayMs: 2000, maxRetries: 100 });
    later(async () => c.close());
    const cEvents = recorder(c);
    const cOpen = opened(c);
    c.connect();
    await cOpen;
    await seen(hEvents, 'connected', { client: 1 });
    h.send(1, 'before');
    await seen(cEvents, 'message', { text: 'before' });
    p.refuse(true);
    p.blackhole();
    // The client is silent; the host too, so the object is evicted. The
    // silence is the scenario: 31 s, then the host's frame wakes the object.
    await sleep(31_000);
    h.send(1, 'to a client counted gone');
    await seen(hEvents, 'disconnected', { client: 1 });
    await seen(hEvents, 'unknown', { client: 1 });
    p.refuse(false);
    const back = await seen(hEvents, 'connected', { client: 1 }, hEvents.findIndex((e) => e.type === 'disconnected'));
    h.send(1, 'after');
    await seen(cEvents, 'message', { text: 'after' });
    assert.deepEqual(cEvents.filter((e) => e.type === 'message').map((e) => e.text), ['before', 'after'],
      'the frame sent while the client was counted gone never reaches it');
    assert.deepEqual(cEvents.filter((e) => e.type === 'gap'), [], 'and the client is not told (PROTOCOL.md 7.5 has no line for it)');
    assert.ok(back);
  });

  test('a client cut while its host sends more than the relay keeps (256 KiB): told of the gap, then new frames in order', async () => {
    const h = await rawHost(relay);
    later(async () => h.terminate());
    const p = await startProxy(relay.port);
    later(() => p.stop());
    const c = new RelayClient(h.sid, { base: p.ws });
    later(async () => c.close());
    const events = recorder(c);
    const open = opened(c);
    c.connect();
    await open;
    assert.equal(await h.next(), 'connected: 1');
    h.send('1: before');
    await seen(events, 'message', { text: 'before' });
    p.refuse(true);
    p.blackhole();
    const pad = 'x'.repeat(1024);
    for (let i = 0; i < 400; i++) h.send(`1: big${i} ${pad}`);
    // Barrier: the relay handles a host's frames in order.
    h.send('/version');
    await h.until(/^!version /);
    p.refuse(false);
    const gap = await seen(events, 'gap');
    h.send('1: after');
    await seen(events, 'message', { text: 'after' });
    // Frame 1 was "before", frame i + 2 big<i>. The window (256 KiB) lost the
    // oldest, so every frame after what the client had counts as lost (7.5:
    // a = have + 1, b = the last number used), and new frames follow.
    assert.deepEqual(gap, { type: 'gap', dir: 'in', from: 2, to: 401, lost: 400, why: gap.why });
    assert.deepEqual(events.filter((e) => e.type === 'message').map((e) => e.text), ['before', 'after']);
    assert.ok(events.indexOf(gap) < events.findIndex((e) => e.type === 'message' && e.text === 'after'), 'the gap event comes first');
    assert.equal(c.counters.lost, 400);
    assert.equal(c.counters.have, 402);
  });

  test('drop() with resume: a host and a client switch sockets; nothing is lost or doubled, and the host hears nothing of the client\'s switch', async () => {
    const h = new RelayHost({ base: relay.ws });
    later(async () => h.close());
    const hEvents = recorder(h);
    const hOpen = opened(h);
    h.connect();
    await hOpen;
    const c = new RelayClient(h.sid, { base: relay.ws });
    later(async () => c.close());
    const cEvents = recorder(c);
    const cOpen = opened(c);
    c.connect();
    await cOpen;
    const { client: id } = await seen(hEvents, 'connected');
    for (let i = 0; i < 30; i++) { h.send(id, `h${i}`); c.send(`c${i}`); }
    assert.equal(c.drop(), true);
    assert.equal(h.drop(), true);
    for (let i = 30; i < 60; i++) { h.send(id, `h${i}`); c.send(`c${i}`); }
    await seen(cEvents, 'message', { text: 'h59' });
    await seen(hEvents, 'message', { text: 'c59' });
    const seq = (n, p) => Array.from({ length: n }, (_, i) => `${p}${i}`);
    assert.deepEqual(cEvents.filter((e) => e.type === 'message').map((e) => e.text), seq(60, 'h'));
    assert.deepEqual(hEvents.filter((e) => e.type === 'message').map((e) => e.text), seq(60, 'c'));
    assert.deepEqual(hEvents.filter((e) => e.type === 'connected' || e.type === 'disconnected').map((e) => `${e.type} ${e.client}`), [`connected ${id}`],
      'no disconnected/connected for the client\'s switch, and no listing again for the host\'s');
    assert.equal(hEvents.filter((e) => e.type === 'session').at(-1).resuming, true);
    assert.deepEqual([...h.clients], [id]);
  });
});

// ---- a restart of the relay ------------------------------------------------

describe('across a restart of wrangler dev', () => {
  const cleanups = [];
  const later = (fn) => cleanups.push(fn);
  after(async () => { for (const c of cleanups.reverse()) await c().catch(() => {}); });

  // A restart resets every object: what a stream held in memory since it was
  // last stored (at most a second) is gone. The relay then says so (7.5):
  // `␁gap` for its frames, `␁resume <m> reset` for the socket's, which it
  // may handle twice. So here a stream may jump at an announced gap, and may
  // repeat frames only if its sender was told `reset`; nothing else.
  test('Node: a host and two clients at 60 Hz both ways; the relay stopped and started again on its stored state', async (t) => {
    const persistTo = mkdtempSync(path.join(tmpdir(), 'relay-state-'));
    later(async () => rmSync(persistTo, { recursive: true, force: true }));
    const port = await freePort();
    let relay = await startRelay({ vars: SCENARIO_VARS, persistTo, port });
    later(() => relay.stop());
    const T = await nodeTraffic();
    later(() => T.close());
    await setUpTraffic(T, port, { clients: 2, later });
    const names = ['host', 'c1', 'c2'];
    const before = {};
    for (const n of names) before[n] = (await T.call('peer', n)).resumed.length;
    await relay.stop();
    relay = await startRelay({ vars: SCENARIO_VARS, persistTo, port });
    for (const n of names) await T.until('resumedAtLeast', [n, before[n] + 1], { what: `${n} resumed after the restart` });
    await T.until('flowing', [await T.call('streams'), 30], { what: 'traffic flowing after the restart' });
    const peers = {};
    for (const n of names) peers[n] = await T.call('peer', n);
    const reset = names.filter((n) => peers[n].resumed.slice(before[n]).some((r) => r.reset));
    t.diagnostic(`resumes after the restart: ${JSON.stringify(names.map((n) => [n, peers[n].resumed.slice(before[n])]))}`);
    const streams = await finishTraffic(T, { doublesFrom: reset });
    for (const n of names) {
      assert.equal(peers[n].extension, 0, `${n}: no extension line reached the app`);
      assert.deepEqual(peers[n].errors, [], `${n}: no send failed`);
      assert.deepEqual(peers[n].protocol, [], `${n}: no protocol error`);
    }
    t.diagnostic(`told reset: ${JSON.stringify(reset)}; gaps: ${JSON.stringify(names.map((n) => [n, peers[n].gaps]))}`);
    t.diagnostic(`streams: ${JSON.stringify(streams)}`);
  });
});

// ---- the relay's side of section 7, with raw sockets ------------------------

describe('the relay speaks section 7 as written (raw sockets)', { concurrency: true }, () => {
  let relay;
  before(async () => { relay = await startRelay(); });
  after(async () => relay?.stop());
  const peer = async (path) => { const p = new Peer(`${relay.ws}${path}`); await p.opened; return p; };
  const refusal = async (path) => {
    const p = new Peer(`${relay.ws}${path}`);
    try { await p.opened; } catch (e) { return { status: e.status, body: e.body }; }
    p.terminate();
    return { accepted: true };
  };

  test('7.1: ␁ping is answered ␁pong on any socket, uncounted; the game sees nothing of it', async () => {
    const h = await rawHost(relay);
    const c = await peer(`/session/${h.sid}`);
    assert.equal(await h.next(), 'connected: 1');
    c.send(`${EXT}ping`);
    assert.equal(await c.next(), `${EXT}pong`);
    h.send(`${EXT}ping`);
    assert.equal(await h.next(), `${EXT}pong`);
    c.send('after');
    assert.equal(await h.next(), '1: after', 'the host heard nothing of the ping');
    h.terminate(); c.terminate();
  });

  test('7.2: resume=1 without client= is 400; have must be a decimal number', async () => {
    const h = await rawHost(relay);
    assert.deepEqual(await refusal(`/session/${h.sid}?resume=1`), { status: 400, body: 'Invalid parameter resume: needs client=<uuid>' });
    assert.deepEqual(await refusal(`/session/${h.sid}?client=u1&resume=1&have=x`), { status: 400, body: 'Invalid parameter have: must be a decimal number' });
    assert.deepEqual(await refusal(`/session?resume=1&have=-1`), { status: 400, body: 'Invalid parameter have: must be a decimal number' });
    h.terminate();
  });

  test('7.3–7.5: a client\'s stream is numbered across connections; ␁ack is answered; a resume replays after have, and resent frames are taken once', async () => {
    const h = await rawHost(relay);
    const c = await peer(`/session/${h.sid}?client=u7&resume=1`);
    assert.equal(await c.next(), `${EXT}resume 0`);
    assert.equal(await h.next(), 'connected: 1');
    for (const m of ['a', 'b', 'c']) h.send(`1: ${m}`);
    assert.deepEqual(await c.take(3), ['a', 'b', 'c']);
    c.send('x1'); c.send('x2');
    assert.deepEqual(await h.take(2), ['1: x1', '1: x2']);
    // The relay acknowledges what it has handled and stored (7.4: at most a
    // second later): asked again about once a second, as a socket does, the
    // answer reaches 2 and never names a frame it was not sent.
    for (;;) {
      c.send(`${EXT}ack 1`);
      const answer = await c.next();
      assert.match(answer, /^\u0001ack [012]$/);
      if (answer === `${EXT}ack 2`) break;
      await sleep(250);
    }
    // A new socket that had only frame 1 and says so: frames 2 and 3 again, as they were.
    const c2 = await peer(`/session/${h.sid}?client=u7&resume=1&have=1`);
    assert.equal(await c2.next(), `${EXT}resume 2`);
    assert.deepEqual(await c2.take(2), ['b', 'c']);
    assert.deepEqual(await c.closed(), { code: 4002, reason: 'replaced' });
    // Its own frames after 2 are new to the relay: x3 once.
    c2.send('x3');
    h.send('1: d');
    assert.equal(await c2.next(), 'd');
    assert.deepEqual(await barrier(h), ['1: x3'], 'to the host the client never left: no disconnected:/connected:');
    h.terminate(); c2.terminate();
  });

  // A new object taking over a session (or a page reloaded with its stored
  // uuid) resumes with have=0; the frames it lacks were acknowledged by the
  // socket before, so the relay no longer has them: 7.5 step 3 says ␁gap 1 b
  // and the view afresh.
  test('7.5: a socket with less than was acknowledged (a new object, have=0) gets ␁gap and the view afresh', async () => {
    const h = await peer('/session?resume=1');
    const [sessionLine, secretLine] = await h.take(3);
    const sid = sessionLine.slice('session: '.length);
    const secret = secretLine.slice('secret: '.length);
    const c = await peer(`/session/${sid}?client=g1`);
    assert.equal(await h.next(), 'connected: 1'); // frame 1
    c.send('one'); // frame 2
    assert.equal(await h.next(), '1: one');
    h.send(`${EXT}ack 2`);
    assert.equal(await h.next(), `${EXT}ack 0`);
    const h2 = await peer(`/session?id=${sid}&secret=${secret}&resume=1`);
    assert.deepEqual(await h2.take(3), [`session: ${sid}`, `secret: ${secret}`, `${EXT}resume 0`]);
    c.send('two');
    // Barrier: the relay answers /version after everything it sent h2 before.
    // Today it sends only ['1: two'] here, which h2 numbers 1 (it is frame 3).
    assert.deepEqual(await barrier(h2), [`${EXT}gap 1 2`, 'connected: 1', '1: two']);
    h2.terminate(); c.terminate(); h.terminate();
  });

  test('7.5: a host resume is a take-over that continues the stream (no listing again), the old socket gets 4001', async () => {
    const h = await peer('/session?resume=1');
    const [sessionLine, secretLine, resume] = await h.take(3);
    const sid = sessionLine.slice('session: '.length);
    const secret = secretLine.slice('secret: '.length);
    assert.equal(resume, `${EXT}resume 0`);
    const c = await peer(`/session/${sid}?client=k1`);
    assert.equal(await h.next(), 'connected: 1'); // frame 1
    c.send('one'); // frame 2
    assert.equal(await h.next(), '1: one');
    const h2 = await peer(`/session?id=${sid}&secret=${secret}&resume=1&have=1`);
    assert.deepEqual(await h2.take(4), [`session: ${sid}`, `secret: ${secret}`, `${EXT}resume 0`, '1: one']);
    assert.deepEqual(await h.closed(), { code: 4001, reason: 'taken over' });
    c.send('two');
    assert.equal(await h2.next(), '1: two');
    h2.terminate(); c.terminate();
  });
});

// 7.1: the runtime answers `␁ping` without waking the session's object, so a
// room that only sends heartbeats costs nothing. Idle rooms, each a library
// host and two library clients (heartbeats every 3 s, the default), are left
// for three eviction delays. Had a heartbeat woken an object, it would be
// constructed again during the idle time, or never evicted: either way the
// count below would differ from one construction per room.
describe('heartbeats while a room is idle', () => {
  const ROOMS = 4;
  const IDLE_MS = 30_000; // about three times workerd's eviction delay
  let relay;
  const cleanups = [];
  after(async () => {
    for (const c of cleanups.reverse()) await c().catch(() => {});
    await relay?.stop();
  });

  test('wake no object: no construction while idle, then one per room at its next frame', async (t) => {
    relay = await startRelay({ vars: { LOG_LIFECYCLE: 'true' } });
    const LIFECYCLE = /lifecycle: session object constructed/;
    const sent = [];
    const WebSocket = spyingWebSocket(sent);
    const rooms = [];
    for (let r = 0; r < ROOMS; r++) {
      const h = new RelayHost({ base: relay.ws, WebSocket });
      cleanups.push(async () => h.close());
      const session = next(h, 'session');
      h.connect();
      const { sid } = await session;
      const clients = [];
      for (let i = 0; i < 2; i++) {
        const c = new RelayClient(sid, { base: relay.ws, WebSocket });
        cleanups.push(async () => c.close());
        const heard = next(h, 'connected');
        c.connect();
        clients.push({ c, id: (await heard).client });
      }
      rooms.push({ h, clients });
    }
    // Every stream stored (at most a second after the last frame), then idle.
    const before = relay.count(LIFECYCLE);
    const pings = () => sent.filter((x) => x === `${EXT}ping`).length;
    const pingsBefore = pings();
    await sleep(IDLE_MS); // the idle time is the scenario, not a wait for an event
    const idlePings = pings() - pingsBefore;
    assert.ok(idlePings >= ROOMS * 3 * (IDLE_MS / 3_000 - 2), `the library sent heartbeats while idle (${idlePings})`);
    assert.equal(relay.count(LIFECYCLE), before, 'no object was constructed while only heartbeats came');
    // Barrier: a frame to each room wakes its object, constructed afresh.
    for (const { h, clients } of rooms) {
      const got = next(clients[0].c, 'message');
      h.send(clients[0].id, 'wake up');
      assert.equal((await got).text, 'wake up');
    }
    await relay.waitForOutput(LIFECYCLE, before + ROOMS);
    assert.equal(relay.count(LIFECYCLE), before + ROOMS, 'each room\'s object had been evicted, and came back once');
    t.diagnostic(`${idlePings} heartbeats over ${ROOMS} rooms × ${IDLE_MS / 1000} s idle: 0 object wake-ups (0 per idle session-hour)`);
  });
});
