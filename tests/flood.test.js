// A flood that outlasts the rate limit (issue 12, item 3), against the real
// runtime with the default limits (RATE_LIMIT_PER_SECOND=200 and
// RATE_LIMIT_BURST=500 per client socket; a host: 8 x the rate, 2 x the burst).
//
// A client (then a host) sends FLOOD_FRAMES frames as fast as `ws` allows,
// while a neighbour in the same session and a client of another session do
// paced round trips through their hosts. The flooder must be closed with 1008
// `rate limit exceeded`; its host (or its client) must get no more of its
// frames than the bucket allows, none after it was closed, and the neighbours'
// round trips must keep working. Latency, time to the close and workerd's
// memory are measured and reported as diagnostics, never asserted.
import { test, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { randomBytes } from 'node:crypto';
import { startRelay, host, join } from './helpers/relay.js';
import { workerdPids, sampleRss, percentile } from './helpers/proc.js';

const FLOOD_FRAMES = Number(process.env.FLOOD_FRAMES ?? 50_000);
const RATE = 200;
const BURST = 500;
const MAX_CLIENTS = 8;
// Paced well inside a client's own limit (200/s).
const PING_EVERY_MS = 20;

// A relay per test, so each test's memory figures start from a fresh workerd.
let relay;
const open = [];

beforeEach(async () => {
  relay = await startRelay();
});
afterEach(async () => {
  for (const p of open.splice(0)) p.terminate();
  await relay?.stop();
});

function track(...peers) {
  open.push(...peers);
  return peers;
}

/**
 * Turns a host into an echo: `<n>: <msg>` from a client goes back as
 * `<n>: <msg>`, except from `quiet` ids, whose frames are only recorded.
 * Every frame is recorded in `h.log` with its arrival time.
 */
function echo(h, quiet = new Set()) {
  h.log = [];
  h.waiters = [];
  h.socket.removeAllListeners('message');
  h.socket.on('message', (data) => {
    const line = data.toString();
    h.log.push({ line, at: performance.now() });
    const m = /^(\d+): /.exec(line);
    if (m && !quiet.has(Number(m[1]))) h.send(line);
    h.waiters = h.waiters.filter((w) => !w(line));
  });
  /** Resolves at the first frame (from now on) equal to (or matching) `line`. */
  h.await = (line, timeoutMs = 30_000) => new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`host never got ${line}`)), timeoutMs);
    const hit = (l) => (line instanceof RegExp ? line.test(l) : l === line);
    h.waiters.push((l) => { if (!hit(l)) return false; clearTimeout(timer); resolve(performance.now()); return true; });
  });
  return h;
}

/** Paced round trips from `c` through its echoing host until `done()`; returns the times in ms. */
async function pinger(c, done, label, atLeast = 5) {
  const rtts = [];
  for (let i = 0; !done() || rtts.length < atLeast; i++) {
    const t = performance.now();
    c.send(`${label} ${i}`);
    assert.equal(await c.next(30_000), `${label} ${i}`);
    const rtt = performance.now() - t;
    rtts.push(rtt);
    await new Promise((r) => setTimeout(r, Math.max(0, PING_EVERY_MS - rtt)));
  }
  return rtts;
}

function summary(rtts) {
  const f = (x) => x.toFixed(1);
  return `n=${rtts.length} p50=${f(percentile(rtts, 50))} p99=${f(percentile(rtts, 99))} max=${f(Math.max(...rtts))} ms`;
}

/** The TCP connection of a ws socket is gone (all it queued was read or dropped). */
function tcpClosed(peer) {
  return new Promise((resolve) => {
    if (peer.socket.readyState === 3) return resolve(performance.now());
    peer.socket.once('close', () => resolve(performance.now()));
  });
}

const mib = (kib) => (kib / 1024).toFixed(1);

