// relay-client: the JavaScript client of Askutron Relay, for browsers and Node 22+.
// ES module, no dependencies, no build step. Types: relay-client.d.ts.
// Documentation: README.md beside this file (API, options, close-code policy).
//
//   import { RelayHost, RelayClient } from 'relay-client';      // package
//   import { RelayHost, RelayClient } from '/relay-client.js';  // served by the relay
//
// RelayHost opens /session, RelayClient opens /session/<sid>. Both extend
// EventTarget and dispatch CustomEvents whose `detail` carries the data.
// Unless `resume: false`, both use the heartbeat and acknowledged resume of
// PROTOCOL.md section 7: a connection that dies silently is found within
// seconds and resumed with nothing lost and nothing doubled (or a `gap` event
// says what is gone for good).

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
  NO_HEARTBEAT: 4005, // a resume socket that sent no heartbeat for 30 s (PROTOCOL.md 7.1)
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
  4005: { retry: true, why: 'the relay heard no heartbeat for 30 s and counted this socket dead; resume on a new one' },
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
  // Heartbeat and acknowledged resume (PROTOCOL.md section 7), when `resume` is on.
  heartbeatIntervalMs: 3_000,
  heartbeatTimeoutMs: 6_000,
  ackIntervalMs: 1_000,
  resumeWindowMs: 120_000,
  resumeWindowBytes: 256 * 1024,
});

