// The test area of the relay's page: 3 hosts × 2 clients, built on relay-client.js.
import { RelayHost, RelayClient, closePolicy } from './relay-client.js';

const GROUPS = 3;
const CLIENTS_PER_HOST = 2;
const MAX_LOG = 400;

const $ = (root, sel) => root.querySelector(sel);
const pad = (n, w = 2) => String(n).padStart(w, '0');
const clock = (d) => `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;

/** Appends one line to a panel's log, keeping the view pinned to the bottom if it was. */
function logLine(list, { dir, text, time = new Date(), kind = dir }) {
  const pinned = list.scrollHeight - list.scrollTop - list.clientHeight < 24;
  const li = document.createElement('li');
  li.className = `frame ${dir}${kind === 'keepalive' ? ' keepalive' : ''}`;
  li.dataset.dir = dir;
  li.dataset.kind = kind;
  const t = document.createElement('time');
  t.textContent = clock(time);
  t.dateTime = time.toISOString();
  const arrow = document.createElement('span');
  arrow.className = 'arrow';
  arrow.textContent = dir === 'in' ? '←' : dir === 'out' ? ({ buffered: '⋯', resent: '↻' }[kind] ?? '→') : '•';
  arrow.title = dir === 'in' ? 'received' : dir === 'out'
    ? ({ buffered: 'buffered until a socket is open', resent: 'sent again after a resume (the relay had not handled it)' }[kind] ?? 'sent') : 'connection';
  const body = document.createElement('span');
  body.className = 'text';
  body.textContent = text;
  li.append(t, arrow, body);
  list.append(li);
  while (list.childElementCount > MAX_LOG) list.firstElementChild.remove();
  if (pinned) list.scrollTop = list.scrollHeight;
}

function describeState(d) {
  const why = `${d.code ?? ''}${d.reason ? ` ${d.reason}` : ''}`;
  switch (d.state) {
    case 'connecting': {
      const what = d.switching ? 'new socket (take-over)' : d.attempt ? `reconnect #${d.attempt}` : 'connecting';
      return { label: d.switching ? 'switching…' : d.attempt ? `reconnecting (#${d.attempt})…` : 'connecting…', line: `${what}: ${d.url}` };
    }
    case 'open': return { label: 'open', line: 'open' };
    case 'closing': return { label: 'closing…', line: 'close frame from the relay; waiting for its code' };
    case 'reconnecting': {
      const secs = (d.retryInMs / 1000).toFixed(1);
      const dead = /heartbeat/.test(d.detail ?? '');
      return {
        label: dead ? `dead · retry in ${secs} s` : `closed ${d.code} · retry in ${secs} s`,
        line: `${dead ? d.detail : `closed ${why}${d.detail ? ` (${d.detail})` : ''}`} — reconnecting in ${secs} s`,
        state: 'retrying',
      };
    }
    case 'closed': {
      const unsent = d.unsent?.length ? ` (${d.unsent.length} buffered sends dropped)` : '';
      const explain = d.errorCode === 'closed' ? closePolicy(d.code).why : d.error;
      return { label: `closed ${why}`, line: `closed ${why}${explain ? ` — ${explain}` : ''}${unsent}` };
    }
    default: return { label: d.state, line: d.state };
  }
}

const COUNTERS = ['sent', 'received', 'resent', 'duplicates', 'resumes', 'gaps', 'dead'];

/** Fills a panel's empty counter table from the one template both kinds of panel share. */
function fillCounters(el) {
  el.querySelector('table.counters').append(document.getElementById('counters-template').content.cloneNode(true));
}

/** Writes a library object's counters into a row of the panel's counter table. */
function showCounters(panel, row, c) {
  for (const k of COUNTERS) {
    const cell = $(panel.el, `.counters tr.${row} [data-counter="${k}"]`);
    cell.textContent = c ? String(c[k]) : '—';
    cell.dataset.nonzero = c && c[k] > 0 ? '1' : '';
  }
}

/**
 * What every panel does with its library object's resume events: the
 * counters (redrawn once per frame at most), a log line for a resume, a gap,
 * and a connection the heartbeat found dead; and the Cut network button.
 */