test('a flooding client is cut off at its bucket; its host gets none of the rest; neighbours keep their round trips', async (t) => {
  const ha = await host(relay, 'reconnect=false');
  const neighbour = await join(relay, ha);
  const flooder = await join(relay, ha);
  const hb = await host(relay, 'reconnect=false');
  const other = await join(relay, hb);
  track(ha, neighbour, flooder, hb, other);
  echo(ha, new Set([flooder.id]));
  echo(hb);

  const rss = sampleRss(workerdPids(relay.child.pid));
  let over = false;
  const pings = Promise.all([pinger(neighbour, () => over, 'n'), pinger(other, () => over, 'o')]);
  // Let both pingers run a little before the flood.
  await ha.await(`${neighbour.id}: n 3`);

  const started = performance.now();
  const disconnected = ha.await(`disconnected: ${flooder.id}`);
  for (let i = 0; i < FLOOD_FRAMES; i++) flooder.send(`f${i}`);
  const queuedMs = performance.now() - started;
  const close = await flooder.closed(30_000);
  const closeMs = performance.now() - started;
  assert.deepEqual(close, { code: 1008, reason: 'rate limit exceeded' });
  const disconnectedMs = (await disconnected) - started;
  const drainedMs = (await tcpClosed(flooder)) - started;
  over = true;
  const [nRtts, oRtts] = await pings;
  // Barrier: the host's command is answered after everything before it.
  const version = ha.await(/^!version /);
  ha.send('/version');
  await version;
  const memory = rss.stop();

  const prefix = `${flooder.id}: `;
  const got = ha.log.filter((e) => e.line.startsWith(prefix)).map((e) => e.line.slice(prefix.length));
  got.forEach((f, i) => assert.equal(f, `f${i}`, 'the flooder\'s frames that got through are its first, in order'));
  const cutAt = ha.log.findIndex((e) => e.line === `disconnected: ${flooder.id}`);
  assert.ok(!ha.log.slice(cutAt).some((e) => e.line.startsWith(prefix)), 'no flooder frame after it was closed');
  const allowed = BURST + RATE * (closeMs / 1000);
  assert.ok(got.length <= allowed, `${got.length} flooder frames reached the host; at most ${allowed.toFixed(0)} allowed`);
  assert.ok(got.length >= BURST / 2, `the burst got through (${got.length})`);

  t.diagnostic(`client flood of ${FLOOD_FRAMES} frames: queued by ws in ${queuedMs.toFixed(0)} ms; ` +
    `1008 frame after ${closeMs.toFixed(0)} ms, host heard disconnected after ${disconnectedMs.toFixed(0)} ms, ` +
    `flooder's TCP closed after ${drainedMs.toFixed(0)} ms; ${got.length} flooder frames relayed (allowed ${allowed.toFixed(0)})`);
  t.diagnostic(`neighbour (same session) round trips: ${summary(nRtts)}`);
  t.diagnostic(`other session's round trips: ${summary(oRtts)}`);
  t.diagnostic(`workerd RSS: ${mib(memory.baseline)} MiB before, peak ${mib(memory.peak)} MiB (+${mib(memory.peak - memory.baseline)}), ${mib(memory.last)} MiB after`);
  for (const p of [ha, hb, neighbour, other]) p.close();
});

test('a flooding host is cut off at its bucket (x MAX_CLIENTS); its client gets none of the rest; another session keeps its round trips', async (t) => {
  const hf = await host(relay);
  const player = await join(relay, hf);
  const hb = await host(relay, 'reconnect=false');
  const other = await join(relay, hb);
  track(hf, player, hb, other);
  echo(hb);

  const rss = sampleRss(workerdPids(relay.child.pid));
  let over = false;
  const pings = pinger(other, () => over, 'o');
  await hb.await(`${other.id}: o 3`);

  // The player records what it gets, with times.
  const got = [];
  player.socket.removeAllListeners('message');
  let afterSeen;
  const after = new Promise((resolve) => { afterSeen = resolve; });
  player.socket.on('message', (data) => {
    const line = data.toString();
    if (line === 'after') afterSeen(performance.now()); else got.push(line);
  });

  const started = performance.now();
  for (let i = 0; i < FLOOD_FRAMES; i++) hf.send(`${player.id}: h${i}`);
  const queuedMs = performance.now() - started;
  assert.deepEqual(await hf.closed(30_000), { code: 1008, reason: 'rate limit exceeded' });
  const closeMs = performance.now() - started;
  const drainedMs = (await tcpClosed(hf)) - started;
  // Barrier: the host takes over and speaks; the player hears it after
  // whatever got through from the flood, and nothing of the flood after it.
  const again = await host(relay, `id=${hf.sid}&secret=${hf.secret}`);
  track(again);
  assert.equal(await again.next(), `connected: ${player.id}`);
  again.send(`${player.id}: after`);
  await after;
  over = true;
  const oRtts = await pings;
  const memory = rss.stop();

  got.forEach((f, i) => assert.equal(f, `h${i}`, 'what got through is the start of the flood, in order'));
  const allowed = 2 * BURST + MAX_CLIENTS * RATE * (closeMs / 1000);
  assert.ok(got.length <= allowed, `${got.length} flood frames reached the player; at most ${allowed.toFixed(0)} allowed`);
  assert.ok(got.length >= BURST, `the burst got through (${got.length})`);

  t.diagnostic(`host flood of ${FLOOD_FRAMES} frames: queued by ws in ${queuedMs.toFixed(0)} ms; ` +
    `1008 frame after ${closeMs.toFixed(0)} ms, host's TCP closed after ${drainedMs.toFixed(0)} ms; ` +
    `${got.length} flood frames relayed (allowed ${allowed.toFixed(0)})`);
  t.diagnostic(`other session's round trips: ${summary(oRtts)}`);
  t.diagnostic(`workerd RSS: ${mib(memory.baseline)} MiB before, peak ${mib(memory.peak)} MiB (+${mib(memory.peak - memory.baseline)}), ${mib(memory.last)} MiB after`);
  for (const p of [again, hb, other]) p.close();
});

