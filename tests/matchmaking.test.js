// PROTOCOL.md section 4 against the real runtime: the Matchmaker object, links
// between Session objects, id translation, broadcasts, leaving, Steam friends.
import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { parseHostFrame } from '../client/relay-client.js';
import { startRelay, host, join, client, waitForStats } from './helpers/relay.js';
import { startFakeSteam } from './helpers/fake-steam.js';

let relay, steam;
const open = [];

before(async () => {
  steam = await startFakeSteam({
    friends: { 100: ['300'], 300: ['100'] },
    failing: ['999'],
    hanging: ['888'],
  });
  relay = await startRelay({ vars: { MAX_CLIENTS: '8', RECONNECT_SECONDS: '3', STEAM_API_KEY: 'test-key', STEAM_API_BASE: steam.url } });
});
after(async () => { await relay?.stop(); await steam?.stop(); });

// Each test ends its sessions (reconnect=false: they end at once and leave
// the pool), then waits until the Matchmaker holds no search, so tests never
// match each other's leftovers.
afterEach(async () => {
  for (const peer of open.splice(0)) peer.close();
  const probe = await newHost();
  await waitForStats(probe, (s) => s.numHostsLookingForSession === 0);
  probe.close();
  open.length = 0;
});

async function newHost(query = '') {
  const h = await host(relay, `reconnect=false${query ? `&${query}` : ''}`);
  open.push(h);
  return h;
}

/** A host with `n` clients already connected. */
async function hostWith(n, query) {
  const h = await newHost(query);
  h.clients = [];
  for (let i = 0; i < n; i++) h.clients.push(await join(relay, h));
  return h;
}


/** Sends a search and waits until the Matchmaker holds `looking` searches. */
async function search(h, command, looking) {
  h.send(command);
  await waitForStats(h, (s) => s.numHostsLookingForSession === looking);
}

/**
 * Both sides of a new link hear of it; right after `!added-slave:` the master
 * hears `connected: <n>` for each of the slave's clients, ascending and
 * contiguous. Returns those ids.
 */
async function expectLinked(master, slave) {
  assert.equal(await master.next(), `!added-slave: ${slave.sid}`);
  const ids = [];
  for (let i = 0; i < (slave.clients?.length ?? 0); i++) {
    const line = await master.next();
    const f = parseHostFrame(line);
    assert.equal(f.kind, 'connected', `a connected line per slave client, got ${JSON.stringify(line)}`);
    ids.push(f.client);
  }
  ids.forEach((id, i) => assert.equal(id, ids[0] + i));
  assert.equal(await slave.next(), `!set-master: ${master.sid}`);
  return ids;
}

async function linkPair(master, slave, masterCmd = '/join-session master', slaveCmd = '/join-session slave') {
  master.send(masterCmd);
  await waitForStats(master, (s) => s.numHostsLookingForSession >= 1);
  slave.send(slaveCmd);
  await expectLinked(master, slave);
}

test('two searching sessions link: the one that waited leads', async () => {
  const a = await newHost();
  const b = await newHost();
  await search(a, '/join-session', 1);
  b.send('/join-session');
  await expectLinked(a, b);
});

test('ids are translated across a master and two slaves; messages and events flow both ways', async () => {
  const m = await hostWith(2);
  const s1 = await hostWith(3);
  const s2 = await hostWith(1);
  await linkPair(m, s1);
  s2.send('/join-session slave');
  await expectLinked(m, s2);

  // Master's own clients keep their ids; s1's are 3..5, s2's is 6.
  m.clients[1].send('own');
  assert.equal(await m.next(), '2: own');
  s1.clients[0].send('hi\nthere');
  assert.equal(await s1.next(), '1: hi\nthere');
  assert.equal(await m.next(), '3: hi\nthere');
  s2.clients[0].send('from s2');
  assert.equal(await s2.next(), '1: from s2');
  assert.equal(await m.next(), '6: from s2');

  m.send('4: to s1 client 2');
  assert.equal(await s1.clients[1].next(), 'to s1 client 2');
  m.send('6: to s2 client 1');
  assert.equal(await s2.clients[0].next(), 'to s2 client 1');
  m.send('1: own client');
  assert.equal(await m.clients[0].next(), 'own client');
  m.send('7: nobody');
  assert.equal(await m.next(), 'unknown: 7');

  s1.clients[2].close();
  assert.equal(await s1.next(), 'disconnected: 3');
  assert.equal(await m.next(), 'disconnected: 5');
  // The slave's capacity stays frozen while linked, but its uuid-less
  // clients cannot come back; a fresh client is refused.
  const extra = await client(relay, s1.sid);
  assert.equal(await extra.next(), 'error: no slots available, max clients reached');
  assert.equal((await extra.closed()).code, 4003);
});