function followResume(panel, conn) {
  let queued = false;
  const redraw = () => {
    if (queued) return;
    queued = true;
    requestAnimationFrame(() => { queued = false; if (panel.conn === conn) showCounters(panel, 'now', conn.counters); });
  };
  const mine = (fn) => (e) => { if (panel.conn === conn) fn(e.detail); };
  conn.addEventListener('frame', redraw);
  conn.addEventListener('state', redraw);
  conn.addEventListener('resumed', mine((d) => {
    redraw();
    if (!d.have && !d.handled && !d.resent) return; // a first connection
    logLine(panel.log, { dir: 'sys', kind: 'resumed',
      text: `resumed: the relay had my frames up to ${d.handled}, ${d.resent} sent again; its frames after ${d.have} replayed${d.fresh ? ' (it started the stream afresh)' : ''}` });
  }));
  conn.addEventListener('gap', mine((d) => {
    redraw();
    const which = d.dir === 'in' ? 'relay frames' : 'my frames';
    logLine(panel.log, { dir: 'sys', kind: 'error',
      text: `gap: ${which} ${d.from}–${d.to ?? '?'} lost for good${d.lost != null ? ` (${d.lost} not received)` : ''}: ${d.why}` });
  }));
  showCounters(panel, 'now', conn.counters);
  showCounters(panel, 'at-cut', null);
}

/** Cut network: the library's debugging hook; the counters as they were are kept beside the live ones. */
function cutNetwork(panel) {
  const conn = panel.conn;
  const ws = conn?.socket;
  if (!conn?._blackhole()) return;
  panel.cutSocket = ws;
  showCounters(panel, 'at-cut', conn.counters);
  logLine(panel.log, { dir: 'sys', kind: 'cut',
    text: conn.resume
      ? 'network cut: this socket now passes nothing either way, and is not closed; the heartbeat will find it dead within 6 s'
      : 'network cut: this socket now passes nothing either way, and is not closed; with resume off nothing will notice (Drop or Close it)' });
  panel.renderButtons();
}

function showState(panel, d) {
  const { label, line, state } = describeState(d);
  const pill = $(panel.el, '.state');
  pill.textContent = label;
  pill.dataset.state = state || d.state;
  pill.title = d.error || d.reason || '';
  panel.el.dataset.state = state || d.state;
  logLine(panel.log, { dir: 'sys', kind: d.error ? 'error' : 'state', text: line });
}

/**
 * A message box: Enter sends, Shift+Enter makes a new line, Up/Down walk the
 * history while the text is one line.
 */
function messageBox(input, send) {
  const past = [];
  let at = 0;
  const submit = () => {
    const text = input.value;
    if (!send(text)) return;
    if (text && past[past.length - 1] !== text) past.push(text);
    at = past.length;
    input.value = '';
    fit();
  };
  const fit = () => { input.rows = Math.min(6, input.value.split('\n').length); };
  input.addEventListener('input', fit);
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) { e.preventDefault(); submit(); return; }
    if (input.value.includes('\n')) return;
    if (e.key === 'ArrowUp' && at > 0) { at -= 1; input.value = past[at]; fit(); e.preventDefault(); }
    if (e.key === 'ArrowDown' && at < past.length) { at += 1; input.value = past[at] ?? ''; fit(); e.preventDefault(); }
  });
  input.form.addEventListener('submit', (e) => { e.preventDefault(); submit(); });
}

const hosts = {};
const clients = {};

class HostPanel {
  constructor(n) {
    this.n = n;
    this.el = document.getElementById('host-template').content.firstElementChild.cloneNode(true);
    fillCounters(this.el);
    this.el.id = `host${n}`;
    this.el.dataset.testid = `host${n}`;
    $(this.el, '.title').textContent = `Host ${n}`;
    this.log = $(this.el, '.log');
    this.conn = null;
    this.clientPanels = [];
    /** Client panels that opened on this host's session and wait to learn their relay id. */
    this.waiting = [];
    /** Relay ids this session announced that no panel has claimed yet. */
    this.unclaimed = [];
    /** Translated client ids of linked slaves: id → slave sid. */
    this.slaveIds = new Map();
    this.burst = null; // the slave whose `connected:` lines follow its `!added-slave:`

    $(this.el, '.options').addEventListener('submit', (e) => { e.preventDefault(); this.start(); });
    $(this.el, '.cut').addEventListener('click', () => cutNetwork(this));
    $(this.el, '.drop').addEventListener('click', () => this.conn?.drop());
    keepAliveFollowsResume(this.el);
    $(this.el, '.close').addEventListener('click', () => this.conn?.close());
    messageBox($(this.el, '.cmd'), (line) => this.command(line));
    this.renderChips();
  }