// Issue 12, item 2: what a client that does not read costs. The Workers
// runtime gives a Durable Object no view of a socket's unsent backlog (no
// `bufferedAmount`; `send()` never blocks or fails for a slow peer): what the
// relay sends is queued in workerd's memory until the peer reads it. This
// measures that cost; it asserts only that nothing is lost and the session's
// other sockets keep working.
// Within a host's byte burst (MAX_CLIENTS x RATE_LIMIT_BYTES_BURST = 32 MiB).
const SLOW_MB = Number(process.env.SLOW_MB ?? 24);
const SLOW_KIB = Number(process.env.SLOW_KIB ?? 64);

test('a client that does not read: the relay keeps serving the others, and everything arrives once it reads', async (t) => {
  const h = await host(relay, 'reconnect=false');
  const slow = await join(relay, h);
  const neighbour = await join(relay, h);
  track(h, slow, neighbour);
  // Incompressible, so permessage-deflate (which ws and workerd negotiate)
  // does not shrink the backlog to nothing on the wire.
  const chunkBytes = SLOW_KIB * 1024 - 16;
  const chunk = () => randomBytes((chunkBytes * 3) / 4).toString('base64');
  const messages = Math.ceil((SLOW_MB * 1024) / SLOW_KIB);

  let received = 0;
  let bytes = 0;
  let allIn;
  const all = new Promise((resolve) => { allIn = resolve; });
  slow.socket.removeAllListeners('message');
  slow.socket.on('message', (data) => {
    bytes += data.length;
    if (++received === messages) allIn(performance.now());
  });
  slow.socket._socket.pause();

  const rss = sampleRss(workerdPids(relay.child.pid));
  const started = performance.now();
  // Within the host's bursts (2 x RATE_LIMIT_BURST frames and
  // MAX_CLIENTS x RATE_LIMIT_BYTES_BURST bytes).
  for (let i = 0; i < messages; i++) h.send(`${slow.id}: ${String(i).padStart(8, '0')}${chunk()}`);
  // Barrier: the relay has handled (and sent) every message before this.
  h.send('/version');
  await h.until(/^!version /, 60_000);
  const handledMs = performance.now() - started;
  const backlog = rss.stop();

  echo(h);
  // The slow socket's backlog is still unread here.
  const rtts = await pinger(neighbour, () => true, 'n', 25);

  const draining = sampleRss(workerdPids(relay.child.pid));
  const resumed = performance.now();
  slow.socket._socket.resume();
  const doneAt = await all;
  const drained = draining.stop();
  assert.equal(received, messages);
  assert.equal(bytes, messages * (chunkBytes + 8));

  const mb = (messages * SLOW_KIB) / 1024;
  t.diagnostic(`${messages} messages of ${SLOW_KIB} KiB (${mb.toFixed(0)} MiB) to a paused client: handled by the relay in ${handledMs.toFixed(0)} ms; ` +
    `workerd RSS ${mib(backlog.baseline)} -> peak ${mib(backlog.peak)} MiB (+${mib(backlog.peak - backlog.baseline)}) while unread`);
  t.diagnostic(`neighbour round trips meanwhile: ${summary(rtts)}`);
  t.diagnostic(`after resume: all read in ${(doneAt - resumed).toFixed(0)} ms; workerd RSS ${mib(drained.last)} MiB`);
  h.close();
});

// What a host can pile up in front of a client that does not read is bounded
// by the byte rate limit: past its burst (32 MiB for a host by default) and
// rate (8 MiB/s), the host is closed with 1008 like any flood.
test('a host streaming past its byte limit to a paused client is closed with 1008; the backlog stays bounded', async (t) => {
  const h = await host(relay, 'reconnect=false');
  const slow = await join(relay, h);
  track(h, slow);
  let bytes = 0;
  slow.socket.removeAllListeners('message');
  slow.socket.on('message', (data) => { bytes += data.length; });
  slow.socket._socket.pause();
  const chunk = randomBytes(48 * 1024).toString('base64'); // 64 KiB of text
  const started = performance.now();
  let sent = 0;
  for (let i = 0; i < 1024; i++) { h.send(`${slow.id}: ${chunk}`); sent += chunk.length; }
  assert.deepEqual(await h.closed(60_000), { code: 1008, reason: 'rate limit exceeded' });
  const elapsedS = (performance.now() - started) / 1000;
  slow.socket._socket.resume();
  await slow.closed(60_000); // the session ends (reconnect=false) after the backlog
  const MiB = 1024 * 1024;
  const bound = 32 * MiB + 8 * MiB * elapsedS + chunk.length;
  assert.ok(bytes <= bound, `${(bytes / MiB).toFixed(1)} MiB reached the paused client, bound ${(bound / MiB).toFixed(1)} MiB`);
  assert.ok(bytes < sent, 'the host was cut off before all it sent was relayed');
  t.diagnostic(`${(sent / MiB).toFixed(0)} MiB sent in ${elapsedS.toFixed(2)} s; ${(bytes / MiB).toFixed(1)} MiB relayed before the 1008`);
});
