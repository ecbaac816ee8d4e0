// Starts the built worker under `wrangler dev` (workerd) on a free loopback
// port, and wraps WebSocket clients so tests await frames and closes as events.
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
const { dirname } = path;
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';

export const ROOT = path.join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const STEP_TIMEOUT_MS = 15_000;

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

/** Starts `wrangler dev` with the given Worker variables. */
export async function startRelay({ vars = {}, persistTo, port } = {}) {
  port ??= await freePort();
  const inspectorPort = await freePort();
  persistTo ??= mkdtempSync(path.join(tmpdir(), 'relay-state-'));
  const args = [
    'dev', '--ip', '127.0.0.1', '--port', String(port), '--inspector-port', String(inspectorPort),
    '--persist-to', persistTo, '--show-interactive-dev-session=false',
  ];
  for (const [k, v] of Object.entries(vars)) args.push('--var', `${k}:${v}`);
  const child = spawn(path.join(ROOT, 'node_modules/.bin/wrangler'), args, {
    cwd: ROOT,
    env: { ...process.env, PATH: `${path.join(ROOT, 'node_modules/.bin')}:${process.env.PATH}`, WRANGLER_SEND_METRICS: 'false', CI: 'true', FORCE_COLOR: '0' },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  const relay = {
    port, persistTo, child, url: `http://127.0.0.1:${port}`, ws: `ws://127.0.0.1:${port}`,
    output: '',
    waiters: [],
    /** Resolves when wrangler's output matches `pattern` `count` times in all. */
    waitForOutput(pattern, count = 1, timeoutMs = STEP_TIMEOUT_MS) {
      const matches = () => (relay.output.match(new RegExp(pattern.source, 'g')) || []).length >= count;
      if (matches()) return Promise.resolve();
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`wrangler never printed ${pattern} x${count}:\n${relay.output.slice(-3000)}`)), timeoutMs);
        relay.waiters.push(() => { if (matches()) { clearTimeout(timer); resolve(); return true; } return false; });
      });
    },
    count(pattern) { return (relay.output.match(new RegExp(pattern.source, 'g')) || []).length; },
    async stop() {
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      try { process.kill(-child.pid, 'SIGTERM'); } catch {}
      const timer = setTimeout(() => { try { process.kill(-child.pid, 'SIGKILL'); } catch {} }, 5000);
      await exited;
      clearTimeout(timer);
    },
  };
  const onData = (chunk) => {
    relay.output += chunk.toString();
    relay.waiters = relay.waiters.filter((w) => !w());
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);
  const died = new Promise((_, reject) => child.once('exit', (code) => reject(new Error(`wrangler exited (${code}):\n${relay.output.slice(-3000)}`))));
  await Promise.race([relay.waitForOutput(/Ready on http/, 1, 120_000), died]);
  died.catch(() => {});
  return relay;
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

  /** The next frame, in arrival order. */
  next(timeoutMs = STEP_TIMEOUT_MS) {
    if (this.frames.length) return Promise.resolve(this.frames.shift());
    if (this.closeInfo) return Promise.reject(new Error(`socket already closed (${this.closeInfo.code}) on ${this.url}`));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting = this.waiting.filter((w) => w.resolve !== done);
        reject(new Error(`no frame within ${timeoutMs} ms on ${this.url}`));
      }, timeoutMs);
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

  closed(timeoutMs = STEP_TIMEOUT_MS) {
    if (this.closeInfo) return Promise.resolve(this.closeInfo);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`not closed within ${timeoutMs} ms: ${this.url}`)), timeoutMs);
      this.closeWaiters.push((info) => { clearTimeout(timer); resolve(info); });
    });
  }

  send(data) { this.socket.send(data); }
  close(code, reason) { this.socket.close(code, reason); }
  terminate() { this.socket.terminate(); }
}

/** Opens a host socket and reads `session:` and `secret:`. */
export async function host(relay, query = '') {
  const peer = new Peer(`${relay.ws}/session${query ? `?${query}` : ''}`);
  await peer.opened;
  const session = await peer.next();
  const secret = await peer.next();
  peer.sid = session.replace(/^session: /, '');
  peer.secret = secret.replace(/^secret: /, '');
  peer.sessionLine = session;
  peer.secretLine = secret;
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
  const line = await hostPeer.next();
  const m = /^connected: (\d+)$/.exec(line);
  if (!m) throw new Error(`expected connected: <n>, host got ${JSON.stringify(line)}`);
  c.id = Number(m[1]);
  return c;
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

/** Asks a host for `/stats`; the parsed figures. */
export async function stats(h) {
  h.send('/stats');
  const line = await h.next();
  if (!/^!stats \{"numHostsOnline":\d+,"numHostsLookingForSession":\d+,"numClientsOnline":\d+,"numPlayers":\d+\}$/.test(line)) {
    throw new Error(`expected !stats, got ${JSON.stringify(line)}`);
  }
  return JSON.parse(line.slice('!stats '.length));
}

/**
 * Asks for `/stats` until `ok` holds: a poll of state the relay only reports
 * (the protocol lets the figures lag up to 5 s), not a sleep as a barrier.
 */
export async function waitForStats(h, ok, timeoutMs = 10_000, everyMs = 100) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    last = await stats(h);
    if (ok(last)) return last;
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`stats never matched: ${JSON.stringify(last)}`);
}
