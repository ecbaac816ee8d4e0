// relay-client: the JavaScript client of Askutron Relay, for browsers and Node 22+.
// ES module, no dependencies, no build step. Types: relay-client.d.ts.
// Documentation: README.md beside this file (API, options, close-code policy).
//
//   import { RelayHost, RelayClient } from 'relay-client';      // package
//   import { RelayHost, RelayClient } from '/relay-client.js';  // served by the relay
//
// RelayHost opens /session, RelayClient opens /session/<sid>. Both extend
// EventTarget and dispatch CustomEvents whose `detail` carries the data.

/** Close codes the relay uses, plus the standard ones the library acts on. */
export const CLOSE = Object.freeze({
  NORMAL: 1000,
  GOING_AWAY: 1001,
  UNSUPPORTED_DATA: 1003, // binary frame
  ABNORMAL: 1006, // no close frame: network loss, refused upgrade
  RATE_LIMITED: 1008, // rate limit exceeded
  TOO_BIG: 1009, // frame over 1 MiB
  HOST_UNAVAILABLE: 1013, // the queue for an absent host is full
  TAKEN_OVER: 4001,
  REPLACED: 4002,
  SESSION_FULL: 4003,
  SESSION_CLOSED: 4004,
});

/** Close code the library itself uses when it lets a socket go (drop(), timeouts). */
export const CLOSE_DROPPED = 4000;

/** Largest text frame the relay accepts (bytes of UTF-8); larger ones close the sender with 1009. */
export const MAX_FRAME_BYTES = 1 << 20;
/** Longest keepAlive text the relay accepts (bytes); longer ones are refused with HTTP 400. */
export const MAX_KEEP_ALIVE_BYTES = 256;
/** The text the relay sends a client before closing it with 4003. */
export const NO_SLOTS_TEXT = 'error: no slots available, max clients reached';

/**
 * What the library does after each close code, per role. `retry: true` means
 * reconnect with back-off (a host takes its session over with id + secret);
 * `retry: false` ends in the final state `closed` with `error` set.
 * Codes not listed (1001, 1006, 1011, 1012, 1014, …) are retried.
 */
export const CLOSE_POLICY = Object.freeze({
  1000: { retry: true, why: 'normal closure from the other side (the relay itself never sends 1000)' },
  1001: { retry: true, why: 'the other side is going away (relay restart or deploy)' },
  1003: { retry: false, why: 'the relay refused a binary frame this side sent' },
  1006: { retry: true, why: 'connection lost without a close frame' },
  1008: { retry: false, why: 'too many frames: reconnecting at once would hit the rate limit again' },
  1009: { retry: false, why: 'the relay refused a frame over 1 MiB this side sent' },
  1013: { retry: true, why: 'the queue for the absent host is full; the frame that hit the limit and any sent after it on that socket were not delivered' },
  4001: { retry: false, why: 'another connection took this session over' },
  4002: { retry: false, why: 'another socket with the same client uuid replaced this one' },
  4003: { retry: false, why: 'no client id is free in this session' },
  4004: { retry: false, why: 'the session ended' },
});

/** `{ retry, why }` for a close code (see CLOSE_POLICY). */
export function closePolicy(code) {
  return CLOSE_POLICY[code] ?? { retry: true, why: `closed with ${code}` };
}

const DEFAULTS = Object.freeze({
  autoReconnect: true,
  connectTimeoutMs: 10_000,
  maxRetries: 10,
  giveUpAfterMs: 150_000,
  initialDelayMs: 500,
  maxDelayMs: 30_000,
  factor: 2,
  jitter: 0.5,
  maxBufferedMessages: 100,
  maxBufferedBytes: 256 * 1024,
  takeOverTimeoutMs: 5_000,
  closeEventTimeoutMs: 15_000,
});

const POLL_MS = 25;
const encoder = new TextEncoder();
const utf8Length = (s) => encoder.encode(s).length;

