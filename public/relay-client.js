// Askutron Relay — a small client library for the browser (and Node 22+).
// ES module, no dependencies, no build step:
//
//   import { RelayHost, RelayClient } from '/relay-client.js';
//
// RelayHost opens /session, RelayClient opens /session/<sid>. Both extend
// EventTarget and dispatch CustomEvents whose `detail` carries the data.
// The wire protocol is described on the relay's own page (GET /).

/** Close codes the relay uses (PROTOCOL.md). */
export const CLOSE = Object.freeze({
  UNSUPPORTED_DATA: 1003, // binary frame
  TOO_BIG: 1009, // frame over 1 MiB
  HOST_UNAVAILABLE: 1013, // queue for an absent host is full
  TAKEN_OVER: 4001,
  REPLACED: 4002,
  SESSION_FULL: 4003,
  SESSION_CLOSED: 4004,
});

/** Close code this library uses for `drop()` (a simulated network loss). */
export const CLOSE_DROPPED = 4000;

const BACKOFF = { initialDelayMs: 500, maxDelayMs: 30_000, factor: 2, giveUpAfterMs: 150_000 };

/** ws:// or wss:// origin of the page this script runs on. */
export function relayBase(loc = globalThis.location) {
  if (!loc || !loc.host) throw new Error('no page location: pass { base: "wss://relay.example.com" }');
  return `${loc.protocol === 'https:' ? 'wss:' : 'ws:'}//${loc.host}`;
}