/** The first character of every line of the resume extension (PROTOCOL.md section 7): U+0001. */
const EXT = '\u0001';

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
 * with jitter, bounded send buffer, close-code policy, close-frame detection,
 * make-before-break socket switches, and (unless `resume: false`) the
 * heartbeat and acknowledged resume of PROTOCOL.md section 7.
 *
 * States: idle → connecting → open → (closing) → reconnecting → connecting …
 * and finally `closed` (no more reconnects; `connect()` starts again).
 *
 * Resume, in short: the relay numbers the frames it sends on a stream (1, 2,
 * …, across connections; its `␁` lines, the keep-alive text and a host's
 * `session:` / `secret:` lines aside) and this side numbers its own the same
 * way. `_in` is the last relay frame handed to the app (sent as `have=` on a
 * reconnect, and as `␁ack` about once a second); `_unacked` keeps this side's
 * frames the relay has not acknowledged, sent again after `␁resume <m>`. Each
 * socket counts its own frames from its `have + 1` (`sock.next`), so a frame
 * that two sockets both carry (a replay, a switch) reaches the app once.
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
    if (opts.keepAlive && utf8Length(opts.keepAlive) > MAX_KEEP_ALIVE_BYTES) {
      throw new RangeError(`keepAlive must be at most ${MAX_KEEP_ALIVE_BYTES} bytes`);
    }
    /**
     * Heartbeat and acknowledged resume (PROTOCOL.md section 7): on unless
     * `resume: false` (a client with `uuid: false` cannot resume: off there).
     */
    this.resume = opts.resume ?? opts.uuid !== false;
    // With resume on the heartbeat keeps the connection alive, and the relay's
    // keep-alive text is not asked for: it is not numbered, and a game frame of
    // the same text could not be told from it.
    this.keepAlive = this.resume ? null : opts.keepAlive || null;
    /** @type {'idle'|'connecting'|'open'|'closing'|'reconnecting'|'closed'} */
    this.state = 'idle';
    this._sock = null; // the current socket record
    this._old = null; // a socket being let go in a switch (drop())
    this._held = []; // [socket, frame] of the new socket, held until the old one is done
    this._timer = null; // back-off timer
    this._poll = null;
    this._attempt = 0; // failed attempts since the last open
    this._lostAt = null;
    this._everOpened = false;
    this._userClosed = false;
    this._queue = [];
    this._queueBytes = 0;
    // Section 7: the stream, which outlives sockets.
    this._in = 0; // the last relay frame handed to the app (have=)
    this._ackSent = 0; // the last `␁ack <n>` sent
    this._ackAt = 0;
    this._out = 0; // the number of this side's last frame
    this._outAcked = 0; // the relay handled this side's frames up to here
    this._unacked = []; // { n, text, bytes, at } after _outAcked, in order
    this._unackedBytes = 0;
    this._everReady = false; // a `␁resume` ever arrived
    this._abandoned = []; // blackholed sockets left for the relay to replace
    this._counters = { sent: 0, received: 0, resent: 0, duplicates: 0, resumes: 0, resets: 0, gaps: 0, lost: 0, lostOwn: 0, dead: 0 };
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

  /**
   * What the resume extension did so far (a copy): frames `sent` and
   * `received` (the app's, each once), `resent` after a resume, `duplicates`
   * dropped, `resumes` (and `resets`: resumes after a reset of the relay's
   * object, when frames this side resent may be handled twice), `gaps` and
   * the frames they `lost` (relay → here) and
   * `lostOwn` (here → relay), connections found `dead` by the heartbeat; and
   * the stream's position: `have` (last relay frame), `out` (last own frame),
   * `acked` (own frames the relay has handled), `unacked` (own frames kept).
   */
  get counters() {
    return { ...this._counters, have: this._in, out: this._out, acked: this._outAcked, unacked: this._unacked.length };
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
    this._everReady = false;
    this._open();
    return this;
  }

  /** resume=1 and have=<n> for a socket URL's query (nothing with resume off). */
  _resumeParams(q) {
    if (!this.resume) return;
    q.set('resume', '1');
    if (this._in > 0) q.set('have', String(this._in));
  }

  _open(extra = {}) {
    this._timer = null;
    const url = this._url();
    const sock = {
      ws: null, url, extra, opened: false, done: false, relayClosing: false, expected: null, lastText: null, timer: null,
      // Section 7: counts from have + 1 once `␁resume` arrived (ready).
      resume: this.resume, have: this._in, next: 0, ready: !this.resume, lastRx: 0, lastPing: 0, blackholed: false,
    };
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
      this._everOpened = true;
      this._startPoll();
      this._onOpen(sock);
      if (sock.resume) {
        // Open for the app once `␁resume` says what the relay has (_resumed).
        sock.lastRx = sock.lastPing = Date.now();
        sock.timer = setTimeout(() => this._noResume(sock), this.options.connectTimeoutMs);
        return;
      }
      this._attempt = 0;
      this._lostAt = null;
      this._setState('open', { url: redactUrl(url), ...extra });
      this._flush();
    };
    ws.onmessage = (e) => {
      // A blackholed socket (_blackhole) loses what comes, as on a dead network.
      if (sock.done || sock.blackholed || typeof e.data !== 'string') return;
      sock.lastText = e.data;
      sock.lastRx = Date.now();
      if (sock === this._sock && this._old) {
        this._checkClosing(this._old);
        if (this._old) { this._held.push([sock, e.data]); return; }
      }
      this._incoming(sock, e.data);
    };
    ws.onerror = (e) => {
      // Before the upgrade, Node's WebSocket fires `error` and never `close`.
      if (sock.done || sock.opened) return;
      this._socketGone(sock, CLOSE.ABNORMAL, '', e?.message || e?.error?.message || '');
      try { ws.close(); } catch { /* already failed */ }
    };
    ws.onclose = (e) => {
      if (sock.done || sock.blackholed) return;
      this._socketGone(sock, e.code, e.reason, '');
    };
  }

  _startPoll() {
    if (this._poll) return;
    this._poll = setInterval(() => {
      if (this._old) this._checkClosing(this._old);
      if (this._sock) this._checkClosing(this._sock);
      if (this._sock) this._heartbeat(this._sock);
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
    if (sock.done || !sock.opened || sock.relayClosing || sock.blackholed) return;
    // CLOSED (3) comes with the close event itself, which carries the code.
    if (sock.ws.readyState !== 2) return;
    sock.relayClosing = true;
    if (sock === this._old) return this._oldDone();
    if (!sock.expected && sock.lastText === NO_SLOTS_TEXT) sock.expected = { code: CLOSE.SESSION_FULL, reason: 'session full' };
    if (sock.expected) return this._socketGone(sock, sock.expected.code, sock.expected.reason, '');
    clearTimeout(sock.timer);
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
    if (this._old && !(sock.opened && sock.ready)) {
      // A switch whose new socket failed: keep the old one if it still works.
      const old = this._old;
      if (!old.done && !old.relayClosing && old.ws.readyState === 1) {
        clearTimeout(old.timer);
        this._old = null;
        this._held = [];
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
    for (const [sock, text] of held) this._incoming(sock, text);
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

  /**
   * Final state: no reconnect. Reports the sends that never left, and (resume
   * on) this side's frames the relay had not acknowledged.
   */
  _final(code, reason, error) {
    clearTimeout(this._timer);
    this._timer = null;
    const unsent = this._queue;
    this._queue = [];
    this._queueBytes = 0;
    const unacked = this._unacked.map((f) => f.text);
    this._unacked = [];
    this._unackedBytes = 0;
    this._closeAbandoned();
    this._onFinal();
    const detail = { code, reason, willReconnect: false, unsent };
    if (this.resume) detail.unacked = unacked;
    if (error) {
      detail.error = error.message;
      detail.errorCode = error.code;
      this._emit('error', { code: error.code, message: error.message, closeCode: code });
    }
    this._setState('closed', detail);
  }

  _onFinal() {}

  /** True for a frame that may not be sent with resume on (it would read as a `␁` line). */
  _reserved(text) {
    return text.startsWith(EXT);
  }

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
    if (this.resume && this._reserved(text)) {
      throw new RelayError('reserved', 'text starting with U+0001 is reserved for the resume extension\'s lines (PROTOCOL.md section 7); pass resume: false to send it');
    }
    const sock = this._sock;
    if (sock) this._checkClosing(sock);
    if (this._canSend()) {
      this._transmit(text, bytes, 'out');
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

  _canSend() {
    const sock = this._sock;
    return this.state === 'open' && sock?.ws.readyState === 1 && sock.ready;
  }

  /** One of the app's frames onto the current socket: numbered and kept until acknowledged (resume on). */
  _transmit(text, bytes, kind) {
    if (this.resume) {
      const at = Date.now();
      this._unacked.push({ n: ++this._out, text, bytes, at });
      this._unackedBytes += bytes;
      this._counters.sent += 1;
      this._trimOwn(at);
    }
    this._raw(this._sock, text);
    this._emit('frame', { dir: 'out', text, time: new Date(), kind });
  }

  /** Writes to a socket, unless it is blackholed (then the frame is lost, as on a dead network). */
  _raw(sock, text) {
    if (!sock.blackholed) sock.ws.send(text);
  }

  /**
   * Own frames the relay has not acknowledged are kept at least
   * resumeWindowMs and at least resumeWindowBytes; beyond both, the oldest go
   * (a resume then reports them lost with a `gap` event, dir 'out').
   */
  _trimOwn(now) {
    const { resumeWindowMs, resumeWindowBytes } = this.options;
    while (this._unacked.length && this._unackedBytes > resumeWindowBytes && now - this._unacked[0].at > resumeWindowMs) {
      this._unackedBytes -= this._unacked.shift().bytes;
    }
  }

  _flush() {
    while (this._queue.length && this._canSend()) {
      const text = this._queue.shift();
      const bytes = utf8Length(text);
      this._queueBytes -= bytes;
      this._transmit(text, bytes, 'flushed');
    }
  }

  // ---- section 7: heartbeat, numbering, acknowledgements, resume -----------

  /** A frame from the relay on `sock`: the extension's lines are handled here, the rest counted once and given to the app. */
  _incoming(sock, text) {
    if (!sock?.resume) return this._receive(text);
    if (text.startsWith(EXT)) return this._control(sock, text);
    // Not numbered: a host's session:/secret:, and anything before `␁resume`
    // (only the session-full text comes there).
    if (!sock.ready || this._uncounted(text)) return this._receive(text);
    const n = sock.next++;
    if (n <= this._in) {
      this._counters.duplicates += 1;
      return undefined;
    }
    if (n > this._in + 1) {
      this._protocolError(`frame ${n} came after frame ${this._in} without a ␁gap line`);
      this._lost('in', this._in + 1, n - 1, 'skipped without a ␁gap line');
    }
    this._in = n;
    this._counters.received += 1;
    return this._receive(text);
  }

  /** Frames of the relay's that are never numbered (the host's session: and secret:). */
  _uncounted() {
    return false;
  }

  _control(sock, text) {
    const [word, a, b] = text.slice(1).split(' ');
    const num = (s) => (/^\d{1,15}$/.test(s ?? '') ? Number(s) : NaN);
    switch (word) {
      case 'pong': return undefined;
      case 'ack': return this._acked(num(a), text);
      case 'resume': return this._resumed(sock, num(a), text, b === 'reset');
      case 'gap': return this._gapLine(sock, num(a), num(b), text);
      default: return this._unknownLine(sock, text);
    }
  }

  /**
   * A U+0001 text that is none of the relay's lines: a game frame that starts
   * with U+0001 (a host without resume can send one to a client). The relay
   * numbers it like any frame it sends, so it is counted here too, to stay in
   * step; but no game text may start so (7.3), so it is not the app's.
   */
  _unknownLine(sock, text) {
    if (!sock.ready) return undefined;
    const n = sock.next++;
    if (n > this._in) this._in = n;
    this._protocolError(`a frame starting with U+0001 that is none of the extension's lines (counted, not delivered): ${JSON.stringify(text.slice(0, 40))}`);
    return undefined;
  }

  /** `␁ack <m>`: the relay has handled this side's frames up to m; they may go. */
  _acked(m, line) {
    if (!Number.isFinite(m)) return this._protocolError(`unreadable line ${JSON.stringify(line)}`);
    if (m > this._out) return this._protocolError(`the relay acknowledged frame ${m}; this side sent ${this._out}`);
    if (m <= this._outAcked) return undefined;
    this._outAcked = m;
    this._forgetOwn(m);
    return undefined;
  }

  /** Own frames up to number m go (they are kept in order, numbered one by one). */
  _forgetOwn(m) {
    const kept = this._unacked;
    const k = kept.length && m >= kept[0].n ? Math.min(kept.length, m - kept[0].n + 1) : 0;
    for (let i = 0; i < k; i++) this._unackedBytes -= kept[i].bytes;
    if (k) kept.splice(0, k);
  }

  /**
   * `␁resume <m>`: the relay has handled this side's frames up to m. The rest
   * go again, in order, then the buffer; the socket is open for the app.
   * `␁resume <m> reset`: the relay's object was reset; frames after m may
   * have been handled before it and are handled again (at least once).
   */
  _resumed(sock, m, line, reset) {
    if (sock.ready) return this._protocolError(`a second ${JSON.stringify(line)} on one socket`);
    if (!Number.isFinite(m)) return this._protocolError(`unreadable line ${JSON.stringify(line)}`);
    clearTimeout(sock.timer);
    sock.ready = true;
    sock.next = sock.have + 1;
    if (m > this._out) {
      this._protocolError(`the relay says it handled frame ${m}; this side sent ${this._out}`);
      m = this._out;
    }
    // `␁resume 0` (no reset) after the relay had acknowledged some of this
    // side's frames: it no longer knows the stream and starts it afresh (7.5),
    // numbering its frames from 1 again. (A stream it had acknowledged nothing
    // of cannot be told from one it continues.)
    const fresh = m === 0 && this._outAcked > 0 && !reset;
    if (fresh) {
      sock.next = 1;
      if (sock.have > 0) this._lost('in', sock.have + 1, null, 'the relay started the stream afresh');
      this._in = 0;
      this._ackSent = 0;
    } else {
      this._forgetOwn(m);
      // Frames up to _outAcked were acknowledged, so handled (even if a reset
      // made the relay forget it); frames after that which are no longer
      // kept never reached it.
      const first = this._unacked.length ? this._unacked[0].n : this._out + 1;
      const from = Math.max(m, this._outAcked) + 1;
      if (first > from) this._lost('out', from, first - 1, 'older than this side\'s window, or unacknowledged at a final close');
    }
    this._outAcked = m;
    let n = m;
    for (const f of this._unacked) f.n = ++n; // the relay numbers what it gets next from m + 1
    this._out = n;
    if (this._everReady) this._counters.resumes += 1;
    this._everReady = true;
    if (sock !== this._sock) return undefined;
    this._attempt = 0;
    this._lostAt = null;
    this._closeAbandoned();
    for (const f of this._unacked) {
      this._raw(sock, f.text);
      this._emit('frame', { dir: 'out', text: f.text, time: new Date(), kind: 'resent' });
    }
    const resent = this._unacked.length;
    this._counters.resent += resent;
    if (reset) this._counters.resets += 1;
    const resumed = { have: sock.have, handled: m, resent, fresh, reset };
    this._emit('resumed', resumed);
    // Open, and the buffer out, before the app hears `open`: a send made in
    // its listener must come after them.
    this.state = 'open';
    this._flush();
    this._emit('state', { state: 'open', url: redactUrl(sock.url), ...sock.extra, resumed });
    return undefined;
  }

  /**
   * `␁gap <a> <b>`: the relay's frames a..b are lost for good; what follows is
   * a fresh start of the view, numbered from b + 1.
   */
  _gapLine(sock, a, b, line) {
    if (!sock.ready || !Number.isFinite(a) || !Number.isFinite(b) || a < 1 || b < a) {
      return this._protocolError(`unexpected line ${JSON.stringify(line)}`);
    }
    sock.next = b + 1;
    const from = Math.max(a, this._in + 1);
    const lost = Math.max(0, b - from + 1);
    this._in = b;
    this._freshView();
    this._counters.gaps += 1;
    this._counters.lost += lost;
    this._emit('gap', { dir: 'in', from: a, to: b, lost, why: 'the relay no longer has them (older than its window, or lost in a reset)' });
    return undefined;
  }

  /** A gap this side found (frames skipped without a `␁gap`, own frames gone). `to` null: unknown. */
  _lost(dir, from, to, why) {
    const lost = to === null ? null : to - from + 1;
    this._counters.gaps += 1;
    if (lost !== null) this._counters[dir === 'in' ? 'lost' : 'lostOwn'] += lost;
    this._emit('gap', { dir, from, to, lost, why });
  }

  /** After a `␁gap` the relay lists the view afresh (a host: links, clients, queue). */
  _freshView() {}

  _protocolError(message) {
    this._emit('error', { code: 'protocol', message: `PROTOCOL.md section 7: ${message}` });
    return undefined;
  }

  /** Every POLL_MS for the current socket: `␁ping`, `␁ack`, and the silence that means a dead connection. */
  _heartbeat(sock) {
    if (!sock.resume || sock.done || !sock.opened || sock.relayClosing) return;
    const now = Date.now();
    const { heartbeatIntervalMs, heartbeatTimeoutMs, ackIntervalMs } = this.options;
    if (heartbeatTimeoutMs > 0 && now - sock.lastRx >= heartbeatTimeoutMs) {
      this._dead(sock, now - sock.lastRx);
      return;
    }
    if (heartbeatIntervalMs > 0 && now - sock.lastPing >= heartbeatIntervalMs) {
      sock.lastPing = now;
      this._raw(sock, `${EXT}ping`);
    }
    if (sock.ready && now - this._ackAt >= ackIntervalMs && (this._in > this._ackSent || this._unacked.length)) {
      this._ackAt = now;
      this._ackSent = this._in;
      this._raw(sock, `${EXT}ack ${this._in}`);
    }
  }

  /** No frame for heartbeatTimeoutMs: the connection is dead; let it go and resume on a new one. */
  _dead(sock, quietMs) {
    this._counters.dead += 1;
    const { ws } = sock;
    this._socketGone(sock, CLOSE.ABNORMAL, '', `no frame for ${quietMs} ms: connection dead (heartbeat)`);
    if (sock.blackholed) {
      // As on a dead network, no close frame: the relay replaces the socket
      // when the resume arrives (4001 / 4002); closed here once resumed.
      this._abandoned.push(ws);
      return;
    }
    try { ws.close(CLOSE_DROPPED, 'no heartbeat'); } catch { /* closing */ }
  }

  _closeAbandoned() {
    for (const ws of this._abandoned.splice(0)) {
      try { ws.close(CLOSE_DROPPED, 'dropped'); } catch { /* closing */ }
    }
  }

  /** A socket opened but no `␁resume` came within connectTimeoutMs. */
  _noResume(sock) {
    if (sock.done || sock.ready) return;
    const why = `no ␁resume line within ${this.options.connectTimeoutMs} ms of the socket opening`;
    if (this._everReady) {
      this._socketGone(sock, CLOSE.ABNORMAL, '', why);
      try { sock.ws.close(CLOSE_DROPPED, 'no resume'); } catch { /* closing */ }
      return;
    }
    // Never: a relay without PROTOCOL.md section 7. Say so; no retry.
    sock.done = true;
    if (sock === this._sock) this._sock = null;
    try { sock.ws.close(CLOSE_DROPPED, 'no resume'); } catch { /* closing */ }
    this._final(CLOSE.ABNORMAL, '', new RelayError('connect-failed',
      `${why}: the relay does not seem to implement heartbeat and resume (PROTOCOL.md section 7); pass resume: false for a relay without it`));
  }

  /**
   * Debugging hook (the page's "cut the network"): the current socket stops
   * passing frames both ways without closing, as when a network dies
   * silently. What the relay sends it meanwhile is lost; what the app sends is
   * kept unacknowledged. With resume on, the heartbeat finds the silence and
   * the library resumes on a new socket; with resume off nothing notices.
   * For good: a socket once cut stays cut. Returns false if no socket is open.
   */
  _blackhole(on = true) {
    const sock = this._sock;
    if (!on || !sock || sock.done || !sock.opened || sock.blackholed) return false;
    sock.blackholed = true;
    return true;
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
    else this._closeAbandoned();
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
    if (!cur || !cur.opened || !cur.ready || cur.relayClosing || this._old || this.state !== 'open') return false;
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
    clearTimeout(cur.timer);
    cur.timer = setTimeout(() => this._oldDone(), this.options.takeOverTimeoutMs);
    this._open({ switching: true });
    return true;
  }
}

/**
 * The host side: `new RelayHost({ base, id, secret, keepAlive, reconnect }).connect()`.
 *
 * Events (detail): session {sid, takeOver, resuming}, secret {secret}, connected {client},
 * disconnected {client}, message {client, text}, unknown {client}, invalid {},
 * linked {role, sid}, unlinked {role, sid}, stats (the parsed JSON),
 * version {version}, keepalive {text}, state {state, …}, frame {dir, text, time, kind},
 * error {code, message, closeCode}, resumed {have, handled, resent, fresh},
 * gap {dir, from, to, lost, why} (after an 'in' gap the relay lists the
 * session afresh: `clients`, `master` and `slaves` are cleared and rebuilt).
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
    this._resumeParams(q);
    const qs = q.toString();
    return `${this.base}/session${qs ? `?${qs}` : ''}`;
  }

  _onOpen() {}

  _onFinal() {
    this._freshView();
  }

  /** After a `␁gap` the relay lists the session afresh (links, connected clients, queue), as on a take-over. */
  _freshView() {
    this.clients.clear();
    this.master = null;
    this.slaves.clear();
  }

  _uncounted(text) {
    return text.startsWith('session: ') || text.startsWith('secret: ');
  }

  _reserved(text) {
    return text.startsWith(EXT) || /^\d+: \u0001/.test(text);
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
        // A resume continues the stream: nothing is listed again (unless a ␁gap says so).
        const resuming = takeOver && this.resume;
        this.sid = f.sid;
        if (takeOver && !resuming) this.clients.clear(); // the relay lists them again
        return this._emit('session', resuming ? { sid: f.sid, takeOver, resuming } : { sid: f.sid, takeOver });
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
 * Events (detail): message {text}, keepalive {text}, state {…}, frame {…}, error {…},
 * resumed {…}, gap {…}.
 */
export class RelayClient extends Connection {
  constructor(sid, opts = {}) {
    if (opts.uuid === false && opts.resume === true) {
      throw new TypeError('resume needs a client uuid (sent as client=): leave uuid out, or pass resume: false with uuid: false');
    }
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
    this._resumeParams(q);
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