/** An Error with a `code` string (and optionally `closeCode`, `status`). */
export class RelayError extends Error {
  constructor(code, message, extra = {}) {
    super(message);
    this.name = 'RelayError';
    this.code = code;
    Object.assign(this, extra);
  }
}

/** ws:// or wss:// origin for a base URL (ws, wss, http or https), or for the page this script runs on. */
export function relayBase(base, loc = globalThis.location) {
  if (base) {
    const u = new URL(base);
    const proto = { 'http:': 'ws:', 'https:': 'wss:', 'ws:': 'ws:', 'wss:': 'wss:' }[u.protocol];
    if (!proto) throw new TypeError(`base must be a ws:, wss:, http: or https: URL, not ${base}`);
    return `${proto}//${u.host}${u.pathname.replace(/\/+$/, '')}`;
  }
  if (!loc || !loc.host) throw new TypeError('no page location: pass { base: "wss://relay.example.com" }');
  return `${loc.protocol === 'https:' ? 'wss:' : 'ws:'}//${loc.host}`;
}

/** The URL with its `secret` parameter hidden, for logs and events. */
export function redactUrl(url) {
  return url.replace(/([?&]secret=)[^&]*/, '$1***');
}

/** A random v4 UUID (crypto.randomUUID where available; on plain http://LAN pages it is not). */
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

/**
 * Socket life cycle shared by hosts and clients: connect timeout, back-off
 * with jitter, bounded send buffer, close-code policy, close-frame detection
 * and make-before-break socket switches.
 *
 * States: idle → connecting → open → (closing) → reconnecting → connecting …
 * and finally `closed` (no more reconnects; `connect()` starts again).
 */
class Connection extends EventTarget {
  constructor(opts = {}) {
    super();
    this.options = { ...DEFAULTS };
    for (const [k, v] of Object.entries(opts)) if (v !== undefined && k in DEFAULTS) this.options[k] = v;
    this.base = relayBase(opts.base ?? opts.url);
    this.WebSocket = opts.WebSocket ?? globalThis.WebSocket;
    if (typeof this.WebSocket !== 'function') {
      throw new TypeError('no WebSocket constructor: pass { WebSocket } (e.g. from the "ws" package)');
    }
    this.keepAlive = opts.keepAlive || null;
    if (this.keepAlive && utf8Length(this.keepAlive) > MAX_KEEP_ALIVE_BYTES) {
      throw new RangeError(`keepAlive must be at most ${MAX_KEEP_ALIVE_BYTES} bytes`);
    }
    /** @type {'idle'|'connecting'|'open'|'closing'|'reconnecting'|'closed'} */
    this.state = 'idle';
    this._sock = null; // the current socket record
    this._old = null; // a socket being let go in a switch (drop())
    this._held = []; // frames of the new socket held until the old one is done
    this._timer = null; // back-off timer
    this._poll = null;
    this._attempt = 0; // failed attempts since the last open
    this._lostAt = null;
    this._everOpened = false;
    this._userClosed = false;
    this._queue = [];
    this._queueBytes = 0;
  }

  /** The WebSocket in use, for diagnostics (undefined between sockets). */
  get socket() {
    return this._sock?.ws;
  }

  /** True while a socket is open or opening, or a reconnect is scheduled. */
  get active() {
    return ['connecting', 'open', 'closing', 'reconnecting'].includes(this.state);
  }

  /** Sends waiting for a socket. */
  get buffered() {
    return this._queue.length;
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
    if (this.active) return this;
    this._userClosed = false;
    this._attempt = 0;
    this._lostAt = null;
    this._everOpened = false;
    this._open();
    return this;
  }

