// Matchmaking under concurrency (issue 12, item 1), against the real runtime:
// searches that race must still give the master its slaves' ids in the order
// of its `!added-slave:` lines (PROTOCOL.md section 4, "order of joining").
//
// Each round: host M with 1 client, hosts S1..S7 with 1 client each. S1..S4
// search for M by id and wait in the pool; then, in one tick, M starts its own
// search (master private) and S5..S7 search for it as slaves. At M every
// `!added-slave: <sid>` must be followed by `connected: <n>` for that slave's
// one client, n = 2, 3, ..., 8 in announcement order; messages must then flow
// both ways under exactly those ids. RACE_ROUNDS (default 50) fresh rounds.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { parseHostFrame } from '../client/relay-client.js';
import { startRelay, host, join, waitForStats } from './helpers/relay.js';

const ROUNDS = Number(process.env.RACE_ROUNDS ?? 50);
const SLAVES = 7;

let relay;
const open = [];

before(async () => {
  relay = await startRelay({ vars: { MAX_CLIENTS: '8' } });
});
after(async () => {
  for (const p of open.splice(0)) p.terminate();
  await relay?.stop();
});

/** A host (reconnect=false: it ends when closed) with one client. */
async function hostWithClient() {
  const h = await host(relay, 'reconnect=false');
  h.player = await join(relay, h);
  open.push(h, h.player);
  return h;
}

async function round(r) {
  const m = await hostWithClient();
  const slaves = await Promise.all(Array.from({ length: SLAVES }, hostWithClient));
  const index = new Map(slaves.map((s, i) => [s.sid, i]));
  // Nothing left over from the round before.
  await waitForStats(m, (s) => s.numHostsLookingForSession === 0);

  for (const s of slaves.slice(0, 4)) s.send(`/join-session id=${m.sid}`);
  await waitForStats(m, (s) => s.numHostsLookingForSession === 4);

  // The race: all in one tick.
  m.send('/join-session master private');
  for (const s of slaves.slice(4)) s.send(`/join-session slave id=${m.sid}`);

  const lines = await m.take(2 * SLAVES);
  const order = []; // [slave index, id] in announcement order
  for (let i = 0; i < SLAVES; i++) {
    const added = parseHostFrame(lines[2 * i]);
    const connected = parseHostFrame(lines[2 * i + 1]);
    assert.ok(added.kind === 'added-slave' && connected.kind === 'connected' && index.has(added.sid),
      `round ${r}: expected !added-slave + connected pairs at M, got ${JSON.stringify(lines)}`);
    order.push([index.get(added.sid), connected.client]);
  }
  const seen = order.map(([s, n]) => `S${s + 1}->${n}`).join(' ');
  assert.deepEqual(order.map(([, n]) => n), [2, 3, 4, 5, 6, 7, 8],
    `round ${r}: ids at M in announcement order: ${seen}`);
  assert.equal(new Set(order.map(([s]) => s)).size, SLAVES, `round ${r}: each slave once: ${seen}`);
  for (const s of slaves) assert.equal(await s.next(), `!set-master: ${m.sid}`);

  // Each slave's player speaks: M hears it under that slave's id.
  const idOf = new Map(order.map(([s, n]) => [s, n]));
  slaves.forEach((s, i) => s.player.send(`hello from S${i + 1}`));
  const heard = (await m.take(SLAVES)).sort();
  const expected = slaves.map((_, i) => `${idOf.get(i)}: hello from S${i + 1}`).sort();
  assert.deepEqual(heard, expected, `round ${r}: messages at M (order ${seen})`);
  for (const [i, s] of slaves.entries()) assert.equal(await s.next(), `1: hello from S${i + 1}`);

  // M addresses each slave's player by that id.
  slaves.forEach((_, i) => m.send(`${idOf.get(i)}: to S${i + 1}`));
  for (const [i, s] of slaves.entries()) assert.equal(await s.player.next(), `to S${i + 1}`, `round ${r}: ${seen}`);
  // M's own player is still 1.
  m.player.send('own');
  assert.equal(await m.next(), '1: own');

  // End the round's sessions; drop the sockets (the relay closes the players).
  for (const h of [m, ...slaves]) h.close();
  for (const h of [m, ...slaves]) h.player.terminate();
  open.length = 0;
}

test(`racing searches give a master its slaves' ids in announcement order (${ROUNDS} rounds)`, async (t) => {
  const started = Date.now();
  for (let r = 0; r < ROUNDS; r++) await round(r);
  const ms = Date.now() - started;
  t.diagnostic(`${ROUNDS} rounds in ${ms} ms (${(ms / ROUNDS).toFixed(0)} ms per round)`);
});