test('0: goes between linked hosts both ways', async () => {
  const m = await newHost();
  const s1 = await newHost();
  const s2 = await newHost();
  await linkPair(m, s1);
  s2.send('/join-session slave');
  await expectLinked(m, s2);

  s1.send('0: from slave one');
  assert.equal(await m.next(), '0: from slave one');
  assert.equal(await s2.next(), '0: from slave one');
  m.send('0: from the master');
  assert.equal(await s1.next(), '0: from the master');
  assert.equal(await s2.next(), '0: from the master');
  // The sender never hears its own broadcast.
  s1.send('/version');
  assert.match(await s1.next(), /^!version /);
});

test('/leave-session from a slave, then from a master', async () => {
  const m = await newHost();
  const s1 = await newHost();
  const s2 = await newHost();
  await linkPair(m, s1);
  s2.send('/join-session slave');
  await expectLinked(m, s2);
  s2.send('/leave-session');
  assert.equal(await m.next(), `!slave-left: ${s2.sid}`);
  m.send('/leave-session');
  assert.equal(await s1.next(), '!master-left');
});

test('a session that ends leaves its links', async () => {
  const m = await newHost();
  const s = await newHost();
  await linkPair(m, s);
  s.close(); // reconnect=false: the session ends now
  assert.equal(await m.next(), `!slave-left: ${s.sid}`);
  const s2 = await newHost();
  await search(m, '/join-session master', 1);
  s2.send('/join-session slave');
  await expectLinked(m, s2);
  m.close();
  assert.equal(await s2.next(), '!master-left');
});

test('a linked session whose reconnect window runs out leaves its links', async () => {
  const m = await newHost();
  const s = await host(relay); // reconnect=true, RECONNECT_SECONDS=3
  await linkPair(m, s);
  s.close();
  // However long the window and the alarm after it take: the event is the point.
  assert.equal(await m.next(Infinity), `!slave-left: ${s.sid}`);
});

test('private masters are joined only by id', async () => {
  const p = await newHost();
  const other = await newHost();
  await search(p, '/join-session master private', 1);
  other.send('/join-session slave');
  await waitForStats(p, (s) => s.numHostsLookingForSession === 2);
  const targeted = await newHost();
  targeted.send(`/join-session id=${p.sid}`);
  await expectLinked(p, targeted);
  other.send('/close-session');
  await waitForStats(p, (s) => s.numHostsLookingForSession === 1);
});

test('ghostMode splits the pools', async () => {
  const ghost = await newHost();
  const plain = await newHost();
  await search(ghost, '/join-session master ghostMode=true', 1);
  plain.send('/join-session slave');
  await waitForStats(ghost, (s) => s.numHostsLookingForSession === 2);
  const ghostSlave = await newHost();
  ghostSlave.send('/join-session ghostMode=true slave');
  await expectLinked(ghost, ghostSlave);
});

test('Steam friends are matched first', async () => {
  const stranger = await newHost();
  const friend = await newHost();
  await search(stranger, '/join-session master steamUserId=200', 1);
  friend.send('/join-session master steamUserId=300');
  await waitForStats(stranger, (s) => s.numHostsLookingForSession === 2);
  const me = await newHost();
  me.send('/join-session slave steamUserId=100');
  await expectLinked(friend, me);
  assert.ok(steam.calls.some((c) => c.steamid === '100' && c.key === 'test-key'), 'the friend list was asked for');
});

test('Steam failing or hanging never blocks matchmaking', async () => {
  for (const steamId of ['999', '888']) {
    const m = await newHost();
    m.send('/join-session master');
    await waitForStats(m, (s) => s.numHostsLookingForSession === 1);
    const s = await newHost();
    s.send(`/join-session slave steamUserId=${steamId}`);
    assert.equal(await s.next(), `!set-master: ${m.sid}`, `steam user ${steamId}`);
    assert.equal(await m.next(), `!added-slave: ${s.sid}`);
    m.send('/close-session');
  }
});