  _open(extra = {}) {
    this._timer = null;
    const url = this._url();
    const sock = { ws: null, url, opened: false, done: false, relayClosing: false, expected: null, lastText: null, timer: null };
    this._sock = sock;
    this._setState('connecting', { url: redactUrl(url), attempt: this._attempt, ...extra });
    let ws;
    try {
      ws = new this.WebSocket(url);
    } catch (e) {
      this._sock = null;
      this._final(0, '', new RelayError('connect-failed', `cannot open ${redactUrl(url)}: ${e.message || e}`));
      return;
    }
    sock.ws = ws;
    sock.timer = setTimeout(() => {
      if (sock.opened || sock.done) return;
      this._socketGone(sock, CLOSE.ABNORMAL, '', `connect timeout (${this.options.connectTimeoutMs} ms)`);
      try { ws.close(); } catch { /* not yet open */ }
    }, this.options.connectTimeoutMs);
    ws.onopen = () => {
      if (sock.done) return;
      clearTimeout(sock.timer);
      sock.opened = true;
      if (sock !== this._sock) return;
      this._attempt = 0;
      this._lostAt = null;
      this._everOpened = true;
      this._startPoll();
      this._onOpen(sock);
      this._setState('open', { url: redactUrl(url), ...extra });
      this._flush();
    };
    ws.onmessage = (e) => {
      if (sock.done || typeof e.data !== 'string') return;
      sock.lastText = e.data;
      if (sock === this._sock && this._old) {
        this._checkClosing(this._old);
        if (this._old) { this._held.push(e.data); return; }
      }
      this._receive(e.data);
    };
    ws.onerror = (e) => {
      // Before the upgrade, Node's WebSocket fires `error` and never `close`.
      if (sock.done || sock.opened) return;
      this._socketGone(sock, CLOSE.ABNORMAL, '', e?.message || e?.error?.message || '');
      try { ws.close(); } catch { /* already failed */ }
    };
    ws.onclose = (e) => {
      if (sock.done) return;
      this._socketGone(sock, e.code, e.reason, '');
    };
  }

  _startPoll() {
    if (this._poll) return;
    this._poll = setInterval(() => {
      if (this._old) this._checkClosing(this._old);
      if (this._sock) this._checkClosing(this._sock);
      if (!this._old && !this._sock) { clearInterval(this._poll); this._poll = null; }
    }, POLL_MS);
    this._poll.unref?.();
  }

  /**
   * The relay's close frame puts the socket in CLOSING at once, while the
   * runtime's close event (with the code) waits for TCP to end: about 2 s in
   * Chromium, up to 10 s in Node, because workerd keeps TCP open.
   */
  _checkClosing(sock) {
    if (sock.done || !sock.opened || sock.relayClosing) return;
    // CLOSED (3) comes with the close event itself, which carries the code.
    if (sock.ws.readyState !== 2) return;
    sock.relayClosing = true;
    if (sock === this._old) return this._oldDone();
    if (!sock.expected && sock.lastText === NO_SLOTS_TEXT) sock.expected = { code: CLOSE.SESSION_FULL, reason: 'session full' };
    if (sock.expected) return this._socketGone(sock, sock.expected.code, sock.expected.reason, '');
    sock.timer = setTimeout(() => this._socketGone(sock, CLOSE.ABNORMAL, '', 'no close event after the close frame'), this.options.closeEventTimeoutMs);
    this._setState('closing', { code: null, reason: null, byRelay: true });
  }

  /** A socket ended (close event, error before open, timeout, or known close frame). */
  _socketGone(sock, code, reason, detail) {
    if (sock.done) return;
    sock.done = true;
    clearTimeout(sock.timer);
    if (sock === this._old) return this._oldDone();
    if (sock !== this._sock) return;
    this._sock = null;
    if (this._old && !sock.opened) {
      // A switch whose new socket failed: keep the old one if it still works.
      const old = this._old;
      if (!old.done && !old.relayClosing && old.ws.readyState === 1) {
        clearTimeout(old.timer);
        this._old = null;
        this._sock = old;
        this._emit('error', { code: 'switch-failed', message: `could not open a new socket${detail ? `: ${detail}` : ''}; kept the old one` });
        this._setState('open', { url: redactUrl(old.url) });
        this._flush();
        return;
      }
      this._oldDone();
    }
    this._closed(code, reason, sock.opened, detail);
  }

