// A scripted relay in Node: the host/client subset of PROTOCOL.md sections
// 2–3 plus the heartbeat and acknowledged resume of section 7, small enough
// to read in one sitting. It lets the client library's resume logic be tested
// on its own (and cases the Worker cannot be driven into on demand, such as a
// reset that lost the last second: forget()), and serves the page and the
// library from the working tree (public/, client/) for Chromium.
//
// Not the relay: no linking, no limits, no hibernation; the queue for an
// absent host is the host's stream itself.
import { createServer } from 'node:http';
import { randomBytes, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { WebSocketServer } from 'ws';
import { ROOT } from './relay.js';

const EXT = '\u0001';
const STATIC = {
  '/': ['public/index.html', 'text/html; charset=utf-8'],
  '/index.html': ['public/index.html', 'text/html; charset=utf-8'],
  '/app.js': ['public/app.js', 'text/javascript; charset=utf-8'],
  '/style.css': ['public/style.css', 'text/css; charset=utf-8'],
  '/relay-client.js': ['client/relay-client.js', 'text/javascript; charset=utf-8'],
};

/** A stream (7.2): the relay's numbered frames kept until acknowledged, and how many of the socket's it handled. */
function newStream() {
  return { n: 0, kept: [], keptBytes: 0, handled: 0, socket: null };
}

/**
 * Starts the scripted relay on a free loopback port. `windowBytes`: what a
 * stream keeps unacknowledged before the oldest go (256 KiB, as the relay).
 * `log`: every frame in and out, as `[who, dir, text]` (heartbeats aside).
 */
export async function startFakeRelay({ windowBytes = 256 * 1024 } = {}) {
  const sessions = new Map();
  const log = [];
  const http = createServer((req, res) => {
    const file = STATIC[new URL(req.url, 'http://x').pathname];
    if (file) {
      res.writeHead(200, { 'content-type': file[1] });
      res.end(readFileSync(path.join(ROOT, file[0])));
      return;
    }
    res.writeHead(req.url.startsWith('/session') ? 426 : 404, { 'content-type': 'text/plain' });
    res.end(req.url.startsWith('/session') ? 'Upgrade to a WebSocket' : 'Not found');
  });
  const wss = new WebSocketServer({ noServer: true });
  const refuse = (socket, status, body) => {
    socket.end(`HTTP/1.1 ${status} X\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
  };

  /** Numbers `text` on `stream`, keeps it, and sends it if the stream has a socket. */
  function send(stream, text, who) {
    stream.n += 1;
    stream.kept.push({ n: stream.n, text });
    stream.keptBytes += Buffer.byteLength(text);
    while (stream.keptBytes > windowBytes && stream.kept.length) stream.keptBytes -= Buffer.byteLength(stream.kept.shift().text);
    if (stream.socket?.readyState === 1) {
      stream.socket.send(text);
      log.push([who, 'out', text]);
    }
  }
  const raw = (ws, text) => { if (ws.readyState === 1) ws.send(text); };

  /**
   * 7.5, steps 2–3: `␁resume <handled>`, then the frames after `have`, or a
   * gap and `fresh()` (the view listed afresh) when some are gone.
   */
  function resume(ws, stream, have, who, fresh) {
    raw(ws, `${EXT}resume ${stream.handled}`);
    stream.socket = ws;
    if (have >= stream.n) return;
    const first = stream.kept[0]?.n ?? stream.n + 1;
    if (first <= have + 1) {
      for (const f of stream.kept) if (f.n > have) { ws.send(f.text); log.push([who, 'out', f.text]); }
      return;
    }
    raw(ws, `${EXT}gap ${have + 1} ${stream.n}`);
    stream.kept = [];
    stream.keptBytes = 0;
    fresh();
  }

  /** The socket's side of 7.1 and 7.4: pings, acks; true if `text` was an extension line. */
  function extension(ws, stream, text) {
    if (text === `${EXT}ping`) { raw(ws, `${EXT}pong`); return true; }
    if (!text.startsWith(EXT)) return false;
    const m = /^\u0001ack (\d+)$/.exec(text);
    if (m && stream) {
      const n = Number(m[1]);
      while (stream.kept.length && stream.kept[0].n <= n) stream.keptBytes -= Buffer.byteLength(stream.kept.shift().text);
      raw(ws, `${EXT}ack ${stream.handled}`);
    }
    return true;
  }

  function hostConnect(ws, q) {
    let s = q.get('id') && sessions.get(q.get('id'));
    const takeOver = Boolean(s);
    if (!s) {
      s = { sid: q.get('id') || randomUUID(), secret: randomBytes(32).toString('hex'), host: null, hostStream: newStream(), clients: new Map() };
      sessions.set(s.sid, s);
    }
    const resuming = q.get('resume') === '1';
    const old = s.host;
    s.host = ws;
    if (old && old.readyState === 1) old.close(4001, 'taken over');
    if (!resuming || !takeOver) s.hostStream = newStream();
    const stream = resuming ? s.hostStream : null;
    const who = `host ${s.sid.slice(0, 8)}`;
    ws.send(`session: ${s.sid}`);
    ws.send(`secret: ${s.secret}`);
    const connectedLines = () => [...s.clients.values()].filter((c) => c.connected).map((c) => c.id).sort((a, b) => a - b)
      .forEach((id) => send(s.hostStream, `connected: ${id}`, who));
    if (resuming) {
      resume(ws, stream, Number(q.get('have') ?? 0), who, connectedLines);
    } else {
      s.hostStream.socket = ws;
      if (takeOver) connectedLines();
    }
    ws.on('message', (data) => {
      const text = data.toString();
      if (extension(ws, stream, text)) return;
      if (s.host !== ws) return; // a replaced socket's late frames
      if (stream) stream.handled += 1;
      log.push([who, 'in', text]);
      const m = /^(\d+): ([\s\S]*)$/.exec(text);
      const c = m && [...s.clients.values()].find((x) => x.id === Number(m[1]) && x.connected);
      if (c) send(c.stream, m[2], `client ${c.id}`);
      else if (m && m[1] !== '0') send(s.hostStream, `unknown: ${m[1]}`, who);
      else if (text === '/version') send(s.hostStream, '!version 0.0.0-scripted', who);
      else if (!m) send(s.hostStream, 'invalid', who);
    });
    ws.on('close', () => {
      if (s.host === ws) { s.host = null; s.hostStream.socket = null; }
    });
  }

  function clientConnect(ws, s, q) {
    const uuid = q.get('client') || randomUUID();
    const resuming = q.get('resume') === '1';
    let c = s.clients.get(uuid);
    if (!c) {
      const used = new Set([...s.clients.values()].map((x) => x.id));
      let id = 1;
      while (used.has(id)) id++;
      c = { id, uuid, stream: newStream(), socket: null, connected: false };
      s.clients.set(uuid, c);
    } else if (!resuming) {
      c.stream = newStream();
    }
    const hostSay = (text) => send(s.hostStream, text, `host ${s.sid.slice(0, 8)}`);
    const old = c.socket;
    c.socket = ws;
    if (old && old.readyState === 1) {
      old.close(4002, 'replaced');
      if (!resuming) { hostSay(`disconnected: ${c.id}`); c.connected = false; }
    }
    if (!c.connected) { c.connected = true; hostSay(`connected: ${c.id}`); }
    if (resuming) resume(ws, c.stream, Number(q.get('have') ?? 0), `client ${c.id}`, () => {});
    else c.stream.socket = ws;
    ws.on('message', (data) => {
      const text = data.toString();
      if (extension(ws, resuming ? c.stream : null, text)) return;
      if (c.socket !== ws) return;
      if (resuming) c.stream.handled += 1;
      log.push([`client ${c.id}`, 'in', text]);
      hostSay(`${c.id}: ${text}`);
    });
    ws.on('close', () => {
      if (c.socket !== ws) return;
      c.socket = null;
      c.stream.socket = null;
      c.connected = false;
      hostSay(`disconnected: ${c.id}`);
    });
  }

  http.on('upgrade', (req, socket, head) => {
    const u = new URL(req.url, 'http://x');
    const q = u.searchParams;
    if (q.has('have') && !/^\d+$/.test(q.get('have'))) return refuse(socket, 400, 'Invalid parameter have: must be a decimal number');
    if (u.pathname === '/session') {
      const s = q.get('id') && sessions.get(q.get('id'));
      if (q.get('secret') && (!s || s.secret !== q.get('secret'))) return refuse(socket, 404, 'Could not connect to session (not found or invalid secret)');
      if (s && !q.get('secret')) return refuse(socket, 409, 'Session already exists');
      return wss.handleUpgrade(req, socket, head, (ws) => hostConnect(ws, q));
    }
    const m = /^\/session\/([^/]+)$/.exec(u.pathname);
    const s = m && sessions.get(decodeURIComponent(m[1]));
    if (!s) return refuse(socket, 404, 'Session not found');
    if (q.get('resume') === '1' && !q.get('client')) return refuse(socket, 400, 'Invalid parameter resume: needs client=<uuid>');
    return wss.handleUpgrade(req, socket, head, (ws) => clientConnect(ws, s, q));
  });

  await new Promise((resolve) => http.listen(0, '127.0.0.1', resolve));
  const { port } = http.address();
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    ws: `ws://127.0.0.1:${port}`,
    sessions,
    log,
    /**
     * A reset that lost what the streams of session `sid` kept: the next
     * resume that needs those frames gets `␁gap`. `who`: 'host' or a client id.
     */
    forget(sid, who) {
      const s = sessions.get(sid);
      const streams = who === 'host' ? [s.hostStream] : [...s.clients.values()].filter((c) => who === undefined || c.id === who).map((c) => c.stream);
      for (const st of streams) { st.kept = []; st.keptBytes = 0; }
    },
    async stop() {
      for (const ws of wss.clients) ws.terminate();
      await new Promise((resolve) => http.close(resolve));
    },
  };
}