  start() {
    if (this.conn?.active) return;
    const id = $(this.el, '.opt-id').value.trim();
    const secret = $(this.el, '.opt-secret').value.trim();
    const resume = $(this.el, '.opt-resume').checked;
    const keepAlive = resume ? undefined : $(this.el, '.opt-keepalive').value;
    const reconnect = $(this.el, '.opt-reconnect').checked;
    let host;
    try {
      host = new RelayHost({ id: id || undefined, secret: secret || undefined, keepAlive, reconnect, resume });
    } catch (err) {
      logLine(this.log, { dir: 'sys', kind: 'error', text: err.message });
      return;
    }
    this.conn = host;
    this.slaveIds.clear();
    this.unclaimed = [];
    followResume(this, host);
    const mine = (fn) => (e) => { if (this.conn === host) fn(e.detail); };
    host.addEventListener('frame', mine((d) => {
      logLine(this.log, d);
      if (d.dir === 'in' && d.kind !== 'connected' && d.kind !== 'added-slave') this.burst = null;
    }));
    host.addEventListener('state', mine((d) => {
      showState(this, d);
      if (d.state === 'closed') { this.slaveIds.clear(); this.unclaimed = []; this.waiting = []; }
      this.renderButtons();
      renderAll();
    }));
    host.addEventListener('session', mine((d) => {
      const sidEl = $(this.el, '.sid');
      const previous = sidEl.dataset.sid;
      sidEl.textContent = d.sid;
      sidEl.dataset.sid = d.sid;
      if (d.takeOver && !d.resuming) this.unclaimed = []; // the relay lists its clients again
      for (const c of this.clientPanels) c.offerSession(d.sid, previous);
      renderAll();
    }));
    host.addEventListener('secret', mine((d) => { $(this.el, '.secret').textContent = d.secret; }));
    host.addEventListener('connected', mine((d) => {
      if (this.burst) this.slaveIds.set(d.client, this.burst);
      else if (!this.slaveIds.has(d.client)) this.claim(d.client);
      renderAll();
    }));
    host.addEventListener('disconnected', mine((d) => {
      this.unclaimed = this.unclaimed.filter((x) => x !== d.client);
      renderAll();
    }));
    host.addEventListener('linked', mine((d) => { if (d.role === 'master') this.burst = d.sid; renderAll(); }));
    host.addEventListener('gap', mine((d) => { if (d.dir === 'in') { this.slaveIds.clear(); this.unclaimed = []; renderAll(); } }));
    host.addEventListener('unlinked', mine((d) => {
      for (const [id, sid] of this.slaveIds) if (d.role === 'slave' || sid === d.sid) this.slaveIds.delete(id);
      renderAll();
    }));
    host.connect();
  }

  /** A `connected: <n>` of this session: the relay id of the panel that opened first and has none yet. */
  claim(id) {
    const owner = this.clientPanels.find((c) => c.relayId === id && c.conn?.sid === this.conn?.sid);
    if (owner) return; // the same uuid back (replaced or reconnected)
    const panel = this.waiting.shift();
    if (panel) panel.setRelayId(id);
    else this.unclaimed.push(id);
  }

  /** A client panel opened on this host's session. */
  clientOpened(panel) {
    if (panel.relayId != null) return;
    const id = this.unclaimed.shift();
    if (id != null) panel.setRelayId(id);
    else this.waiting.push(panel);
  }

  command(line) {
    if (!this.conn || !this.conn.active) {
      logLine(this.log, { dir: 'sys', kind: 'error', text: 'not connected: start the host first' });
      return false;
    }
    try {
      this.conn.command(line);
    } catch (err) {
      logLine(this.log, { dir: 'sys', kind: 'error', text: err.message });
      return false;
    }
    if (line === '/leave-session') renderAll();
    return true;
  }

  renderButtons() {
    const s = this.conn?.state ?? 'idle';
    const live = Boolean(this.conn?.active);
    $(this.el, '.start').disabled = live;
    $(this.el, '.cut').disabled = s !== 'open' || (Boolean(this.conn?.socket) && this.conn.socket === this.cutSocket);
    $(this.el, '.drop').disabled = s !== 'open';
    $(this.el, '.close').disabled = !live;
  }

