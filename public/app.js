// The test area of the relay's page: 3 hosts × 2 clients, built on relay-client.js.
import { RelayHost, RelayClient } from './relay-client.js';

const GROUPS = 3;
const CLIENTS_PER_HOST = 2;
const MAX_LOG = 400;

const $ = (root, sel) => root.querySelector(sel);
const pad = (n, w = 2) => String(n).padStart(w, '0');
const clock = (d) => `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
const short = (sid) => (sid && sid.length > 13 ? `${sid.slice(0, 8)}…` : sid);

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
  arrow.textContent = dir === 'in' ? '←' : dir === 'out' ? '→' : '•';
  arrow.title = dir === 'in' ? 'received' : dir === 'out' ? 'sent' : 'connection';
  const body = document.createElement('span');
  body.className = 'text';
  body.textContent = text;
  li.append(t, arrow, body);
  list.append(li);
  while (list.childElementCount > MAX_LOG) list.firstElementChild.remove();
  if (pinned) list.scrollTop = list.scrollHeight;
}

function describeState(d) {
  switch (d.state) {
    case 'connecting': return { label: d.attempt ? `reconnecting (#${d.attempt})…` : 'connecting…', line: `connecting ${d.url}` };
    case 'open': return { label: 'open', line: 'open' };
    case 'closing': return { label: 'closing…', line: `closing (${d.code} ${d.reason})` };
    case 'closed': {
      const why = `${d.code}${d.reason ? ` ${d.reason}` : ''}`;
      if (d.willReconnect) {
        const secs = (d.retryInMs / 1000).toFixed(1);
        return { label: `closed ${d.code} · retry in ${secs} s`, line: `closed ${why} — reconnecting in ${secs} s`, state: 'retrying' };
      }
      return { label: `closed ${why}`, line: `closed ${why}` };
    }
    default: return { label: d.state, line: d.state };
  }
}

function showState(panel, d) {
  const { label, line, state } = describeState(d);
  const pill = $(panel.el, '.state');
  pill.textContent = label;
  pill.dataset.state = state || d.state;
  pill.title = d.reason || '';
  panel.el.dataset.state = state || d.state;
  logLine(panel.log, { dir: 'sys', text: line });
}

/** Up/down arrow history for an input. */
function withHistory(input) {
  const past = [];
  let at = 0;
  input.addEventListener('keydown', (e) => {
    if (e.key === 'ArrowUp' && at > 0) { at -= 1; input.value = past[at]; e.preventDefault(); }
    if (e.key === 'ArrowDown' && at < past.length) { at += 1; input.value = past[at] ?? ''; e.preventDefault(); }
  });
  return (line) => { if (line && past[past.length - 1] !== line) past.push(line); at = past.length; };
}

const hosts = {};
const clients = {};

class HostPanel {
  constructor(n) {
    this.n = n;
    this.el = document.getElementById('host-template').content.firstElementChild.cloneNode(true);
    this.el.id = `host${n}`;
    this.el.dataset.testid = `host${n}`;
    $(this.el, '.title').textContent = `Host ${n}`;
    this.log = $(this.el, '.log');
    this.conn = null;
    this.clientNumbers = Array.from({ length: CLIENTS_PER_HOST }, (_, i) => (n - 1) * CLIENTS_PER_HOST + i + 1);

    $(this.el, '.options').addEventListener('submit', (e) => { e.preventDefault(); this.start(); });
    $(this.el, '.drop').addEventListener('click', () => this.conn?.drop());
    $(this.el, '.close').addEventListener('click', () => this.conn?.close());
    const remember = withHistory($(this.el, '.cmd'));
    $(this.el, '.sendbar').addEventListener('submit', (e) => {
      e.preventDefault();
      const input = $(this.el, '.cmd');
      if (this.command(input.value)) { remember(input.value); input.value = ''; }
    });
    this.renderChips();
  }

  start() {
    if (this.conn?.active) return;
    const id = $(this.el, '.opt-id').value.trim();
    const secret = $(this.el, '.opt-secret').value.trim();
    const keepAlive = $(this.el, '.opt-keepalive').value;
    const reconnect = $(this.el, '.opt-reconnect').checked;
    let host;
    try {
      host = new RelayHost({ id: id || undefined, secret: secret || undefined, keepAlive, reconnect });
    } catch (err) {
      logLine(this.log, { dir: 'sys', kind: 'error', text: err.message });
      return;
    }
    this.conn = host;
    host.addEventListener('frame', (e) => { if (this.conn === host) logLine(this.log, e.detail); });
    host.addEventListener('state', (e) => { if (this.conn === host) { showState(this, e.detail); this.renderButtons(); } });
    host.addEventListener('session', (e) => {
      const previous = $(this.el, '.sid').dataset.sid;
      $(this.el, '.sid').textContent = e.detail.sid;
      $(this.el, '.sid').dataset.sid = e.detail.sid;
      for (const c of this.clientNumbers) clients[c].offerSession(e.detail.sid, previous);
      renderAllChips();
    });
    host.addEventListener('secret', (e) => { $(this.el, '.secret').textContent = e.detail.secret; });
    for (const type of ['connected', 'disconnected', 'state']) host.addEventListener(type, () => this.renderInfo());
    host.addEventListener('linked', () => this.renderInfo());
    host.addEventListener('unlinked', () => this.renderInfo());
    host.connect();
  }