  _oldDone() {
    const old = this._old;
    if (!old) return;
    this._old = null;
    clearTimeout(old.timer);
    if (!old.done) {
      old.done = true;
      try { old.ws.close(CLOSE_DROPPED, 'dropped'); } catch { /* closing */ }
    }
    const held = this._held;
    this._held = [];
    for (const text of held) this._receive(text);
  }

  _closed(code, reason, opened, detail) {
    let policy = closePolicy(code);
    let retry = !this._userClosed && this.options.autoReconnect && policy.retry && this._mayRetry(code);
    let error = null;
    if (!opened && !this._everOpened) {
      // The very first connection failed: a refused upgrade (404 for a missing
      // session, 409, 400) looks exactly like this in browsers. No retry.
      retry = false;
      error = new RelayError('connect-failed',
        `could not connect to ${redactUrl(this._url())}${detail ? ` (${detail})` : ''}: the relay refused the upgrade ` +
        `(e.g. 404 session not found, 409 session already exists, 400 bad parameter) or cannot be reached`);
    }
    if (retry) {
      this._lostAt ??= Date.now();
      if (this._attempt >= this.options.maxRetries) {
        retry = false;
        error = new RelayError('gave-up', `gave up after ${this._attempt} failed reconnect attempts (maxRetries)`);
      } else if (Date.now() - this._lostAt > this.options.giveUpAfterMs) {
        retry = false;
        error = new RelayError('gave-up', `gave up: no connection for ${this.options.giveUpAfterMs} ms (giveUpAfterMs)`);
      }
    }
    if (!retry) {
      if (!error && !this._userClosed) {
        error = policy.retry
          ? new RelayError('closed', `closed with ${code}${reason ? ` ${reason}` : ''}: ${this._whyNoRetry(code)}`, { closeCode: code })
          : new RelayError('closed', `closed by the relay with ${code}${reason ? ` ${reason}` : ''}: ${policy.why}`, { closeCode: code });
      }
      this._final(code, reason, error);
      return;
    }
    const { initialDelayMs, factor, maxDelayMs, jitter } = this.options;
    const base = Math.min(maxDelayMs, initialDelayMs * factor ** this._attempt);
    const delay = Math.round(base * (1 - jitter * Math.random()));
    this._attempt += 1;
    this._timer = setTimeout(() => this._open(), delay);
    this._setState('reconnecting', { code, reason, retryInMs: delay, attempt: this._attempt, ...(detail ? { detail } : {}) });
  }

  _whyNoRetry(code) {
    if (!this.options.autoReconnect) return 'autoReconnect is off';
    return `${code} is not retried here`;
  }

  /** Final state: no reconnect. Reports the sends that never left. */
  _final(code, reason, error) {
    clearTimeout(this._timer);
    this._timer = null;
    const unsent = this._queue;
    this._queue = [];
    this._queueBytes = 0;
    this._onFinal();
    const detail = { code, reason, willReconnect: false, unsent };
    if (error) {
      detail.error = error.message;
      detail.errorCode = error.code;
      this._emit('error', { code: error.code, message: error.message, closeCode: code });
    }
    this._setState('closed', detail);
  }

  _onFinal() {}

  /**
   * Sends `text` now if open; while connecting, reconnecting or closing it is
   * buffered (bounded) and flushed in order once a socket is open. Returns
   * true if sent now, false if buffered. Throws when not connected at all,
   * when the buffer is full, or for a frame over 1 MiB.
   */
  _sendFrame(text) {
    if (typeof text !== 'string') throw new TypeError('the relay takes text frames only (binary closes the socket with 1003)');
    const bytes = utf8Length(text);
    if (bytes > MAX_FRAME_BYTES) throw new RelayError('too-big', `frame of ${bytes} bytes is over the relay's limit of ${MAX_FRAME_BYTES} (1009)`);
    const sock = this._sock;
    if (sock) this._checkClosing(sock);
    if (this.state === 'open' && this._sock?.ws.readyState === 1) {
      this._sock.ws.send(text);
      this._emit('frame', { dir: 'out', text, time: new Date(), kind: 'out' });
      return true;
    }
    if (!this.active) throw new RelayError('not-connected', `not connected (${this.state})`);
    const { maxBufferedMessages, maxBufferedBytes } = this.options;
    if (this._queue.length + 1 > maxBufferedMessages || this._queueBytes + bytes > maxBufferedBytes) {
      throw new RelayError('buffer-full', `send buffer full (${this._queue.length} messages, ${this._queueBytes} bytes) while ${this.state}`);
    }
    this._queue.push(text);
    this._queueBytes += bytes;
    this._emit('frame', { dir: 'out', text, time: new Date(), kind: 'buffered' });
    return false;
  }