  /** "1 · Client 1a" for own clients, "3 · via Host 2" for a slave's. */
  clientLabel(id) {
    const slave = this.slaveIds.get(id);
    if (slave) return `${id} · via ${nameOf(slave)}`;
    const panel = Object.values(clients).find((c) => c.relayId === id && c.conn?.sid === this.conn?.sid && c.conn?.active);
    return panel ? `${id} · ${panel.name}` : String(id);
  }

  renderInfo() {
    const h = this.conn;
    const live = h && h.state !== 'closed';
    const list = live ? [...h.clients].sort((a, b) => a - b) : [];
    const box = $(this.el, '.clients');
    box.replaceChildren(...list.map((id) => {
      const chip = document.createElement('span');
      chip.className = `cid${this.slaveIds.has(id) ? ' slave' : ''}`;
      chip.dataset.id = String(id);
      chip.textContent = this.clientLabel(id);
      return chip;
    }));
    if (!list.length) box.textContent = '—';
    const parts = [];
    if (live && h.master) parts.push(`slave of ${nameOf(h.master)}`);
    if (live && h.slaves.size) parts.push(`master of ${[...h.slaves].map(nameOf).join(', ')}`);
    $(this.el, '.links').textContent = parts.length ? parts.join(' · ') : '—';
    $(this.el, '.info').dataset.live = String(Boolean(live));
  }

  renderChips() {
    const box = $(this.el, '.chips');
    box.replaceChildren();
    const add = (label, line, title = line) => {
      const b = document.createElement('button');
      b.type = 'button';
      b.className = 'chip';
      b.textContent = label;
      b.title = title;
      b.dataset.command = line;
      b.addEventListener('click', () => this.command(line));
      box.append(b);
    };
    for (const c of ['/stats', '/version', '/join-session master', '/join-session slave', '/close-session', '/leave-session']) add(c, c);
    // Sessions this one could join: other panels' live sessions, not its own
    // (after a take-over two panels may name the same session).
    if (this.conn?.state !== 'open') return;
    const own = this.conn.sid;
    const offered = new Set();
    for (const other of Object.values(hosts)) {
      const sid = other.conn?.state === 'open' && other.conn.sid;
      if (!sid || other === this || sid === own || offered.has(sid)) continue;
      offered.add(sid);
      add(`join Host ${other.n}`, `/join-session id=${sid}`);
    }
  }
}

/** The keepAlive field is for resume off only (with resume, the heartbeat keeps the socket alive). */
function keepAliveFollowsResume(el) {
  const box = $(el, '.opt-resume');
  const field = $(el, '.opt-keepalive');
  const sync = () => { field.disabled = box.checked; field.placeholder = box.checked ? 'heartbeat' : 'off'; };
  box.addEventListener('change', sync);
  sync();
}

/** "Host 2" for a session id a live panel holds, else the id itself. */
function nameOf(sid) {
  const owner = Object.values(hosts).find((h) => h.conn?.sid === sid && h.conn.state !== 'closed');
  return owner ? `Host ${owner.n}` : sid;
}

function renderAll() {
  for (const h of Object.values(hosts)) { h.renderChips(); h.renderInfo(); }
  for (const c of Object.values(clients)) c.renderId();
}

class ClientPanel {
  constructor(host, index) {
    this.host = host;
    this.n = (host.n - 1) * CLIENTS_PER_HOST + index + 1;
    this.name = `Client ${host.n}${'abcdefgh'[index]}`;
    this.el = document.getElementById('client-template').content.firstElementChild.cloneNode(true);
    fillCounters(this.el);
    this.el.id = `client${this.n}`;
    this.el.dataset.testid = `client${this.n}`;
    $(this.el, '.title').textContent = this.name;
    this.log = $(this.el, '.log');
    this.conn = null;
    this.relayId = null;
    $(this.el, '.options').addEventListener('submit', (e) => { e.preventDefault(); this.connect(); });
    $(this.el, '.cut').addEventListener('click', () => cutNetwork(this));
    $(this.el, '.drop').addEventListener('click', () => this.conn?.drop());
    keepAliveFollowsResume(this.el);
    $(this.el, '.close').addEventListener('click', () => this.conn?.close());
    messageBox($(this.el, '.msg'), (text) => {
      if (!this.conn || !this.conn.active) {
        logLine(this.log, { dir: 'sys', kind: 'error', text: 'not connected' });
        return false;
      }
      try {
        this.conn.send(text);
      } catch (err) {
        logLine(this.log, { dir: 'sys', kind: 'error', text: err.message });
        return false;
      }
      return true;
    });
    this.renderId();
  }