/** A random v4 UUID (crypto.randomUUID where available, e.g. on http://LAN pages it is not). */
export function newUuid() {
  if (typeof globalThis.crypto?.randomUUID === 'function') return globalThis.crypto.randomUUID();
  const b = globalThis.crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/**
 * Classifies one relay → host frame. Returns `{ kind, ... }` with kind one of
 * keepalive, session, secret, connected, disconnected, message, unknown,
 * invalid, added-slave, set-master, master-left, slave-left, stats, version,
 * other.
 */
export function parseHostFrame(text, keepAlive) {
  let m;
  if (keepAlive != null && keepAlive !== '' && text === keepAlive) return { kind: 'keepalive', text };
  if ((m = /^(\d+): ([\s\S]*)$/.exec(text))) return { kind: 'message', client: Number(m[1]), text: m[2] };
  if ((m = /^session: (.+)$/.exec(text))) return { kind: 'session', sid: m[1] };
  if ((m = /^secret: (.+)$/.exec(text))) return { kind: 'secret', secret: m[1] };
  if ((m = /^connected: (\d+)$/.exec(text))) return { kind: 'connected', client: Number(m[1]) };
  if ((m = /^disconnected: (\d+)$/.exec(text))) return { kind: 'disconnected', client: Number(m[1]) };
  if ((m = /^unknown: (\d+)$/.exec(text))) return { kind: 'unknown', client: Number(m[1]) };
  if (text === 'invalid') return { kind: 'invalid' };
  if ((m = /^!added-slave: (.+)$/.exec(text))) return { kind: 'added-slave', sid: m[1] };
  if ((m = /^!set-master: (.+)$/.exec(text))) return { kind: 'set-master', sid: m[1] };
  if (text === '!master-left') return { kind: 'master-left' };
  if ((m = /^!slave-left: (.+)$/.exec(text))) return { kind: 'slave-left', sid: m[1] };
  if ((m = /^!stats (.*)$/s.exec(text))) {
    try { return { kind: 'stats', stats: JSON.parse(m[1]) }; } catch { return { kind: 'other', text }; }
  }
  if ((m = /^!version (.+)$/.exec(text))) return { kind: 'version', version: m[1] };
  return { kind: 'other', text };
}

function readStorage(key) {
  try { return globalThis.localStorage?.getItem(key) ?? null; } catch { return null; }
}
function writeStorage(key, value) {
  try { globalThis.localStorage?.setItem(key, value); } catch { /* private mode, sandbox */ }
}

/** Socket life cycle and back-off shared by hosts and clients. */
class Connection extends EventTarget {
  constructor(opts = {}) {
    super();
    this.options = { autoReconnect: true, ...BACKOFF, ...opts };
    this.base = opts.base ?? relayBase();
    this.keepAlive = opts.keepAlive || null;
    this.state = 'closed';
    this._ws = null;
    this._timer = null;
    this._attempt = 0;
    this._dropAt = null;
    this._userClosed = false;
  }

  _emit(type, detail = {}) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  _setState(state, extra = {}) {
    this.state = state;
    this._emit('state', { state, ...extra });
  }

  /** Opens the socket (again). Returns `this`. */
  connect() {
    if (this._ws || this._timer) return this;
    this._userClosed = false;
    this._attempt = 0;
    this._dropAt = null;
    this._open();
    return this;
  }

  _open() {
    this._timer = null;
    const url = this._url();
    this._setState('connecting', { url, attempt: this._attempt });
    let ws;
    try {
      ws = new WebSocket(url);
    } catch (e) {
      this._setState('closed', { code: 0, reason: String(e.message || e), willReconnect: false });
      return;
    }
    this._ws = ws;
    let opened = false;
    ws.onopen = () => {
      if (this._ws !== ws) return;
      opened = true;
      this._attempt = 0;
      this._dropAt = null;
      this._onOpen();
      this._setState('open', { url });
    };
    ws.onmessage = (e) => {
      if (this._ws !== ws || typeof e.data !== 'string') return;
      this._receive(e.data);
    };
    ws.onerror = () => { /* a close event follows */ };
    ws.onclose = (e) => {
      if (this._ws !== ws) return;
      this._ws = null;
      this._closed(e.code, e.reason, opened);
    };
  }

  _closed(code, reason, opened) {
    let retry = !this._userClosed && this.options.autoReconnect && this._mayRetry(code, opened);
    if (retry) {
      this._dropAt ??= Date.now();
      if (Date.now() - this._dropAt > this.options.giveUpAfterMs) retry = false;
    }
    if (!retry) {
      if (!opened && !reason && !this._userClosed) reason = 'connection refused or failed';
      this._setState('closed', { code, reason, willReconnect: false });
      return;
    }
    const { initialDelayMs, factor, maxDelayMs } = this.options;
    const base = Math.min(maxDelayMs, initialDelayMs * factor ** this._attempt);
    const delay = Math.round(base * (0.8 + Math.random() * 0.4));
    this._attempt += 1;
    this._timer = setTimeout(() => this._open(), delay);
    this._setState('closed', { code, reason, willReconnect: true, retryInMs: delay, attempt: this._attempt });
  }

  /** True while a socket is open or opening, or a reconnect is scheduled. */
  get active() {
    return Boolean(this._ws || this._timer);
  }

  _sendRaw(text) {
    if (!this._ws || this._ws.readyState !== 1) throw new Error(`not connected (${this.state})`);
    this._ws.send(text);
    this._emit('frame', { dir: 'out', text, time: new Date(), kind: 'out' });
  }

  /** Closes for good: no reconnect. */
  close(code = 1000, reason = 'closed by user') {
    this._userClosed = true;
    if (this._timer) {
      clearTimeout(this._timer);
      this._timer = null;
      this._setState('closed', { code, reason, willReconnect: false });
    }
    if (this._ws) {
      this._ws.close(code, reason);
      this._setState('closing', { code, reason });
    }
  }

  /**
   * For trying things out: drops the socket as a network failure would, and
   * lets the automatic reconnect (or take-over) do its work.
   */
  drop() {
    const ws = this._ws;
    if (!ws) return;
    this._ws = null;
    try { ws.close(CLOSE_DROPPED, 'dropped'); } catch { /* already closing */ }
    this._closed(CLOSE_DROPPED, 'dropped', true);
  }
}

/**
 * The host side: `new RelayHost({ id, secret, keepAlive, reconnect }).connect()`.
 *
 * Events (detail): session {sid, takeOver}, secret {secret}, connected {client},
 * disconnected {client}, message {client, text}, unknown {client}, invalid {},
 * linked {role, sid}, unlinked {role, sid}, stats (the parsed JSON),
 * version {version}, keepalive {text}, state {state, code, reason, ...},
 * frame {dir, text, time, kind}.
 *
 * After an unexpected drop the host takes its session over again with the
 * stored id + secret (exponential back-off), unless it was closed by the user,
 * taken over elsewhere (4001), or opened with reconnect: false.
 */
export class RelayHost extends Connection {
  constructor(opts = {}) {
    super(opts);
    if (opts.secret && !opts.id) throw new Error('a secret needs the id of the session to take over');
    this.reconnect = opts.reconnect ?? true;
    this.sid = opts.id || null;
    this.secret = opts.secret || null;
    this.clients = new Set();
    this.master = null;
    this.slaves = new Set();
    this._hadSession = false;
  }

  _url() {
    const q = new URLSearchParams();
    if (this.sid) q.set('id', this.sid);
    if (this.secret) q.set('secret', this.secret);
    if (this.keepAlive) q.set('keepAlive', this.keepAlive);
    if (this.options.reconnect !== undefined) q.set('reconnect', String(this.reconnect));
    const qs = q.toString();
    return `${this.base}/session${qs ? `?${qs}` : ''}`;
  }

  _onOpen() {
    this.clients.clear();
  }

  _mayRetry(code, opened) {
    if (code === CLOSE.TAKEN_OVER) return false;
    if (this.reconnect === false) return false; // the session ended with the socket
    if (!this.secret || !this._hadSession) return false; // nothing to take over
    return opened || this._attempt > 0;
  }

  _receive(text) {
    const f = parseHostFrame(text, this.keepAlive);
    this._emit('frame', { dir: 'in', text, time: new Date(), kind: f.kind });
    switch (f.kind) {
      case 'keepalive': return this._emit('keepalive', { text });
      case 'session': {
        const takeOver = this.secret !== null && this.sid === f.sid;
        this.sid = f.sid;
        this._hadSession = true;
        return this._emit('session', { sid: f.sid, takeOver });
      }
      case 'secret': this.secret = f.secret; return this._emit('secret', { secret: f.secret });
      case 'connected': this.clients.add(f.client); return this._emit('connected', { client: f.client });
      case 'disconnected': this.clients.delete(f.client); return this._emit('disconnected', { client: f.client });
      case 'message': return this._emit('message', { client: f.client, text: f.text });
      case 'unknown': return this._emit('unknown', { client: f.client });
      case 'invalid': return this._emit('invalid', {});
      case 'added-slave': this.slaves.add(f.sid); return this._emit('linked', { role: 'master', sid: f.sid });
      case 'set-master': this.master = f.sid; return this._emit('linked', { role: 'slave', sid: f.sid });
      case 'master-left': {
        const sid = this.master;
        this.master = null;
        return this._emit('unlinked', { role: 'slave', sid });
      }
      case 'slave-left': this.slaves.delete(f.sid); return this._emit('unlinked', { role: 'master', sid: f.sid });
      case 'stats': return this._emit('stats', f.stats);
      case 'version': return this._emit('version', { version: f.version });
      default: return undefined;
    }
  }

  /** `<n>: <text>` — to client n (0: to the linked hosts). */
  send(clientId, text) {
    if (!Number.isInteger(clientId) || clientId < 0) throw new Error(`bad client id ${clientId}`);
    this._sendRaw(`${clientId}: ${text}`);
  }

  /** `0: <text>` — to the hosts of the linked sessions. */
  broadcast(text) {
    this._sendRaw(`0: ${text}`);
  }

  /** Sends one raw line: `/stats`, `/join-session master`, `1: hi`, … */
  command(line) {
    this._sendRaw(line);
  }
}

/**
 * The client side: `new RelayClient(sid, { uuid, storageKey, keepAlive }).connect()`.
 *
 * Keeps a stable uuid (given, read from localStorage[storageKey], or made with
 * crypto.randomUUID and stored there) and passes it as `client=`, so a
 * reconnect gets the same client id back. Reconnects with back-off after
 * unexpected drops; not after 4002 replaced, 4003 session full, 4004 session
 * closed, 1003/1009, or a first connection that failed (e.g. 404).
 *
 * Events (detail): message {text}, keepalive {text}, state {...}, frame {...}.
 */
export class RelayClient extends Connection {
  constructor(sid, opts = {}) {
    super(opts);
    if (!sid) throw new Error('a session id is needed');
    this.sid = sid;
    this._everOpened = false;
    if (opts.uuid === false) {
      this.uuid = null;
    } else {
      this.uuid = opts.uuid || (opts.storageKey && readStorage(opts.storageKey)) || newUuid();
      if (opts.storageKey) writeStorage(opts.storageKey, this.uuid);
    }
  }

  _url() {
    const q = new URLSearchParams();
    if (this.keepAlive) q.set('keepAlive', this.keepAlive);
    if (this.uuid) q.set('client', this.uuid);
    const qs = q.toString();
    return `${this.base}/session/${encodeURIComponent(this.sid)}${qs ? `?${qs}` : ''}`;
  }

  _onOpen() {
    this._everOpened = true;
  }

  _mayRetry(code) {
    if (!this._everOpened) return false;
    return ![CLOSE.REPLACED, CLOSE.SESSION_FULL, CLOSE.SESSION_CLOSED, CLOSE.UNSUPPORTED_DATA, CLOSE.TOO_BIG].includes(code);
  }

  _receive(text) {
    const keepalive = this.keepAlive && text === this.keepAlive;
    this._emit('frame', { dir: 'in', text, time: new Date(), kind: keepalive ? 'keepalive' : 'message' });
    this._emit(keepalive ? 'keepalive' : 'message', { text });
  }

  /** Sends a frame to the host (bare text, no prefix). */
  send(text) {
    this._sendRaw(text);
  }
}