test('capacity: a group never exceeds MAX_CLIENTS', async () => {
  const m = await hostWith(4);
  const big = await hostWith(5);
  await search(m, '/join-session master', 1);
  big.send('/join-session slave');
  await waitForStats(m, (s) => s.numHostsLookingForSession === 2);
  const fits = await hostWith(4);
  fits.send('/join-session slave');
  await expectLinked(m, fits);
  // Full now: the master stopped looking; the big one still waits.
  await waitForStats(m, (s) => s.numHostsLookingForSession === 1);
});

test('searching freezes the session: no new clients until the search ends', async () => {
  const h = await hostWith(1);
  await search(h, '/join-session master', 1);
  const refused = await client(relay, h.sid);
  assert.equal(await refused.next(), 'error: no slots available, max clients reached');
  assert.deepEqual(await refused.closed(), { code: 4003, reason: 'session full' });
  await search(h, '/close-session', 0);
  const admitted = await join(relay, h);
  assert.equal(admitted.id, 2);
});

test('a search whose host has gone is not matched', async () => {
  const gone = await host(relay); // reconnect=true: the session stays, its search must not
  gone.send('/join-session master');
  const probe = await newHost();
  await waitForStats(probe, (s) => s.numHostsLookingForSession === 1);
  gone.close();
  await waitForStats(probe, (s) => s.numHostsLookingForSession === 0);
  const m = await newHost();
  m.send('/join-session master');
  await waitForStats(probe, (s) => s.numHostsLookingForSession === 1);
  const s = await newHost();
  s.send('/join-session slave');
  await expectLinked(m, s);
});

test('many hosts searching at once: no session is master and slave, no group over capacity', async () => {
  const hosts = [];
  for (let i = 0; i < 16; i++) hosts.push(await hostWith(i % 4));
  const roles = ['', ' master', ' slave'];
  hosts.forEach((h, i) => { h.send(`/join-session${roles[i % 3]}`); h.send('/stats'); });
  // A host's /stats is answered after its search call returned, and the
  // Matchmaker answers a search only once both sides of every link it made
  // were told. So once every host has its !stats, every link notice has been
  // sent; a /version round trip per socket then flushes them to us.
  const seen = new Map();
  for (const h of hosts) seen.set(h.sid, await h.until(/^!stats /));
  for (const h of hosts) {
    h.send('/version');
    seen.get(h.sid).push(...(await h.until(/^!version /)));
  }
  const masterOf = new Map();
  const slavesOf = new Map();
  for (const h of hosts) {
    for (const f of seen.get(h.sid).map((line) => parseHostFrame(line))) {
      if (f.kind === 'set-master') {
        assert.ok(!masterOf.has(h.sid), `${h.sid} joined two masters`);
        masterOf.set(h.sid, f.sid);
      } else if (f.kind === 'added-slave') {
        slavesOf.set(h.sid, [...(slavesOf.get(h.sid) || []), f.sid]);
      }
    }
  }
  assert.ok(masterOf.size > 0, 'some sessions linked');
  const size = new Map(hosts.map((h) => [h.sid, h.clients.length]));
  for (const [master, slaves] of slavesOf) {
    assert.ok(!masterOf.has(master), `${master} is both master and slave`);
    const total = size.get(master) + slaves.reduce((n, s) => n + size.get(s), 0);
    assert.ok(total <= 8, `group of ${master} has ${total} clients`);
    for (const s of slaves) assert.equal(masterOf.get(s), master, 'both sides agree on the link');
  }
});

test('/stats counts hosts, searches, clients and players relay-wide', async () => {
  // Every earlier session has ended; only these two hosts are left.
  const observer = await newHost();
  const h = await hostWith(2);
  await waitForStats(observer, (s) =>
    s.numHostsOnline === 2 && s.numHostsLookingForSession === 0 && s.numClientsOnline === 2 && s.numPlayers === 2);
  h.send('/join-session master');
  await waitForStats(observer, (s) => s.numHostsLookingForSession === 1);
  // A host that leaves (window open) takes its players with it, not its clients.
  h.close();
  await waitForStats(observer, (s) => s.numHostsOnline === 1 && s.numClientsOnline === 0 && s.numPlayers === 0);
});
