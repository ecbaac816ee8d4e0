// The one place the tests and the bench start a Worker under `wrangler dev`
// (workerd) and talk to it: the launcher, the environment it runs in, a
// WebSocket whose frames and close are awaited as events, the protocol's
// small steps (host, join, /stats, the /version barrier), and the one
// polling loop for state the relay only reports. Host frames are parsed with
// the client library's own parser (client/relay-client.js).
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { appendFileSync, cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { parseHostFrame } from '../../client/relay-client.js';
import { cmdline, comm, descendants, listeningPorts, workerdPids } from './proc.js';

export const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const WRANGLER = path.join(ROOT, 'node_modules/.bin/wrangler');
/** The relay's version (Cargo.toml), which `/version` answers. */
export const VERSION = /^version = "(.+)"$/m.exec(readFileSync(path.join(ROOT, 'Cargo.toml'), 'utf8'))[1];
/**
 * How long one step (a frame, a close) may take before a test gives up with a
 * message naming the step. A guard against hangs, not a claim about speed:
 * steps whose time is the point are measured by the bench instead.
 */
export const STEP_TIMEOUT_MS = 15_000;

/**
 * RELAY_PREBUILT=1: run a snapshot of the build/ that is there instead of
 * building first (see relaySnapshot), e.g. while the sources are being edited.
 */
export const PREBUILT = process.env.RELAY_PREBUILT === '1';

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** The environment `wrangler` runs in (dev and deploy alike); `extra` on top. */
export function wranglerEnv(extra = {}) {
  return {
    ...process.env,
    PATH: `${path.join(ROOT, 'node_modules/.bin')}:${process.env.PATH}`,
    WRANGLER_SEND_METRICS: 'false',
    CI: 'true',
    FORCE_COLOR: '0',
    ...extra,
  };
}

export async function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/**
 * A copy of the built relay (build/, public/ and wrangler.toml without its
 * [build] section) in a temporary directory. With the repository's own
 * wrangler.toml, `wrangler dev` runs scripts/build.sh when it starts and
 * rebuilds and restarts the Worker whenever the Rust sources change; a copy
 * runs exactly the build/ that is there, whatever happens to the sources.
 */
export function relaySnapshot() {
  const dir = mkdtempSync(path.join(tmpdir(), 'relay-build-'));
  cpSync(path.join(ROOT, 'build'), path.join(dir, 'build'), { recursive: true });
  cpSync(path.join(ROOT, 'public'), path.join(dir, 'public'), { recursive: true });
  let skip = false;
  const toml = readFileSync(path.join(ROOT, 'wrangler.toml'), 'utf8').split('\n').filter((line) => {
    if (/^\s*\[/.test(line)) skip = /^\s*\[build\]\s*$/.test(line);
    return !skip;
  });
  writeFileSync(path.join(dir, 'wrangler.toml'), toml.join('\n'));
  return { dir, config: path.join(dir, 'wrangler.toml'), remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Does GET /session on this port answer 426 (an upgrade is needed)? Then it is the Worker. */
async function isWorker(port) {
  try {
    const res = await fetch(`http://127.0.0.1:${port}/session`, { signal: AbortSignal.timeout(2000) });
    await res.text();
    return res.status === 426;
  } catch {
    return false;
  }
}

/**
 * Worker variables every test relay starts with: four leaf aggregators under
 * the root, so the /stats figures of a test's few sessions spread over
 * several leaves and travel the whole tree (PROTOCOL.md section 4 checks
 * them through it).
 */
export const TEST_VARS = Object.freeze({ AGGREGATOR_LEAVES: '4' });

/**
 * Starts `wrangler dev` on a free loopback port.
 *  - `config`: a wrangler.toml (absolute, or relative to ROOT); default the
 *    repository's, which builds first (see relaySnapshot).
 *  - `prebuilt`: run a snapshot of build/ instead of building (default
 *    PREBUILT). Ignored with `config`.
 *  - `vars`: Worker variables (`--var`); `env`: extra environment variables.
 *    The repository's relay (no `config`) runs with TEST_VARS first, so the
 *    tests exercise a tree of several aggregators rather than one leaf's worth
 *    of traffic over 1,024 (a test's `vars` can override them).
 *  - `traces`: false turns off the trace collector wrangler dev attaches to
 *    the Worker (a tail worker storing every event in SQLite: dev-only work
 *    per WebSocket event that production does not do); default on, as
 *    wrangler has it.
 *  - `persistTo`: the state directory (default a fresh one, deleted by
 *    stop(): pass one to keep it, e.g. for a restart on the same state); `port`.
 *  - `logFile`: also write wrangler's output to a file (true: one in the
 *    temporary directory, named after the config's directory).
 */
export async function startRelay({ config, prebuilt, vars = {}, env = {}, traces = true, persistTo, port, logFile } = {}) {
  let snapshot = null;
  if (!config) vars = { ...TEST_VARS, ...vars };
  if (!config && (prebuilt ?? PREBUILT)) {
    snapshot = relaySnapshot();
    config = snapshot.config;
  }
  const configPath = path.resolve(ROOT, config ?? 'wrangler.toml');
  port ??= await freePort();
  const inspectorPort = await freePort();
  const freshState = !persistTo;
  persistTo ??= mkdtempSync(path.join(tmpdir(), 'relay-state-'));
  const args = [
    'dev', '--config', configPath, '--ip', '127.0.0.1', '--port', String(port), '--inspector-port', String(inspectorPort),
    '--persist-to', persistTo, '--show-interactive-dev-session=false',
  ];
  for (const [k, v] of Object.entries(vars)) args.push('--var', `${k}:${v}`);
  if (!traces) env = { X_LOCAL_OBSERVABILITY: 'false', ...env };
  const child = spawn(WRANGLER, args, { cwd: ROOT, env: wranglerEnv(env), stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  if (logFile === true) logFile = path.join(tmpdir(), `wrangler-${path.basename(path.dirname(configPath))}-${child.pid}.log`);
  if (logFile) writeFileSync(logFile, '');
  const relay = {
    port, inspectorPort, persistTo, child, logFile, url: `http://127.0.0.1:${port}`, ws: `ws://127.0.0.1:${port}`,
    output: '',
    waiters: [],
    /** Resolves when wrangler's output matches `pattern` `count` times in all. */
    waitForOutput(pattern, count = 1, timeoutMs = STEP_TIMEOUT_MS) {
      const matches = () => relay.count(pattern) >= count;
      if (matches()) return Promise.resolve();
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`wrangler never printed ${pattern} x${count}:\n${relay.output.slice(-3000)}`)), timeoutMs);
        relay.waiters.push(() => { if (matches()) { clearTimeout(timer); resolve(); return true; } return false; });
      });
    },
    /** How often wrangler's output (stdout and stderr together) has matched `pattern` so far. */
    count(pattern) { return (relay.output.match(new RegExp(pattern.source, 'g')) || []).length; },
    /**
     * Finds the two workerd processes wrangler runs: a proxy on `port`, and
     * the runtime that runs the Worker on a port of its own (`runtimeWs`: a
     * load that should not pass through the dev-only proxy connects there).
     */
    async findRuntime() {
      for (let i = 0; i < 100 && !relay.runtimePort; i++) {
        const kids = descendants(child.pid);
        relay.wranglerPids = kids.filter((p) => comm(p) !== 'workerd' && cmdline(p).some((a) => a.includes('wrangler'))).concat(child.pid);
        for (const pid of kids.filter((p) => comm(p) === 'workerd')) {
          if (cmdline(pid).some((a) => a === `--socket-addr=entry=127.0.0.1:${port}`)) relay.proxyPid = pid;
          else {
            for (const p of listeningPorts(pid)) {
              if (await isWorker(p)) { relay.runtimePid = pid; relay.runtimePort = p; break; }
            }
          }
        }
        if (!relay.runtimePort) await sleep(200); // processes and ports have no event to await
      }
      if (!relay.runtimePort) throw new Error('could not find the runtime workerd and its entry port');
      relay.runtimeWs = `ws://127.0.0.1:${relay.runtimePort}`;
      return relay;
    },
    /** Is the runtime workerd found by findRuntime still running (wrangler did not restart it)? */
    alive() {
      return comm(relay.runtimePid) === 'workerd';
    },
    /** Stops wrangler and its workerd processes; `removeState` (default: if the state is a fresh one) deletes `persistTo`. */
    async stop({ removeState = freshState } = {}) {
      if (child.exitCode === null && child.signalCode === null) {
        const workerd = workerdPids(child.pid);
        const exited = new Promise((r) => child.once('exit', r));
        try { process.kill(-child.pid, 'SIGTERM'); } catch {}
        const timer = setTimeout(() => { try { process.kill(-child.pid, 'SIGKILL'); } catch {} }, 8000);
        await exited;
        clearTimeout(timer);
        // workerd may outlive wrangler by a moment; make sure they are gone.
        for (const pid of workerd) {
          for (let i = 0; i < 50 && comm(pid) === 'workerd'; i++) await sleep(100);
          if (comm(pid) === 'workerd') try { process.kill(pid, 'SIGKILL'); } catch {}
        }
      }
      snapshot?.remove();
      if (removeState) rmSync(persistTo, { recursive: true, force: true });
    },
  };
  const onData = (chunk) => {
    relay.output += chunk.toString();
    if (logFile) appendFileSync(logFile, chunk);
    relay.waiters = relay.waiters.filter((w) => !w());
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);
  const died = new Promise((_, reject) => child.once('exit', (code) => reject(new Error(`wrangler exited (${code}):\n${relay.output.slice(-3000)}`))));
  died.catch(() => {});
  try {
    await Promise.race([relay.waitForOutput(/Ready on http/, 1, 180_000), died]);
    // wrangler prints "Ready" when its proxy listens, which may be before the
    // runtime behind it takes requests (seen on a loaded machine: the first
    // upgrade refused). Any answer below 500 means the Worker itself answered.
    await Promise.race([pollUntil(
      () => fetch(`${relay.url}/health`).then(async (r) => { await r.body?.cancel(); return r.status; }, () => 599),
      (status) => status < 500,
      { everyMs: 50, timeoutMs: 60_000, what: `an answer from the Worker behind ${relay.url}` },
    ), died]);
  } catch (e) {
    await relay.stop();
    throw e;
  }
  return relay;
}

/**
 * Reads `read()` again and again until `ok(value)` holds, `everyMs` apart:
 * for state the relay only reports (e.g. /stats, whose figures may lag by
 * seconds), never a sleep standing in for an event. No deadline of its own
 * unless `timeoutMs` is given (the bench gives one; a test's bound is its own
 * timeout). Resolves { value, polls, ms }.
 */
export async function pollUntil(read, ok, { everyMs = 100, timeoutMs = Infinity, what = 'the condition' } = {}) {
  const t0 = performance.now();
  let polls = 0;
  let value;
  let noted = t0;
  for (;;) {
    value = await read();
    polls++;
    if (ok(value)) return { value, polls, ms: performance.now() - t0 };
    const now = performance.now();
    if (now - t0 > timeoutMs) throw new Error(`${what} never held within ${timeoutMs} ms (${polls} polls); last: ${JSON.stringify(value)}`);
    if (now - noted > 30_000) {
      noted = now;
      console.error(`still waiting for ${what} after ${Math.round((now - t0) / 1000)} s; last: ${JSON.stringify(value)}`);
    }
    await sleep(everyMs);
  }
}

/** A timer for a step: none when `ms` is Infinity (the test's own timeout is the bound). */
function stepTimer(ms, onTimeout) {
  return Number.isFinite(ms) ? setTimeout(onTimeout, ms) : null;
}

/** A WebSocket whose frames and close can be awaited in order. */
export class Peer {
  /** `options` go to the `ws` constructor, e.g. `{ headers: { Origin: 'https://a.example' } }`. */
  constructor(url, options) {
    this.url = url;
    this.frames = [];
    this.waiting = [];
    this.closeInfo = null;
    this.closeWaiters = [];
    this.socket = new WebSocket(url, options);
    this.socket.on('message', (data, isBinary) => {
      const frame = isBinary ? data : data.toString();
      const waiter = this.waiting.shift();
      if (waiter) waiter.resolve(frame); else this.frames.push(frame);
    });
    // A close counts from the moment the close frame arrives. (workerd sends
    // the frame at once but may keep the TCP connection until the object
    // hibernates, and 'close' only fires once TCP is down.)
    const onClose = (code, reason) => {
      if (this.closeInfo) return;
      this.closeInfo = { code, reason: reason.toString() };
      for (const w of this.closeWaiters) w(this.closeInfo);
      for (const w of this.waiting) w.reject(new Error(`socket closed (${code} ${reason}) while waiting for a frame on ${url}`));
      this.waiting = [];
    };
    this.socket.on('open', () => this.socket._receiver.on('conclude', onClose));
    this.socket.on('close', onClose);
    this.opened = new Promise((resolve, reject) => {
      this.socket.once('open', resolve);
      this.socket.once('unexpected-response', (_req, res) => {
        let body = '';
        res.on('data', (c) => (body += c));
        res.on('end', () => reject(Object.assign(new Error(`HTTP ${res.statusCode}: ${body}`), { status: res.statusCode, body })));
      });
      this.socket.once('error', reject);
    });
    this.opened.catch(() => {});
  }

  /** The next frame, in arrival order. `timeoutMs` Infinity: no step timeout. */
  next(timeoutMs = STEP_TIMEOUT_MS) {
    if (this.frames.length) return Promise.resolve(this.frames.shift());
    if (this.closeInfo) return Promise.reject(new Error(`socket already closed (${this.closeInfo.code}) on ${this.url}`));
    return new Promise((resolve, reject) => {
      const timer = stepTimer(timeoutMs, () => {
        this.waiting = this.waiting.filter((w) => w.resolve !== done);
        reject(new Error(`no frame within ${timeoutMs} ms on ${this.url}`));
      });
      const done = (f) => { clearTimeout(timer); resolve(f); };
      this.waiting.push({ resolve: done, reject: (e) => { clearTimeout(timer); reject(e); } });
    });
  }

  /** The next `n` frames. */
  async take(n, timeoutMs) {
    const out = [];
    for (let i = 0; i < n; i++) out.push(await this.next(timeoutMs));
    return out;
  }

  /** Skips frames until one equals (or matches) `expected`; returns the skipped ones. */
  async until(expected, timeoutMs) {
    const skipped = [];
    for (;;) {
      const f = await this.next(timeoutMs);
      if (expected instanceof RegExp ? expected.test(f) : f === expected) return skipped;
      skipped.push(f);
    }
  }

  /** The close frame's { code, reason }. `timeoutMs` Infinity: no step timeout. */
  closed(timeoutMs = STEP_TIMEOUT_MS) {
    if (this.closeInfo) return Promise.resolve(this.closeInfo);
    return new Promise((resolve, reject) => {
      const timer = stepTimer(timeoutMs, () => reject(new Error(`not closed within ${timeoutMs} ms: ${this.url}`)));
      this.closeWaiters.push((info) => { clearTimeout(timer); resolve(info); });
    });
  }

  /** The TCP connection is gone too (what workerd queued for it was read or dropped). */
  tcpClosed() {
    if (this.socket.readyState === WebSocket.CLOSED) return Promise.resolve();
    return new Promise((resolve) => this.socket.once('close', () => resolve()));
  }

  send(data, cb) { this.socket.send(data, cb); }
  close(code, reason) { this.socket.close(code, reason); }
  terminate() { this.socket.terminate(); }
}

/** The frame parsed by the client library, which must be of `kind`. */
export function expectFrame(line, kind) {
  const f = parseHostFrame(line);
  if (f.kind !== kind) throw new Error(`expected a ${kind} line, got ${JSON.stringify(line)}`);
  return f;
}

/** Opens a host socket and reads `session:` and `secret:`. */
export async function host(relay, query = '') {
  const peer = new Peer(`${relay.ws}/session${query ? `?${query}` : ''}`);
  await peer.opened;
  peer.sessionLine = await peer.next();
  peer.secretLine = await peer.next();
  peer.sid = expectFrame(peer.sessionLine, 'session').sid;
  peer.secret = expectFrame(peer.secretLine, 'secret').secret;
  return peer;
}

/** Opens a client socket to a session. */
export async function client(relay, sid, query = '') {
  const peer = new Peer(`${relay.ws}/session/${sid}${query ? `?${query}` : ''}`);
  await peer.opened;
  return peer;
}

/** Connects a client and waits until its host has heard `connected: <n>`. */
export async function join(relay, hostPeer, query = '') {
  const c = await client(relay, hostPeer.sid, query);
  c.id = expectFrame(await hostPeer.next(), 'connected').client;
  return c;
}

/**
 * The barrier before a negative check: sends `/version` from a host and
 * returns every frame the relay sent that host before the answer. The relay
 * handles a socket's frames in order, so whatever it did for the frames
 * before is in what this returns.
 */
export async function barrier(hostPeer, timeoutMs) {
  hostPeer.send('/version');
  return hostPeer.until(/^!version /, timeoutMs);
}

/** HTTP GET with optional headers; resolves { status, body }. */
export async function get(relay, path, headers = {}) {
  const res = await fetch(`${relay.url}${path}`, { headers });
  return { status: res.status, body: await res.text(), headers: res.headers };
}

/** A WebSocket upgrade that the relay refuses: resolves { status, body }. */
export async function refused(relay, path, options) {
  const peer = new Peer(`${relay.ws}${path}`, options);
  try {
    await peer.opened;
  } catch (e) {
    return { status: e.status, body: e.body };
  }
  peer.terminate();
  throw new Error(`${path} was accepted`);
}

const STATS_KEYS = ['numHostsOnline', 'numHostsLookingForSession', 'numClientsOnline', 'numPlayers'];

/** Checks the figures of `/stats` (GET or `!stats`): these four counts, in this order, as compact JSON. */
export function checkStats(json) {
  const s = JSON.parse(json);
  const ok = JSON.stringify(Object.keys(s)) === JSON.stringify(STATS_KEYS)
    && STATS_KEYS.every((k) => Number.isInteger(s[k]) && s[k] >= 0) && JSON.stringify(s) === json;
  if (!ok) throw new Error(`not the /stats figures: ${json}`);
  return s;
}

/** Asks a host for `/stats`; the parsed figures. */
export async function stats(h) {
  h.send('/stats');
  const line = await h.next();
  expectFrame(line, 'stats');
  return checkStats(line.slice('!stats '.length));
}

/**
 * Asks for `/stats` until `ok` holds: the figures may lag (the protocol lets
 * them be seconds late), so no time is asserted; the test's timeout is the
 * only bound.
 */
export async function waitForStats(h, ok) {
  return (await pollUntil(() => stats(h), ok, { what: 'the /stats figures' })).value;
}
