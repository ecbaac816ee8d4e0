// Abuse limits: the per-socket rate limit and the cap on searches the
// Matchmaker holds. Low limits here so they are reached quickly.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startRelay, host, join, sleep } from './helpers/relay.js';

const RATE = 10;
const BURST = 50;
let relay;
before(async () => {
  relay = await startRelay({ vars: { RATE_LIMIT_PER_SECOND: String(RATE), RATE_LIMIT_BURST: String(BURST), MAX_SEARCHES: '2' } });
});
after(async () => relay?.stop());

test('a client over the rate limit is closed with 1008; the host gets its burst in order and no more than the bucket allows; the others carry on', async () => {
  const h = await host(relay);
  const abuser = await join(relay, h);
  const polite = await join(relay, h);
  // 100 frames every 10 ms (100 times the limit) until the close frame
  // arrives, however long that takes on this machine: the limit is crossed
  // by what is sent, not by when.
  const started = performance.now();
  let sent = 0;
  while (!abuser.closeInfo) {
    for (let i = 0; i < 100; i++) abuser.send(`spam ${sent++}`);
    await sleep(10);
  }
  const seconds = (performance.now() - started) / 1000;
  assert.deepEqual(await abuser.closed(), { code: 1008, reason: 'rate limit exceeded' });
  // The burst got through, in order, then the host heard the abuser leave.
  const frames = await h.until(`disconnected: ${abuser.id}`);
  frames.forEach((f, i) => assert.equal(f, `${abuser.id}: spam ${i}`));
  const allowed = BURST + RATE * seconds;
  assert.ok(frames.length >= BURST && frames.length <= allowed,
    `${frames.length} frames got through: at least the burst (${BURST}), at most ${allowed.toFixed(0)} (the burst and ${seconds.toFixed(2)} s of refill)`);
  assert.ok(frames.length < sent, `${sent} sent, all got through`);
  polite.send('hello');
  assert.equal(await h.next(), `${polite.id}: hello`);
  h.close();
});

test('the Matchmaker holds at most MAX_SEARCHES searches; one more is refused with invalid', async () => {
  const a = await host(relay, 'reconnect=false');
  const b = await host(relay, 'reconnect=false');
  const c = await host(relay, 'reconnect=false');
  a.send('/join-session master ghostMode=true');
  b.send('/join-session master');
  for (const h of [a, b]) { h.send('/stats'); await h.until(/^!stats /); }
  c.send('/join-session master');
  assert.equal(await c.next(), 'invalid');
  // Refused means not searching: c admits clients again.
  const admitted = await join(relay, c);
  assert.equal(admitted.id, 1);
  for (const h of [a, b, c]) h.close();
});
