// What an operator relies on, under `wrangler dev`: the HTTP endpoints
// (/health, /version, /stats, /docs/PROTOCOL.md), the ALLOWED_ORIGINS check,
// the refusal of non-GET requests, and the structured log lines.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { readFileSync } from 'node:fs';
import { startRelay, host, join, get, refused, checkStats, pollUntil, Peer, ROOT, VERSION } from './helpers/relay.js';

const LIFECYCLE = /lifecycle: session object constructed/;
const ORIGINS = 'https://game.example, http://localhost:8080/';
const FORBIDDEN = 'Forbidden: this page\'s origin may not open sockets to this relay (see ALLOWED_ORIGINS)';

let relay; // default settings (any origin, LOG_LEVEL info)
let strict; // ALLOWED_ORIGINS set, LOG_LEVEL warn

before(async () => {
  [relay, strict] = await Promise.all([
    startRelay({ vars: { LOG_LIFECYCLE: 'true' } }),
    startRelay({ vars: { LOG_LIFECYCLE: 'true', ALLOWED_ORIGINS: ORIGINS, LOG_LEVEL: 'warn' } }),
  ]);
});
after(async () => Promise.all([relay?.stop(), strict?.stop()]));

/** A raw HTTP request (any method, any headers); resolves { status, body, upgraded }. */
function request(r, method, path, headers = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: r.port, method, path, headers });
    req.on('response', (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode, body, headers: res.headers }));
    });
    req.on('upgrade', (res, socket) => { socket.destroy(); resolve({ status: res.statusCode, upgraded: true }); });
    req.on('error', reject);
    req.end();
  });
}

const HANDSHAKE = {
  Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Version': '13', 'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==',
};


/**
 * The structured log lines wrangler printed so far, parsed. `console.log`
 * lines (debug, info) are printed as they are; wrangler dev decorates
 * `console.warn` / `console.error` lines (`▲ [WARNING] …`, colours), so the
 * JSON is cut out of the line.
 */