  /** The host's session id, unless the user typed another one. */
  offerSession(sid, previous) {
    const input = $(this.el, '.opt-sid');
    if (!input.value || input.value === previous) input.value = sid;
  }

  setRelayId(id) {
    this.relayId = id;
    this.renderId();
    renderAll();
  }

  renderId() {
    const pill = $(this.el, '.rid');
    const at = this.conn && Object.values(hosts).find((h) => h.conn?.sid === this.conn.sid && h.conn.state !== 'closed');
    pill.textContent = this.relayId == null ? 'id —' : `id ${this.relayId}${at ? ` at Host ${at.n}` : ''}`;
    pill.dataset.id = this.relayId == null ? '' : String(this.relayId);
    pill.title = 'the client id the relay gave this socket (the host addresses it as "<id>: …")';
  }

  connect() {
    if (this.conn?.active) return;
    const sid = $(this.el, '.opt-sid').value.trim();
    if (!sid) {
      logLine(this.log, { dir: 'sys', kind: 'error', text: `no session id: start Host ${this.host.n} first` });
      return;
    }
    const uuidInput = $(this.el, '.opt-uuid');
    let client;
    try {
      const resume = $(this.el, '.opt-resume').checked;
      client = new RelayClient(sid, {
        uuid: uuidInput.value.trim() || undefined,
        storageKey: `askutron-relay-demo/client${this.n}/uuid`,
        keepAlive: resume ? undefined : $(this.el, '.opt-keepalive').value,
        resume,
      });
    } catch (err) {
      logLine(this.log, { dir: 'sys', kind: 'error', text: err.message });
      return;
    }
    uuidInput.value = client.uuid;
    this.conn = client;
    this.relayId = null;
    this.renderId();
    followResume(this, client);
    client.addEventListener('frame', (e) => { if (this.conn === client) logLine(this.log, e.detail); });
    client.addEventListener('state', (e) => {
      if (this.conn !== client) return;
      showState(this, e.detail);
      const owner = Object.values(hosts).find((h) => h.conn?.sid === client.sid && h.conn.state !== 'closed');
      if (e.detail.state === 'open' && owner) owner.clientOpened(this);
      if (e.detail.state === 'closed') {
        for (const h of Object.values(hosts)) h.waiting = h.waiting.filter((p) => p !== this);
        this.relayId = null;
      }
      this.renderId();
      this.renderButtons();
      renderAll();
    });
    client.connect();
  }

  renderButtons() {
    const s = this.conn?.state ?? 'idle';
    const live = Boolean(this.conn?.active);
    $(this.el, '.connect').disabled = live;
    $(this.el, '.cut').disabled = s !== 'open' || (Boolean(this.conn?.socket) && this.conn.socket === this.cutSocket);
    $(this.el, '.drop').disabled = s !== 'open';
    $(this.el, '.close').disabled = !live;
  }
}

function build() {
  const root = document.getElementById('groups');
  for (let g = 1; g <= GROUPS; g++) {
    const group = document.createElement('section');
    group.className = `group g${g}`;
    group.id = `group${g}`;
    group.dataset.testid = `group${g}`;
    group.setAttribute('aria-label', `Host ${g} and its clients`);
    const host = new HostPanel(g);
    hosts[g] = host;
    const row = document.createElement('div');
    row.className = 'client-row';
    for (let i = 0; i < CLIENTS_PER_HOST; i++) {
      const c = new ClientPanel(host, i);
      clients[c.n] = c;
      host.clientPanels.push(c);
      row.append(c.el);
    }
    group.append(host.el, row);
    root.append(group);
  }
  renderAll();
}

build();
// For the console and for tests: the panels and their RelayHost / RelayClient.
window.relayDemo = { hosts, clients, RelayHost, RelayClient };