  _flush() {
    while (this._queue.length && this.state === 'open' && this._sock?.ws.readyState === 1) {
      const text = this._queue.shift();
      this._queueBytes -= utf8Length(text);
      this._sock.ws.send(text);
      this._emit('frame', { dir: 'out', text, time: new Date(), kind: 'flushed' });
    }
  }

  /** Closes for good: no reconnect. The state is `closed` at once. */
  close(code = 1000, reason = 'closed by user') {
    this._userClosed = true;
    for (const sock of [this._sock, this._old]) {
      if (!sock || sock.done) continue;
      sock.done = true;
      clearTimeout(sock.timer);
      try { sock.ws.close(code, reason); } catch { /* closing already */ }
    }
    this._sock = null;
    this._old = null;
    this._held = [];
    if (this.state !== 'closed' && this.state !== 'idle') this._final(code, reason, null);
  }

  /**
   * Moves to a fresh socket without losing frames (make before break): the
   * new socket is opened first (a host takes its session over with id +
   * secret, a client reconnects with its uuid), the relay then closes the old
   * one (4001 / 4002), and the old socket is read until that close frame.
   * Frames of the new socket are held until then, so the relay's order is
   * kept. Returns false if there is nothing to switch.
   */
  drop() {
    const cur = this._sock;
    if (!cur || !cur.opened || cur.relayClosing || this._old || this.state !== 'open') return false;
    const expected = this._switchCode();
    if (!expected) {
      // Nothing can replace this socket at the relay: let it go and reconnect.
      cur.done = true;
      this._sock = null;
      try { cur.ws.close(CLOSE_DROPPED, 'dropped'); } catch { /* closing */ }
      this._closed(CLOSE_DROPPED, 'dropped', true, '');
      return true;
    }
    cur.expected = expected;
    this._old = cur;
    this._sock = null;
    cur.timer = setTimeout(() => this._oldDone(), this.options.takeOverTimeoutMs);
    this._open({ switching: true });
    return true;
  }
}

/**
 * The host side: `new RelayHost({ base, id, secret, keepAlive, reconnect }).connect()`.
 *
 * Events (detail): session {sid, takeOver}, secret {secret}, connected {client},
 * disconnected {client}, message {client, text}, unknown {client}, invalid {},
 * linked {role, sid}, unlinked {role, sid}, stats (the parsed JSON),
 * version {version}, keepalive {text}, state {state, …}, frame {dir, text, time, kind},
 * error {code, message, closeCode}.
 */
export class RelayHost extends Connection {
  constructor(opts = {}) {
    super(opts);
    if (opts.secret && !opts.id) throw new TypeError('a secret needs the id of the session to take over');
    this.reconnect = opts.reconnect ?? true;
    this._sendReconnect = opts.reconnect !== undefined;
    this.sid = opts.id || null;
    this.secret = opts.secret || null;
    /** Client ids this host may address (own and, when master, its slaves' translated ids). */
    this.clients = new Set();
    this.master = null;
    this.slaves = new Set();
  }

