// PROTOCOL.md sections 1–3, 5 and 6 against the real runtime: the built worker
// under `wrangler dev`, driven by real WebSocket clients on loopback.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startRelay, host, client, join, get, refused, barrier, Peer, VERSION } from './helpers/relay.js';

const RECONNECT_SECONDS = 4;
let relay;

before(async () => {
  relay = await startRelay({ vars: { KEEP_ALIVE_SECONDS: '1', RECONNECT_SECONDS: String(RECONNECT_SECONDS), MAX_CLIENTS: '3' } });
});
after(async () => relay?.stop());

/** Asserts the host's next frame is the answer to `/version`, i.e. nothing came before it. */
async function nothingPending(peer) {
  peer.send('/version');
  assert.equal(await peer.next(), `!version ${VERSION}`);
}

test('host gets session then secret; ids are v4 UUIDs, secrets 256-bit hex', async () => {
  const h = await host(relay);
  assert.match(h.sessionLine, /^session: [0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  assert.match(h.secretLine, /^secret: [0-9a-f]{64}$/);
  const h2 = await host(relay);
  assert.notEqual(h.sid, h2.sid);
  assert.notEqual(h.secret, h2.secret);
  h.close(); h2.close();
});

test('a chosen id is kept', async () => {
  const h = await host(relay, 'id=chosen-id_1.x');
  assert.equal(h.sessionLine, 'session: chosen-id_1.x');
  h.close();
});

test('relay both ways, multi-line, byte for byte', async () => {
  const h = await host(relay);
  const c = await join(relay, h);
  assert.equal(c.id, 1);
  c.send('hello\nsecond line: with colon');
  assert.equal(await h.next(), '1: hello\nsecond line: with colon');
  h.send('1: back\r\nto you: ü ✓');
  assert.equal(await c.next(), 'back\r\nto you: ü ✓');
  h.send('1: ');
  assert.equal(await c.next(), '');
  c.send('');
  assert.equal(await h.next(), '1: ');
  h.close();
});

test('unknown client and invalid frames', async () => {
  const h = await host(relay);
  h.send('5: x');
  assert.equal(await h.next(), 'unknown: 5');
  for (const bad of ['hello', '5:x', '-1: x', '/nonsense', '', '1 : x', '/join-session master slave']) {
    h.send(bad);
    assert.equal(await h.next(), 'invalid', JSON.stringify(bad));
  }
  // `0:` without a link does nothing at all.
  h.send('0: anyone?');
  await nothingPending(h);
  h.close();
});

test('/version answers the Cargo.toml version', async () => {
  const h = await host(relay);
  h.send('/version');
  assert.equal(await h.next(), `!version ${VERSION}`);
  h.close();
});

test('clients get the smallest free id; disconnects are announced', async () => {
  const h = await host(relay);
  const c1 = await join(relay, h);
  const c2 = await join(relay, h);
  assert.deepEqual([c1.id, c2.id], [1, 2]);
  c1.close();
  assert.equal(await h.next(), 'disconnected: 1');
  const c3 = await join(relay, h);
  assert.equal(c3.id, 1);
  h.close();
});

test('a client uuid keeps its id, keeps it from others, and replaces its older socket', async () => {
  const h = await host(relay);
  const a = await join(relay, h, 'client=player-a');
  assert.equal(a.id, 1);
  a.close();
  assert.equal(await h.next(), 'disconnected: 1');
  const other = await join(relay, h);
  assert.equal(other.id, 2, 'id 1 stays reserved for player-a');
  const back = await join(relay, h, 'client=player-a');
  assert.equal(back.id, 1);
  // Same uuid while still connected: the older socket is replaced.
  const again = await client(relay, h.sid, 'client=player-a');
  assert.deepEqual(await back.closed(), { code: 4002, reason: 'replaced' });
  assert.deepEqual(await h.take(2), ['disconnected: 1', 'connected: 1']);
  again.send('still me');
  assert.equal(await h.next(), '1: still me');
  await nothingPending(h);
  h.close();
});

test('a full session refuses the client with an error and 4003; the host hears nothing', async () => {
  const h = await host(relay);
  const clients = [];
  for (let i = 0; i < 3; i++) clients.push(await join(relay, h));
  const extra = await client(relay, h.sid);
  assert.equal(await extra.next(), 'error: no slots available, max clients reached');
  assert.deepEqual(await extra.closed(), { code: 4003, reason: 'session full' });
  await nothingPending(h);
  h.close();
});

test('binary frames close the sender with 1003; the others carry on', async () => {
  const h = await host(relay);
  const bad = await join(relay, h);
  const good = await join(relay, h);
  bad.send(Buffer.from([1, 2, 3]));
  assert.equal((await bad.closed()).code, 1003);
  assert.equal(await h.next(), `disconnected: ${bad.id}`);
  good.send('fine');
  assert.equal(await h.next(), `${good.id}: fine`);
  h.close();
});

test('a binary frame from the host closes the host with 1003, not the clients', async () => {
  const h = await host(relay);
  const c = await join(relay, h);
  h.send(Buffer.from([0]));
  assert.equal((await h.closed()).code, 1003);
  const back = await host(relay, `id=${h.sid}&secret=${h.secret}`);
  assert.equal(await back.next(), 'connected: 1');
  c.send('still here');
  assert.equal(await back.next(), '1: still here');
  back.close();
});

test('frames over 1 MiB close the sender with 1009; exactly 1 MiB passes', async () => {
  const h = await host(relay);
  const c = await join(relay, h);
  const big = 'x'.repeat(1024 * 1024);
  c.send(big);
  assert.equal(await h.next(), `${c.id}: ${big}`);
  c.send(big + 'y');
  assert.equal((await c.closed()).code, 1009);
  assert.equal(await h.next(), `disconnected: ${c.id}`);
  h.close();
});

test('HTTP answers: 426, 404, 409, 400', async () => {
  let r = await get(relay, '/session');
  assert.equal(r.status, 426);
  assert.match(r.body, /WebSocket/i);
  r = await get(relay, '/session/some-id');
  assert.equal(r.status, 426);
  assert.deepEqual(await refused(relay, '/session/never-made'), { status: 404, body: 'Session not found' });
  const h = await host(relay);
  assert.deepEqual(await refused(relay, `/session?id=${h.sid}`), { status: 409, body: 'Session already exists' });
  assert.deepEqual(await refused(relay, `/session?id=${h.sid}&secret=wrong`),
    { status: 404, body: 'Could not connect to session (not found or invalid secret)' });
  assert.deepEqual(await refused(relay, `/session?id=no-such-session&secret=${h.secret}`),
    { status: 404, body: 'Could not connect to session (not found or invalid secret)' });
  for (const [path, name] of [
    ['/session?id=', 'id'], [`/session?id=${'a'.repeat(129)}`, 'id'], ['/session?id=a%20b', 'id'],
    ['/session/a%2Fb', 'session id'], [`/session/${'a'.repeat(129)}`, 'session id'],
    [`/session/${h.sid}?client=bad%20uuid`, 'client'], [`/session/${h.sid}?client=`, 'client'],
  ]) {
    const res = await refused(relay, path);
    assert.equal(res.status, 400, path);
    assert.ok(res.body.includes(name), `${path}: ${res.body}`);
  }
  assert.equal((await get(relay, '/nope')).status, 404);
  const post = await fetch(`${relay.url}/session`, { method: 'POST' });
  assert.equal(post.status, 405);
  assert.equal((await get(relay, '/session/x/y')).status, 400);
  // None of this disturbed the session.
  await nothingPending(h);
  h.close();
});

test('take-over: old host closed 4001, same secret, connected replay ascending', async () => {
  const h = await host(relay);
  const c1 = await join(relay, h);
  const c2 = await join(relay, h);
  const c3 = await join(relay, h);
  c2.close();
  assert.equal(await h.next(), 'disconnected: 2');
  const h2 = new Peer(`${relay.ws}/session?id=${h.sid}&secret=${h.secret}`);
  assert.deepEqual(await h2.take(4), [`session: ${h.sid}`, `secret: ${h.secret}`, 'connected: 1', 'connected: 3']);
  assert.deepEqual(await h.closed(), { code: 4001, reason: 'taken over' });
  c3.send('to the new host');
  assert.equal(await h2.next(), '3: to the new host');
  h2.send('1: from the new host');
  assert.equal(await c1.next(), 'from the new host');
  h2.close();
});

test('reconnect window: what clients send while the host is away is queued and replayed to the take-over after its connected: lines', async () => {
  const h = await host(relay);
  const c1 = await join(relay, h, 'client=queued-1');
  const c2 = await join(relay, h, 'client=queued-2');
  h.close();
  await h.closed(); // the relay has handled the host's leaving: the session waits
  c1.send('m1'); c2.send('m2'); c1.send('m3\nmulti');
  // Barrier, per client socket: a frame over the queue's 256 KiB is refused
  // with 1013 "host unavailable", and the relay handles a socket's frames in
  // order, so each client's messages before it were handled with the host
  // away: queued, not relayed live.
  const tooMuch = 'o'.repeat(256 * 1024 + 1);
  c1.send(tooMuch); c2.send(tooMuch);
  assert.deepEqual(await c1.closed(), { code: 1013, reason: 'host unavailable' });
  assert.deepEqual(await c2.closed(), { code: 1013, reason: 'host unavailable' });
  // Both come back with their uuids (so their ids) before the take-over.
  const back1 = await client(relay, h.sid, 'client=queued-1');
  const back2 = await client(relay, h.sid, 'client=queued-2');
  const h2 = new Peer(`${relay.ws}/session?id=${h.sid}&secret=${h.secret}`);
  assert.deepEqual(await h2.take(4), [`session: ${h.sid}`, `secret: ${h.secret}`, 'connected: 1', 'connected: 2']);
  // The replay: each queued message once, each client's in order (frames on
  // two sockets have no order between them; the exact replay order is in the
  // native scenarios), then nothing else (the refused frames were not queued).
  const replayed = await h2.take(3);
  assert.deepEqual([...replayed].sort(), ['1: m1', '1: m3\nmulti', '2: m2']);
  assert.ok(replayed.indexOf('1: m1') < replayed.indexOf('1: m3\nmulti'), replayed.join(' | '));
  await nothingPending(h2);
  back2.send('live again');
  assert.equal(await h2.next(), '2: live again');
  back1.close(); back2.close();
  h2.close();
});

test('the window runs out: clients closed 4004, the id is free again', async () => {
  const h = await host(relay);
  const c = await join(relay, h);
  h.close();
  // However long the window and the alarm after it take: the event is the point.
  assert.deepEqual(await c.closed(Infinity), { code: 4004, reason: 'session closed' });
  assert.deepEqual(await refused(relay, `/session/${h.sid}`), { status: 404, body: 'Session not found' });
  assert.deepEqual(await refused(relay, `/session?id=${h.sid}&secret=${h.secret}`).then((r) => r.status), 404);
  const fresh = await host(relay, `id=${h.sid}`);
  assert.notEqual(fresh.secret, h.secret);
  fresh.close();
});

test('reconnect=false ends the session when the host leaves', async () => {
  const h = await host(relay, 'reconnect=false');
  const c1 = await join(relay, h);
  const c2 = await join(relay, h);
  h.close();
  assert.deepEqual(await c1.closed(), { code: 4004, reason: 'session closed' });
  assert.deepEqual(await c2.closed(), { code: 4004, reason: 'session closed' });
  const again = await host(relay, `id=${h.sid}`);
  assert.equal(again.sessionLine, `session: ${h.sid}`);
  again.close();
});

test('the queue for an absent host holds 256 KiB of messages; past that the sender gets 1013', async () => {
  const h = await host(relay);
  const c = await join(relay, h);
  const other = await join(relay, h);
  h.close();
  await h.closed();
  // Exactly 256 KiB fits; one byte more does not.
  const quarter = 'q'.repeat(64 * 1024);
  for (let i = 0; i < 4; i++) c.send(quarter);
  c.send('x');
  assert.deepEqual(await c.closed(), { code: 1013, reason: 'host unavailable' });
  const h2 = new Peer(`${relay.ws}/session?id=${h.sid}&secret=${h.secret}`);
  const frames = await h2.take(7);
  assert.deepEqual(frames.slice(0, 3), [`session: ${h.sid}`, `secret: ${h.secret}`, `connected: ${other.id}`]);
  assert.deepEqual(frames.slice(3), Array(4).fill(`${c.id}: ${quarter}`));
  await nothingPending(h2);
  h2.close();
});

test('keep-alive text reaches hosts and clients and is never relayed', async () => {
  const h = await host(relay, 'keepAlive=host-ping');
  const c = await join(relay, h, 'keepAlive=client-ping');
  // Again and again (KEEP_ALIVE_SECONDS=1 here), to each socket its own text.
  assert.deepEqual(await c.take(2), ['client-ping', 'client-ping']);
  assert.deepEqual(await h.take(2), ['host-ping', 'host-ping']);
  // Barriers: whatever the relay sent the host before the answer to its
  // /version, and the client before a message from the host, includes any
  // relayed keep-alive of the other side (the client got its own two first).
  const toHost = await barrier(h);
  assert.ok(toHost.every((f) => f === 'host-ping'), `the host got only its own keep-alive: ${toHost.join(' | ')}`);
  h.send(`${c.id}: marker`);
  const toClient = await c.until('marker');
  assert.ok(toClient.every((f) => f === 'client-ping'), `the client got only its own keep-alive: ${toClient.join(' | ')}`);
  h.close();
});

test('a burst as large as the default rate limit allows (500 frames) reaches the host complete and in order', async () => {
  const h = await host(relay);
  const c = await join(relay, h);
  const N = 500;
  for (let i = 0; i < N; i++) c.send(`f${i}`);
  for (let i = 0; i < N; i++) assert.equal(await h.next(), `${c.id}: f${i}`);
  h.close();
});

test('two take-overs at once: exactly one host wins', async () => {
  const h = await host(relay);
  const c = await join(relay, h);
  const url = `${relay.ws}/session?id=${h.sid}&secret=${h.secret}`;
  const [x, y] = [new Peer(url), new Peer(url)];
  for (const p of [x, y]) assert.deepEqual(await p.take(3), [`session: ${h.sid}`, `secret: ${h.secret}`, 'connected: 1']);
  assert.equal((await h.closed()).code, 4001);
  // One of the two was taken over by the other.
  const loser = await Promise.race([x.closed().then(() => x), y.closed().then(() => y)]);
  const winner = loser === x ? y : x;
  assert.deepEqual(loser.closeInfo, { code: 4001, reason: 'taken over' });
  c.send('who hears this?');
  assert.equal(await winner.next(), '1: who hears this?');
  assert.equal(winner.closeInfo, null);
  winner.close();
});
