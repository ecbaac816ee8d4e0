// State survives the runtime dropping the Session object's memory: eviction of
// a hibernated object (workerd evicts one whose sockets are all hibernated
// after ~10 s idle) and a restart of `wrangler dev` on the same --persist-to.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startRelay, host, client, join, sleep, Peer } from './helpers/relay.js';

const CONSTRUCTED = /lifecycle: session object constructed/;
const relays = [];
after(async () => Promise.all(relays.map((r) => r.stop())));

async function relayWith(options) {
  const relay = await startRelay(options);
  relays.push(relay);
  return relay;
}

/**
 * Idles until the runtime has evicted the object, proven by its constructor
 * running again when `poke` next reaches it. Eviction has no event to await:
 * idling is the thing under test, so this waits in idle periods and checks
 * after each one; it fails if the object is never evicted.
 */
async function idleUntilEvicted(relay, poke) {
  const before = relay.count(CONSTRUCTED);
  for (let attempt = 0; attempt < 4; attempt++) {
    await sleep(12_000);
    await poke();
    if (relay.count(CONSTRUCTED) > before) return;
  }
  assert.fail('the runtime never evicted the session object');
}

test('a session works across eviction: ids, uuids, secret, relay', async () => {
  const relay = await relayWith({ vars: { LOG_LIFECYCLE: 'true' } });
  const h = await host(relay);
  const a = await join(relay, h, 'client=alice');
  const b = await join(relay, h);
  a.close();
  assert.equal(await h.next(), 'disconnected: 1');
  let n = 0;
  await idleUntilEvicted(relay, async () => {
    b.send(`ping ${++n}`);
    assert.equal(await h.next(), `2: ping ${n}`);
  });
  // Memory is gone; what it knew must come back from storage and attachments.
  h.send('2: pong');
  assert.equal(await b.next(), 'pong');
  const stranger = await join(relay, h);
  assert.equal(stranger.id, 3, 'id 1 is still kept for alice');
  const back = await join(relay, h, 'client=alice');
  assert.equal(back.id, 1);
  const h2 = new Peer(`${relay.ws}/session?id=${h.sid}&secret=${h.secret}`);
  assert.deepEqual(await h2.take(5), [`session: ${h.sid}`, `secret: ${h.secret}`, 'connected: 1', 'connected: 2', 'connected: 3']);
  assert.equal((await h.closed()).code, 4001);
  h2.close();
});

test('messages queued for an absent host survive eviction, in order', async () => {
  const relay = await relayWith({ vars: { LOG_LIFECYCLE: 'true', RECONNECT_SECONDS: '120' } });
  const h = await host(relay);
  const c = await join(relay, h);
  h.close();
  await h.closed();
  c.send('before eviction');
  let n = 0;
  await idleUntilEvicted(relay, async () => {
    // Each poke is a queued message too, and a new client's connect wakes
    // the object. (The last poke's message may still be on its way when the
    // host takes over: then it arrives live, right after the replay.)
    c.send(`queued ${++n}`);
    const probe = await client(relay, h.sid);
    probe.close();
  });
  const h2 = new Peer(`${relay.ws}/session?id=${h.sid}&secret=${h.secret}`);
  const frames = await h2.take(4 + n);
  assert.deepEqual(frames.slice(0, 3), [`session: ${h.sid}`, `secret: ${h.secret}`, 'connected: 1']);
  assert.deepEqual(frames.slice(3).filter((f) => f.startsWith('1: ')), ['1: before eviction', ...Array.from({ length: n }, (_, i) => `1: queued ${i + 1}`)]);
  h2.close();
});

test('sessions and queued messages survive a restart of wrangler dev (same --persist-to)', async (t) => {
  // State of the test's own, which the first relay's stop() leaves in place.
  const persistTo = mkdtempSync(path.join(tmpdir(), 'relay-state-'));
  let relay = await relayWith({ vars: { RECONNECT_SECONDS: '120' }, persistTo });
  t.after(async () => {
    await relay.stop();
    rmSync(persistTo, { recursive: true, force: true });
  });
  // One session waits for its host with queued messages; one has its host connected.
  const waiting = await host(relay);
  const c1 = await join(relay, waiting, 'client=p1');
  const c2 = await join(relay, waiting, 'client=p2');
  waiting.close();
  await waiting.closed();
  c1.send('m1'); c2.send('m2'); c1.send('m3');
  // Barrier, per client socket: a frame over the queue's 256 KiB is refused
  // with 1013, and the relay handles a socket's frames in order, so the ones
  // before it were queued (and stored) by then. (A new connection would be no
  // barrier: frames on different connections have no order between them.)
  // The clients go; their uuids keep their ids.
  const tooMuch = 'o'.repeat(256 * 1024 + 1);
  c1.send(tooMuch); c2.send(tooMuch);
  assert.deepEqual(await c1.closed(), { code: 1013, reason: 'host unavailable' });
  assert.deepEqual(await c2.closed(), { code: 1013, reason: 'host unavailable' });
  const live = await host(relay);
  await join(relay, live);

  await relay.stop();
  // A new port: the old one may still be held for a moment after the stop.
  relay = await relayWith({ persistTo });

  const back = new Peer(`${relay.ws}/session?id=${waiting.sid}&secret=${waiting.secret}`);
  back.sid = waiting.sid;
  assert.deepEqual(await back.take(2), [`session: ${waiting.sid}`, `secret: ${waiting.secret}`]);
  // Frames on two connections have no order between them; each client's do.
  const replayed = await back.take(3);
  assert.deepEqual([...replayed].sort(), ['1: m1', '1: m3', '2: m2']);
  assert.ok(replayed.indexOf('1: m1') < replayed.indexOf('1: m3'), replayed.join(' | '));
  const p2 = await join(relay, back, 'client=p2');
  assert.equal(p2.id, 2, 'uuids keep their ids across the restart');
  // The host that was connected when the runtime went down can take over.
  const liveBack = new Peer(`${relay.ws}/session?id=${live.sid}&secret=${live.secret}`);
  assert.deepEqual(await liveBack.take(2), [`session: ${live.sid}`, `secret: ${live.secret}`]);
  // ...and nobody else can claim its id meanwhile.
  const stolen = new Peer(`${relay.ws}/session?id=${live.sid}`);
  await assert.rejects(stolen.opened, /409/);
  back.close(); liveBack.close();
});