function logLines(r) {
  return r.output.split('\n')
    .map((l) => l.replace(/\x1b\[[0-9;]*m/g, ''))
    .filter((l) => l.includes('{"level":'))
    .map((l) => JSON.parse(l.slice(l.indexOf('{"level":'), l.lastIndexOf('}') + 1)));
}

/** Waits for a log line with this event whose fields include `match`. */
async function logged(r, event, match = {}) {
  const found = () => logLines(r).find((l) => l.event === event && Object.entries(match).every(([k, v]) => l[k] === v));
  await r.waitForOutput(new RegExp(`"event":"${event}"`), 1);
  for (let n = r.count(new RegExp(`"event":"${event}"`)); !found(); n++) {
    await r.waitForOutput(new RegExp(`"event":"${event}"`), n + 1);
  }
  return found();
}

test('GET /stats is the JSON of !stats', async () => {
  const h = await host(relay);
  await join(relay, h);
  // The figures are eventually consistent (they may lag by seconds): read
  // until the host and its client are counted; no time is asserted.
  const read = async () => {
    const res = await get(relay, '/stats');
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type'), /^application\/json/);
    return checkStats(res.body);
  };
  await pollUntil(read, (s) => s.numHostsOnline >= 1 && s.numClientsOnline >= 1, { what: 'GET /stats counting the host and its client' });
  h.send('/stats');
  assert.equal(await h.next(), `!stats ${(await get(relay, '/stats')).body}`);
  h.close();
});

/**
 * The leaf a session reports to, as `core/src/stats.rs` picks it: FNV-1a
 * (64 bits) of its id, modulo the number of leaves.
 */
function leafOf(sid, leaves) {
  let h = 0xcbf29ce484222325n;
  for (const byte of Buffer.from(sid, 'utf8')) h = BigInt.asUintN(64, (h ^ BigInt(byte)) * 0x100000001b3n);
  return Number(h % BigInt(leaves));
}

test('the figures travel a tree of aggregators: /stats is exact over sessions reporting through leaves and two branches', async () => {
  // A relay of its own, so that no other test's sessions are counted. With
  // 64 leaves there are two branches (32 leaves each); the session ids are
  // chosen so that each branch hears from three leaves.
  const LEAVES = 64;
  const tree = await startRelay({ vars: { AGGREGATOR_LEAVES: String(LEAVES), LOG_LIFECYCLE: 'true' } });
  try {
    const ids = [];
    const perBranch = [new Set(), new Set()];
    for (let i = 0; ids.length < 12; i++) {
      const sid = `tree-${i}`;
      const leaf = leafOf(sid, LEAVES);
      const branch = perBranch[Math.floor(leaf / 32)];
      if (branch.size < 6 && !branch.has(leaf)) {
        branch.add(leaf);
        ids.push(sid);
      }
    }
    const hosts = [];
    const clients = [];
    for (const [i, sid] of ids.entries()) {
      const h = await host(tree, `id=${sid}`);
      for (let c = 0; c < i % 3; c++) clients.push(await join(tree, h));
      hosts.push(h);
    }
    const read = async () => checkStats((await get(tree, '/stats')).body);
    await pollUntil(read, (s) => s.numHostsOnline === 12 && s.numClientsOnline === 12 && s.numPlayers === 12,
      { what: 'GET /stats counting 12 hosts and 12 clients' });
    const loaded = new Set([...tree.output.matchAll(/lifecycle: aggregator (\S+) loaded/g)].map((m) => m[1]));
    const expected = ['root', 'branch-0', 'branch-1', ...[...perBranch[0], ...perBranch[1]].map((l) => `leaf-${l}`)];
    assert.deepEqual([...loaded].sort(), expected.sort(), 'every aggregator on the way of the reports, and no other');
    // Exact once churn stops: every host gone, every figure back to zero.
    for (const p of [...clients, ...hosts]) p.close();
    await pollUntil(read, (s) => s.numHostsOnline === 0 && s.numClientsOnline === 0 && s.numPlayers === 0,
      { what: 'GET /stats back to zero' });
  } finally {
    await tree.stop();
  }
});

test('GET /health answers ok and wakes no object', async () => {
  const before = relay.count(LIFECYCLE);
  const res = await get(relay, '/health');
  assert.equal(res.status, 200);
  assert.equal(res.body, 'ok');
  assert.match(res.headers.get('content-type'), /^text\/plain/);
  // Barrier: a new session constructs exactly one object; had /health woken
  // one, the count would be two higher.
  const h = await host(relay);
  await relay.waitForOutput(LIFECYCLE, before + 1);
  assert.equal(relay.count(LIFECYCLE), before + 1);
  h.close();
});

test('GET /version is the Cargo.toml version as plain text', async () => {
  const res = await get(relay, '/version');
  assert.equal(res.status, 200);
  assert.equal(res.body, VERSION);
  assert.match(res.headers.get('content-type'), /^text\/plain/);
});

test('GET /docs/PROTOCOL.md serves the repository copy', async () => {
  const res = await get(relay, '/docs/PROTOCOL.md');
  assert.equal(res.status, 200);
  assert.equal(res.body, readFileSync(`${ROOT}/docs/PROTOCOL.md`, 'utf8'));
});

test('operator endpoints take GET and HEAD only', async () => {
  for (const path of ['/health', '/version', '/stats']) {
    const res = await request(relay, 'POST', path);
    assert.equal(res.status, 405, path);
    assert.equal(res.body, 'Method not allowed: use GET or HEAD');
  }
  assert.equal((await request(relay, 'HEAD', '/health')).status, 200);
});

test('a refusal is one JSON log line with status and reason, and no query (secrets)', async () => {
  const res = await request(relay, 'POST', '/session?id=logged-1&secret=do-not-log-me');
  assert.equal(res.status, 405);
  const line = await logged(relay, 'request_refused', { status: 405, path: '/session' });
  assert.deepEqual(line, {
    level: 'info', event: 'request_refused', status: 405,
    reason: 'Method not allowed: use GET with Upgrade: websocket', method: 'POST', path: '/session',
  });
  // Info lines reach the output exactly as rendered: one line, stable order.
  const raw = relay.output.split('\n').find((l) => l.includes('"status":405') && l.includes('"path":"/session"'));
  assert.equal(raw, '{"level":"info","event":"request_refused","status":405,"reason":"Method not allowed: use GET with Upgrade: websocket","method":"POST","path":"/session"}');
  // Barrier: a later request's info line, in the same stream (stdout), comes
  // after anything the POST printed.
  await get(relay, '/log-marker-405');
  await logged(relay, 'request_refused', { status: 404, path: '/log-marker-405' });
  assert.doesNotMatch(relay.output, /do-not-log-me/);
});

test('a POST to /session without upgrade is refused before anything is created', async () => {
  const res = await request(relay, 'POST', '/session?id=post-plain');
  assert.equal(res.status, 405);
  const h = await host(relay, 'id=post-plain');
  assert.equal(h.sessionLine, 'session: post-plain');
  h.close();
});

// Under `wrangler dev` a non-GET request with WebSocket headers reaches the
// Worker as a GET: Miniflare's entry worker opens it with the runtime's
// `fetch` (always GET, body and method dropped), and only the outermost server
// refuses the handshake (400), after the Session object accepted the socket.
// (On the edge the router sees the method and answers 405, and nothing is
// made.) The object then sees a host that dropped at once: like any session
// whose host dropped, it waits for a take-over for the reconnect window and
// its id answers 409 meanwhile (PROTOCOL.md section 2; README, Known limits).
test('a POST with WebSocket headers is never upgraded; under wrangler dev its id then waits out the reconnect window', async () => {
  const res = await request(relay, 'POST', '/session?id=post-upgrade', HANDSHAKE);
  assert.ok(!res.upgraded, 'a POST must not be upgraded');
  assert.ok([400, 405].includes(res.status), `status ${res.status}`);
  assert.deepEqual(await refused(relay, '/session?id=post-upgrade'), { status: 409, body: 'Session already exists' });
});

test('ALLOWED_ORIGINS: a listed origin and no Origin connect', async () => {
  const h = new Peer(`${strict.ws}/session?id=origin-ok`, { headers: { Origin: 'https://game.example' } });
  await h.opened;
  assert.equal(await h.next(), 'session: origin-ok');
  const c = new Peer(`${strict.ws}/session/origin-ok`, { headers: { Origin: 'http://localhost:8080' } });
  await c.opened;
  await h.until('connected: 1');
  const bare = await host(strict); // a game or server: no Origin header at all
  assert.match(bare.sessionLine, /^session: /);
  h.close(); c.close(); bare.close();
});

test('ALLOWED_ORIGINS: another origin gets 403 before any object wakes, logged at warn', async () => {
  const before = strict.count(LIFECYCLE);
  const notFound = await get(strict, '/nothing-here'); // info: below LOG_LEVEL=warn
  assert.equal(notFound.status, 404);
  for (const path of ['/session?id=origin-bad&secret=s3cr3t-value', '/session/origin-bad']) {
    for (const origin of ['https://evil.example', 'http://game.example', 'null']) {
      const res = await refused(strict, path, { headers: { Origin: origin } });
      assert.equal(res.status, 403, `${path} from ${origin}`);
      assert.equal(res.body, FORBIDDEN);
    }
  }
  const line = await logged(strict, 'request_refused', { status: 403, path: '/session/origin-bad' });
  assert.deepEqual(Object.keys(line), ['level', 'event', 'status', 'reason', 'method', 'path']);
  assert.equal(line.level, 'warn');
  assert.equal(line.reason, FORBIDDEN);
  // No Session object was constructed by the refusals, and the id is free:
  // the first object constructed now is this host's.
  const h = await host(strict, 'id=origin-bad');
  assert.equal(h.sessionLine, 'session: origin-bad');
  await strict.waitForOutput(LIFECYCLE, before + 1);
  assert.equal(strict.count(LIFECYCLE), before + 1);
  // Barrier for what must not be printed: warn lines go to stderr, info lines
  // and this object's lifecycle line to stdout, and the object was made after
  // the 404 and the refusals were answered, so their lines, in either stream,
  // would be in the output by now.
  assert.ok(!logLines(strict).some((l) => l.status === 404), 'an info line passed LOG_LEVEL=warn');
  assert.doesNotMatch(strict.output, /s3cr3t-value/);
  h.close();
});

test('a text frame with invalid UTF-8 reaches the host decoded with U+FFFD', async () => {
  const h = await host(relay);
  const c = await join(relay, h);
  c.socket.send(Buffer.from([0x61, 0xff, 0x62, 0xc3]), { binary: false }); // "a", bad byte, "b", cut sequence
  assert.equal(await h.next(), `${c.id}: a\uFFFDb\uFFFD`);
  h.close(); c.close();
});