  _url() {
    const q = new URLSearchParams();
    if (this.sid) q.set('id', this.sid);
    if (this.secret) q.set('secret', this.secret);
    if (this.keepAlive) q.set('keepAlive', this.keepAlive);
    if (this._sendReconnect) q.set('reconnect', String(this.reconnect));
    const qs = q.toString();
    return `${this.base}/session${qs ? `?${qs}` : ''}`;
  }

  _onOpen() {}

  _onFinal() {
    this.clients.clear();
    this.master = null;
    this.slaves.clear();
  }

  _mayRetry(code) {
    if (code === CLOSE.TAKEN_OVER) return false;
    if (this.reconnect === false) return false; // the session ended with the socket
    return Boolean(this.sid && this.secret); // something to take over
  }

  _switchCode() {
    return this.sid && this.secret && this.reconnect !== false ? { code: CLOSE.TAKEN_OVER, reason: 'taken over' } : null;
  }

  _whyNoRetry(code) {
    if (this.reconnect === false) return 'the session ended with the socket (reconnect: false)';
    if (!this.secret) return 'no secret yet, nothing to take over';
    return super._whyNoRetry(code);
  }

  _receive(text) {
    const f = parseHostFrame(text, this.keepAlive);
    this._emit('frame', { dir: 'in', text, time: new Date(), kind: f.kind });
    switch (f.kind) {
      case 'keepalive': return this._emit('keepalive', { text });
      case 'session': {
        const takeOver = this.secret !== null && this.sid === f.sid;
        this.sid = f.sid;
        if (takeOver) this.clients.clear(); // the relay lists them again
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

  /** `<n>: <text>` to client n (0: to the linked hosts). See command() for the return value. */
  send(clientId, text) {
    if (!Number.isInteger(clientId) || clientId < 0) throw new TypeError(`bad client id ${clientId}`);
    return this._sendFrame(`${clientId}: ${text}`);
  }

  /** `0: <text>` to the hosts of the linked sessions. */
  broadcast(text) {
    return this._sendFrame(`0: ${text}`);
  }

  /**
   * Sends one raw line: `/stats`, `/join-session master`, `1: hi`, …
   * `/leave-session` also ends this host's own view of its links at once
   * (the relay tells the other sides, not the one that leaves).
   * Returns true if sent now, false if buffered until a socket is open.
   */
  command(line) {
    const sent = this._sendFrame(line);
    if (line === '/leave-session') this._leftLinks();
    return sent;
  }

  /** `/leave-session`. */
  leave() {
    return this.command('/leave-session');
  }

  _leftLinks() {
    if (this.master) {
      const sid = this.master;
      this.master = null;
      this._emit('unlinked', { role: 'slave', sid, self: true });
    }
    for (const sid of [...this.slaves]) {
      this.slaves.delete(sid);
      this._emit('unlinked', { role: 'master', sid, self: true });
    }
  }
}

/**
 * The client side: `new RelayClient(sid, { base, uuid, storageKey, keepAlive }).connect()`.
 *
 * Keeps a stable uuid (given, read from localStorage[storageKey], or made with
 * crypto.randomUUID and stored there) and passes it as `client=`, so a
 * reconnect gets the same client id back. `uuid: false` sends none.
 *
 * Events (detail): message {text}, keepalive {text}, state {…}, frame {…}, error {…}.
 */
export class RelayClient extends Connection {
  constructor(sid, opts = {}) {
    super(opts);
    if (!sid) throw new TypeError('a session id is needed');
    this.sid = sid;
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

  _onOpen() {}

  _mayRetry() {
    return true;
  }

  _switchCode() {
    return this.uuid ? { code: CLOSE.REPLACED, reason: 'replaced' } : null;
  }

  _receive(text) {
    const keepalive = Boolean(this.keepAlive) && text === this.keepAlive;
    this._emit('frame', { dir: 'in', text, time: new Date(), kind: keepalive ? 'keepalive' : 'message' });
    this._emit(keepalive ? 'keepalive' : 'message', { text });
  }

  /** Sends a frame to the host (bare text, no prefix). True if sent now, false if buffered. */
  send(text) {
    return this._sendFrame(text);
  }
}