  command(line) {
    if (!this.conn || this.conn.state !== 'open') {
      logLine(this.log, { dir: 'sys', kind: 'error', text: 'not connected: start the host first' });
      return false;
    }
    this.conn.command(line);
    return true;
  }

  renderButtons() {
    const s = this.conn?.state ?? 'closed';
    const live = Boolean(this.conn?.active);
    $(this.el, '.start').disabled = Boolean(live);
    $(this.el, '.drop').disabled = s !== 'open';
    $(this.el, '.close').disabled = !live || s === 'closing';
  }

  renderInfo() {
    const h = this.conn;
    const list = [...(h?.clients ?? [])].sort((a, b) => a - b);
    $(this.el, '.clients').textContent = list.length ? list.join(', ') : '—';
    const parts = [];
    if (h?.master) parts.push(`slave of ${nameOf(h.master)}`);
    if (h?.slaves.size) parts.push(`master of ${[...h.slaves].map(nameOf).join(', ')}`);
    $(this.el, '.links').textContent = parts.length ? parts.join(' · ') : '—';
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
    for (const other of Object.values(hosts)) {
      const sid = other !== this && other.conn?.sid;
      if (sid) add(`join Host ${other.n}`, `/join-session id=${sid}`);
    }
  }
}

/** "Host 2" for a session id one of the panels owns, else the shortened id. */
function nameOf(sid) {
  const owner = Object.values(hosts).find((h) => h.conn?.sid === sid);
  return owner ? `Host ${owner.n}` : short(sid);
}

function renderAllChips() {
  for (const h of Object.values(hosts)) { h.renderChips(); h.renderInfo(); }
}

class ClientPanel {
  constructor(n, hostN) {
    this.n = n;
    this.hostN = hostN;
    this.el = document.getElementById('client-template').content.firstElementChild.cloneNode(true);
    this.el.id = `client${n}`;
    this.el.dataset.testid = `client${n}`;
    $(this.el, '.title').textContent = `Client ${n}`;
    this.log = $(this.el, '.log');
    this.conn = null;
    $(this.el, '.options').addEventListener('submit', (e) => { e.preventDefault(); this.connect(); });
    $(this.el, '.close').addEventListener('click', () => this.conn?.close());
    const remember = withHistory($(this.el, '.msg'));
    $(this.el, '.sendbar').addEventListener('submit', (e) => {
      e.preventDefault();
      const input = $(this.el, '.msg');
      if (!this.conn || this.conn.state !== 'open') {
        logLine(this.log, { dir: 'sys', kind: 'error', text: 'not connected' });
        return;
      }
      this.conn.send(input.value);
      remember(input.value);
      input.value = '';
    });
  }

  /** The host's session id, unless the user typed another one. */
  offerSession(sid, previous) {
    const input = $(this.el, '.opt-sid');
    if (!input.value || input.value === previous) input.value = sid;
  }

  connect() {
    if (this.conn?.active) return;
    const sid = $(this.el, '.opt-sid').value.trim();
    if (!sid) {
      logLine(this.log, { dir: 'sys', kind: 'error', text: `no session id: start Host ${this.hostN} first` });
      return;
    }
    const uuidInput = $(this.el, '.opt-uuid');
    const client = new RelayClient(sid, {
      uuid: uuidInput.value.trim() || undefined,
      storageKey: `askutron-relay-demo/client${this.n}/uuid`,
      keepAlive: $(this.el, '.opt-keepalive').value,
    });
    uuidInput.value = client.uuid;
    this.conn = client;
    client.addEventListener('frame', (e) => { if (this.conn === client) logLine(this.log, e.detail); });
    client.addEventListener('state', (e) => { if (this.conn === client) { showState(this, e.detail); this.renderButtons(); } });
    client.connect();
  }

  renderButtons() {
    const s = this.conn?.state ?? 'closed';
    const live = Boolean(this.conn?.active);
    $(this.el, '.connect').disabled = Boolean(live);
    $(this.el, '.close').disabled = !live || s === 'closing';
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
    for (const c of host.clientNumbers) {
      clients[c] = new ClientPanel(c, g);
      row.append(clients[c].el);
    }
    group.append(host.el, row);
    root.append(group);
  }
  renderAllChips();
}

build();
// For the console and for tests: the panels and their RelayHost / RelayClient.
window.relayDemo = { hosts, clients, RelayHost, RelayClient };
