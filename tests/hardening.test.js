// Abuse limits: the per-socket rate limit and the cap on searches the
// Matchmaker holds. Low limits here so they are reached quickly.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startRelay, host, join } from './helpers/relay.js';

let relay;
before(async () => {
  relay = await startRelay({ vars: { RATE_LIMIT_PER_SECOND: '10', RATE_LIMIT_BURST: '50', MAX_SEARCHES: '2' } });
});
after(async () => relay?.stop());

test('a client over the rate limit is closed with 1008; the others carry on', async () => {
  const h = await host(relay);
  const abuser = await join(relay, h);
  const polite = await join(relay, h);
  for (let i = 0; i < 200; i++) abuser.send(`spam ${i}`);
  assert.deepEqual(await abuser.closed(), { code: 1008, reason: 'rate limit exceeded' });
  // The burst got through, in order, then the host heard the abuser leave.
  const frames = await h.until(`disconnected: ${abuser.id}`);
  assert.ok(frames.length >= 50 && frames.length < 200, `${frames.length} frames got through`);
  frames.forEach((f, i) => assert.equal(f, `${abuser.id}: spam ${i}`));
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
