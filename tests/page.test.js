// The page (GET /) in a real browser: docs, the 3×(host + 2 clients) test
// area, and relay-client.js doing relay, linking and take-over against the
// built worker under `wrangler dev`, its resume (Cut network, counters) and the
// resume scenario of tests/resume.test.js with the page's library. Headless
// Debian Chromium via playwright-core.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { startRelay, ROOT } from './helpers/relay.js';
import { browserTraffic, cutsScenario, SCENARIO_VARS } from './helpers/resume-driver.js';
import { launchChromium } from './helpers/browser.js';

const WAIT_MS = 20_000;
const SCREENSHOT = path.join(ROOT, 'tests', 'artifacts', 'page.png');

let relay;
let browser;
let page;
const consoleErrors = [];

before(async () => {
  relay = await startRelay({ vars: { RECONNECT_SECONDS: '30' } });
  browser = await launchChromium();
  const context = await browser.newContext({ viewport: { width: 1440, height: 1000 } });
  page = await context.newPage();
  page.on('console', (msg) => { if (msg.type() === 'error') consoleErrors.push(`console: ${msg.text()}`); });
  page.on('pageerror', (err) => consoleErrors.push(`pageerror: ${err.message}`));
  page.on('requestfailed', (req) => consoleErrors.push(`requestfailed: ${req.url()} ${req.failure()?.errorText}`));
});

after(async () => {
  await browser?.close();
  await relay?.stop();
});

/** The log lines of a panel, as "dir text". */
async function logOf(panel) {
  return page.$$eval(`${panel} .log .frame`, (els) => els.map((e) => `${e.dataset.dir} ${e.querySelector('.text').textContent}`));
}

/** Waits until `panel`'s log has `count` frames in direction `dir` whose text is `text`. */
async function seeFrame(panel, dir, text, count = 1) {
  try {
    await page.waitForFunction(([sel, d, t, n]) => {
      const hits = [...document.querySelectorAll(`${sel} .log .frame[data-dir="${d}"] .text`)].filter((e) => e.textContent === t);
      return hits.length >= n;
    }, [panel, dir, text, count], { timeout: WAIT_MS });
  } catch (e) {
    throw new Error(`${panel} never showed ${count}× ${dir} ${JSON.stringify(text)}; its log:\n  ${(await logOf(panel)).join('\n  ')}`, { cause: e });
  }
}

async function seeState(panel, state) {
  try {
    await page.waitForFunction(([sel, s]) => document.querySelector(`${sel} .state`)?.dataset.state === s, [panel, state], { timeout: WAIT_MS });
  } catch (e) {
    const now = await page.textContent(`${panel} .state`);
    throw new Error(`${panel} never reached state ${state} (shows "${now}"); log:\n  ${(await logOf(panel)).join('\n  ')}`, { cause: e });
  }
}

async function hostCommand(n, line) {
  await page.fill(`#host${n} .cmd`, line);
  await page.press(`#host${n} .cmd`, 'Enter');
  await seeFrame(`#host${n}`, 'out', line);
}

async function clientSend(n, text) {
  await page.fill(`#client${n} .msg`, text);
  await page.press(`#client${n} .msg`, 'Enter');
  await seeFrame(`#client${n}`, 'out', text);
}

async function startHost(n) {
  await page.click(`#host${n} .start`);
  await seeState(`#host${n}`, 'open');
  await page.waitForFunction((sel) => document.querySelector(sel)?.dataset.sid, `#host${n} .sid`, { timeout: WAIT_MS });
  const sid = await page.getAttribute(`#host${n} .sid`, 'data-sid');
  await seeFrame(`#host${n}`, 'in', `session: ${sid}`);
  return sid;
}

/** Connects client `c` (its session id is filled in from its host) and waits for `connected: <id>` at the host. */
async function connectClient(c, hostN, id) {
  await page.click(`#client${c} .connect`);
  await seeState(`#client${c}`, 'open');
  await seeFrame(`#host${hostN}`, 'in', `connected: ${id}`);
}

const sids = {};
const secrets = {};

/** The text of a host panel's info field (`sid`, `secret`, `clients`, `links`). */
const info = (n, field) => page.textContent(`#host${n} .${field}`);

/** Waits until `fn(document)` (a string of JS over `document`) is true; explains itself on failure. */
async function until(what, fn, arg) {
  try {
    await page.waitForFunction(fn, arg, { timeout: WAIT_MS });
  } catch (e) {
    throw new Error(`never: ${what}`, { cause: e });
  }
}

/** Sends /version from host n and waits for the answer: everything the relay sent before is in the log. */
async function barrier(n) {
  const before = (await logOf(`#host${n}`)).filter((l) => l.startsWith('in !version')).length;
  await hostCommand(n, '/version');
  await page.waitForFunction(([sel, k]) => [...document.querySelectorAll(`${sel} .log .frame[data-kind="version"]`)].length > k,
    [`#host${n}`, before], { timeout: WAIT_MS });
}

async function shot(name, selector) {
  mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
  await page.addStyleTag({ content: '.site-header { position: static !important; }' });
  const file = path.join(path.dirname(SCREENSHOT), `${name}.png`);
  await page.locator(selector).screenshot({ path: file });
  console.log(`screenshot: ${file}`);
}

test('the page loads with the docs and three hosts with two clients each', async () => {
  const res = await page.goto(relay.url + '/');
  assert.equal(res.status(), 200);
  assert.match(await page.title(), /Askutron Relay/);
  for (const id of ['api', 'host', 'clients', 'matchmaking', 'close-codes', 'library', 'test']) {
    assert.ok(await page.$(`section#${id}`), `section #${id}`);
  }
  const docs = await page.textContent('main');
  for (const fact of ['Session not found', 'Session already exists', 'Could not connect to session (not found or invalid secret)',
    '!added-slave: <slave-sid>', '!set-master: <master-sid>', '!master-left', '!slave-left: <slave-sid>', 'taken over', 'replaced',
    'session full', 'session closed', 'host unavailable', 'error: no slots available, max clients reached', '/close-session',
    '/leave-session', 'numHostsLookingForSession', 'keepAlive=<str>', 'client=<uuid>', 'reconnect=true|false']) {
    assert.ok(docs.includes(fact), `docs mention ${JSON.stringify(fact)}`);
  }
  for (let h = 1; h <= 3; h++) {
    await page.locator(`#group${h} #host${h} .start`).waitFor();
    for (const c of [2 * h - 1, 2 * h]) await page.locator(`#group${h} #client${c} .connect`).waitFor();
  }
  assert.equal(await page.locator('.panel.host').count(), 3);
  assert.equal(await page.locator('.panel.client').count(), 6);
});

test('close-code table: 1008 and the reasons of 1003 and 1009', async () => {
  const rows = await page.$$eval('#close-codes table:first-of-type tbody tr', (trs) => trs.map((tr) => [...tr.cells].map((c) => c.textContent.trim())));
  const byCode = Object.fromEntries(rows.map((r) => [r[0], r[1]]));
  assert.equal(byCode['1003'], 'binary frames are not supported');
  assert.equal(byCode['1008'], 'rate limit exceeded');
  assert.equal(byCode['1009'], 'message too big (limit 1 MiB)');
  assert.equal(byCode['1013'], 'host unavailable');
  for (const [code, reason] of [['4001', 'taken over'], ['4002', 'replaced'], ['4003', 'session full'], ['4004', 'session closed']]) {
    assert.equal(byCode[code], reason);
  }
});

test('settings table: RATE_LIMIT_*, MAX_SEARCHES; the 256-byte keepAlive limit is documented', async () => {
  const rows = await page.$$eval('#settings + p + .table-wrap tbody tr', (trs) => trs.map((tr) => [...tr.cells].map((c) => c.textContent.trim())));
  const byName = Object.fromEntries(rows.map((r) => [r[0], r[1]]));
  assert.deepEqual(
    { ...byName },
    { KEEP_ALIVE_SECONDS: '30', RECONNECT_SECONDS: '120', MAX_CLIENTS: '8', RATE_LIMIT_PER_SECOND: '200', RATE_LIMIT_BURST: '500',
      RATE_LIMIT_BYTES_PER_SECOND: '1048576', RATE_LIMIT_BYTES_BURST: '4194304',
      MAX_SEARCHES: '10000', STEAM_API_BASE: 'https://api.steampowered.com' },
  );
  const keepAliveRow = await page.$$eval('#params + .table-wrap tbody tr', (trs) => trs.map((tr) => tr.textContent).find((t) => t.includes('keepAlive=')));
  assert.match(keepAliveRow, /At most 256 bytes/);
  assert.match(keepAliveRow, /400/);
});

test('host 1 and clients 1 and 2 talk both ways', async () => {
  sids[1] = await startHost(1);
  await seeFrame('#host1', 'in', `secret: ${await page.textContent('#host1 .secret')}`);
  assert.equal(await page.inputValue('#client1 .opt-sid'), sids[1], 'client 1 is given its host\'s session id');
  await connectClient(1, 1, 1);
  await connectClient(2, 1, 2);

  await clientSend(1, 'hello from client 1');
  await seeFrame('#host1', 'in', '1: hello from client 1');
  await clientSend(2, 'and from client 2');
  await seeFrame('#host1', 'in', '2: and from client 2');

  await hostCommand(1, '1: hi client 1');
  await seeFrame('#client1', 'in', 'hi client 1');
  await hostCommand(1, '2: hi client 2');
  await seeFrame('#client2', 'in', 'hi client 2');
  await hostCommand(1, '7: nobody');
  await seeFrame('#host1', 'in', 'unknown: 7');
  await hostCommand(1, 'hello');
  await seeFrame('#host1', 'in', 'invalid');
  // Barrier: the relay handles the host's frames in order and client 1's
  // socket delivers in order, so once client 1 shows this, anything the relay
  // sent it for `2: hi client 2` would be in its log before it.
  await hostCommand(1, '1: after the others');
  await seeFrame('#client1', 'in', 'after the others');
  const log = await logOf('#client1');
  assert.ok(!log.includes('in hi client 2'), 'client 1 does not see client 2\'s message');
  assert.deepEqual(log.filter((l) => l.startsWith('in ')).slice(-2), ['in hi client 1', 'in after the others'],
    'client 1 got nothing between its own two messages');
});

test('client panels are named apart from relay ids and show the id the relay gave them', async () => {
  assert.equal(await page.textContent('#client1 .title'), 'Client 1a');
  assert.equal(await page.textContent('#client2 .title'), 'Client 1b');
  await until('client 1 shows id 1', () => document.querySelector('#client1 .rid').textContent === 'id 1 at Host 1');
  await until('client 2 shows id 2', () => document.querySelector('#client2 .rid').textContent === 'id 2 at Host 1');
  await until('host 1 lists its clients by id and panel',
    () => [...document.querySelectorAll('#host1 .clients .cid')].map((e) => e.textContent).join('|') === '1 · Client 1a|2 · Client 1b');
  // Host 2's first client is the relay's client 1 there, whatever the panel's place on the page.
  sids[2] = await startHost(2);
  await connectClient(3, 2, 1);
  assert.equal(await page.textContent('#client3 .title'), 'Client 2a');
  await until('client 3 (panel 2a) shows id 1 at Host 2', () => document.querySelector('#client3 .rid').textContent === 'id 1 at Host 2');
});

test('sid and secret are shown in full, not truncated', async () => {
  secrets[1] = await info(1, 'secret');
  assert.equal(await info(1, 'sid'), sids[1]);
  assert.match(sids[1], /^[0-9a-f-]{36}$/);
  assert.match(secrets[1], /^[0-9a-f]{64}$/);
  for (const field of ['sid', 'secret']) {
    const box = await page.$eval(`#host1 .${field}`, (e) => ({ sw: e.scrollWidth, cw: e.clientWidth, ov: getComputedStyle(e).textOverflow }));
    assert.ok(box.sw <= box.cw, `${field} fits its box (${box.sw} <= ${box.cw})`);
    assert.notEqual(box.ov, 'ellipsis');
  }
  await shot('host1-full-ids', '#host1');
});

test('multi-line messages: Shift+Enter makes a new line, Enter sends', async () => {
  await page.fill('#host1 .cmd', '1: first line\nsecond line');
  await page.press('#host1 .cmd', 'Enter');
  await seeFrame('#client1', 'in', 'first line\nsecond line');
  await page.click('#client2 .msg');
  await page.keyboard.type('up');
  await page.keyboard.press('Shift+Enter');
  await page.keyboard.type('down');
  assert.equal(await page.inputValue('#client2 .msg'), 'up\ndown', 'Shift+Enter did not send');
  await page.keyboard.press('Enter');
  await seeFrame('#host1', 'in', '2: up\ndown');
  assert.equal(await page.inputValue('#client2 .msg'), '');
});

/** A panel's resume counter (`row`: 'now' or 'at-cut'). */
const counter = (panel, name, row = 'now') => page.textContent(`${panel} .counters tr.${row} [data-counter="${name}"]`);

/** How many times `panel`'s log shows `dir text`. */
const times = async (panel, line) => (await logOf(panel)).filter((l) => l === line).length;

test('Cut network on a client: its socket goes silent both ways, the heartbeat finds it, the library resumes; counters before and after', async () => {
  assert.equal(await counter('#client1', 'resumes', 'at-cut'), '—');
  await page.click('#client1 .cut');
  await until('client 1 logs the cut', () => document.querySelector('#client1 .log .frame[data-kind="cut"]'));
  assert.equal(await page.isDisabled('#client1 .cut'), true, 'one cut per socket');
  const atCut = { sent: await counter('#client1', 'sent', 'at-cut'), received: await counter('#client1', 'received', 'at-cut') };
  assert.deepEqual(atCut, { sent: '1', received: '3' }, 'at the cut: what client 1 had sent and received so far');
  // Both ways into the silence: the relay's frame is lost on the dead socket, the client's is kept.
  await hostCommand(1, '1: while client 1 was cut');
  await clientSend(1, 'sent into the cut');
  await until('client 1 resumed', () => document.querySelector('#client1 .counters tr.now [data-counter="resumes"]').textContent === '1');
  await seeState('#client1', 'open');
  await seeFrame('#client1', 'in', 'while client 1 was cut');
  await seeFrame('#host1', 'in', '1: sent into the cut');
  // Barrier: a later frame each way, then each of the two is there once.
  await hostCommand(1, '1: after the cut');
  await seeFrame('#client1', 'in', 'after the cut');
  await clientSend(1, 'also after the cut');
  await seeFrame('#host1', 'in', '1: also after the cut');
  assert.equal(await times('#client1', 'in while client 1 was cut'), 1);
  assert.equal(await times('#host1', 'in 1: sent into the cut'), 1);
  const log = await logOf('#client1');
  assert.ok(log.some((l) => /^sys no frame for \d+ ms: connection dead \(heartbeat\) — reconnecting in/.test(l)), 'the heartbeat found it');
  assert.ok(log.some((l) => /^sys resumed: the relay had my frames up to 1, 1 sent again; its frames after 3 replayed$/.test(l)), log.join('\n'));
  assert.ok(log.includes('out sent into the cut'), 'sent again (↻) after the resume');
  assert.equal(await page.getAttribute('#client1 .log .frame[data-kind="resent"] .arrow', 'title'), 'sent again after a resume (the relay had not handled it)');
  const host = await logOf('#host1');
  assert.ok(!host.includes('in disconnected: 1'), 'to the host, client 1 never left');
  for (const [name, value] of [['resumes', '1'], ['dead', '1'], ['resent', '1'], ['gaps', '0'], ['sent', '3'], ['received', '5']]) {
    assert.equal(await counter('#client1', name), value, `client 1 ${name}`);
  }
  assert.equal(await page.isDisabled('#client1 .cut'), false, 'the new socket can be cut again');
  await shot('cut-client', '#group1');
});

test('Cut network on a host: it resumes its session; its clients are not listed again and nothing is doubled', async () => {
  await page.click('#host1 .cut');
  await until('host 1 logs the cut', () => document.querySelector('#host1 .log .frame[data-kind="cut"]'));
  await clientSend(2, 'to a silent host');
  await until('host 1 resumed', () => document.querySelector('#host1 .counters tr.now [data-counter="resumes"]').textContent === '1');
  await seeState('#host1', 'open');
  await seeFrame('#host1', 'in', '2: to a silent host');
  await barrier(1);
  assert.equal(await times('#host1', 'in 2: to a silent host'), 1);
  const log = await logOf('#host1');
  const again = log.lastIndexOf(`in session: ${sids[1]}`);
  assert.ok(again > log.indexOf(`in session: ${sids[1]}`), 'the resume is a take-over: session: again');
  assert.deepEqual(log.slice(again).filter((l) => /^in (dis)?connected: /.test(l)), [], 'a resume continues the stream: no client listed again');
  await until('host 1 still lists both clients', () => [...document.querySelectorAll('#host1 .clients .cid')].map((e) => e.textContent).join('|') === '1 · Client 1a|2 · Client 1b');
  assert.equal(await counter('#host1', 'dead'), '1');
  await hostCommand(1, '2: host is back');
  await seeFrame('#client2', 'in', 'host is back');
  await shot('cut-host', '#host1');
});

test('resume off: the panel asks for keepAlive, and a cut socket stays silent (nothing notices)', async () => {
  await page.uncheck('#client6 .opt-resume');
  assert.equal(await page.isDisabled('#client6 .opt-keepalive'), false, 'keepAlive is for resume off');
  await page.fill('#client6 .opt-keepalive', 'tick');
  await page.check('#client6 .opt-resume');
  assert.equal(await page.isDisabled('#client6 .opt-keepalive'), true, 'with resume, the heartbeat replaces keepAlive');
  await page.uncheck('#client6 .opt-resume');
  // On Host 2's session (Host 3, its own, starts later).
  await page.fill('#client6 .opt-sid', sids[2]);
  await page.click('#client6 .connect');
  await seeState('#client6', 'open');
  await seeFrame('#host2', 'in', 'connected: 2');
  const log = await logOf('#client6');
  assert.ok(log.some((l) => /^sys connecting: ws:.*[?&]keepAlive=tick/.test(l) && !/resume=/.test(l)), log.join('\n'));
  await page.click('#client6 .cut');
  await until('client 6 logs the cut', () => /nothing will notice/.test(document.querySelector('#client6 .log .frame[data-kind="cut"]')?.textContent ?? ''));
  await page.click('#client6 .close');
  await seeState('#client6', 'closed');
});

test('hosts 1 and 2 link with /join-session: !added-slave and !set-master', async () => {
  await hostCommand(1, '/join-session master');
  await hostCommand(2, `/join-session id=${sids[1]}`);
  await seeFrame('#host1', 'in', `!added-slave: ${sids[2]}`);
  await seeFrame('#host2', 'in', `!set-master: ${sids[1]}`);
  await until('host 1 shows master of Host 2', () => document.querySelector('#host1 .links').textContent === 'master of Host 2');
  await until('host 2 shows slave of Host 1', () => document.querySelector('#host2 .links').textContent === 'slave of Host 1');

  // The slave's client 1 is the master's 3 (the master has 2 clients).
  await clientSend(3, 'from the slave side');
  await seeFrame('#host2', 'in', '1: from the slave side');
  await seeFrame('#host1', 'in', '3: from the slave side');
  await hostCommand(1, '3: from the master');
  await seeFrame('#client3', 'in', 'from the master');
  await hostCommand(2, '0: slave host speaking');
  await seeFrame('#host1', 'in', '0: slave host speaking');

  await page.click('#host1 .chip[data-command="/stats"]');
  await page.waitForFunction(() => [...document.querySelectorAll('#host1 .log .frame[data-kind="stats"] .text')]
    .some((e) => /^!stats \{.*"numHostsOnline":\d+/.test(e.textContent)), null, { timeout: WAIT_MS });
});

test('after its own /leave-session the master panel no longer claims its slave', async () => {
  await hostCommand(1, '/leave-session');
  await seeFrame('#host2', 'in', '!master-left');
  assert.equal(await info(1, 'links'), '—');
  await until('host 2 shows no link', () => document.querySelector('#host2 .links').textContent === '—');
  await shot('after-leave', '#group1');
});

// Needs the relay's feed of PROTOCOL.md section 4 (connected:/disconnected: for a slave's clients);
// an older relay fails here at "connected: 3".
test('[needs slave-client feed] the master lists its slave\'s clients from connected:/disconnected:', async () => {
  await hostCommand(1, '/join-session master');
  await hostCommand(2, `/join-session id=${sids[1]}`);
  await seeFrame('#host1', 'in', `!added-slave: ${sids[2]}`, 2);
  await seeFrame('#host1', 'in', 'connected: 3');
  await until('host 1 lists 3 via Host 2', () => [...document.querySelectorAll('#host1 .clients .cid')].map((e) => e.textContent).join('|')
    === '1 · Client 1a|2 · Client 1b|3 · via Host 2');
  await shot('master-with-slave-clients', '#group1');
  await hostCommand(2, '/leave-session');
  await seeFrame('#host1', 'in', `!slave-left: ${sids[2]}`);
  const log = await logOf('#host1');
  assert.ok(log.lastIndexOf('in disconnected: 3') < log.lastIndexOf(`in !slave-left: ${sids[2]}`) && log.includes('in disconnected: 3'),
    'disconnected: 3 comes before !slave-left');
  await until('host 1 lists only its own clients', () => [...document.querySelectorAll('#host1 .clients .cid')].map((e) => e.textContent).join('|')
    === '1 · Client 1a|2 · Client 1b');
  assert.equal(await info(1, 'links'), '—');
});

test('closing a client: the host sees disconnected', async () => {
  await page.click('#client1 .close');
  await seeFrame('#host1', 'in', 'disconnected: 1');
  await seeState('#client1', 'closed');
  assert.match(await page.textContent('#client1 .state'), /closed 1000/);
  assert.equal(await page.textContent('#client1 .rid'), 'id —');
});

test('Drop: the library takes the session over; the log never shows the secret in a URL', async () => {
  await page.click('#host1 .drop');
  await seeFrame('#host1', 'in', `session: ${sids[1]}`, 2);
  await seeFrame('#host1', 'in', `secret: ${secrets[1]}`, 2);
  await seeState('#host1', 'open');
  // Everything the relay sent for the take-over is in the log once /version is answered.
  await barrier(1);
  const log = await logOf('#host1');
  const again = log.lastIndexOf(`in session: ${sids[1]}`);
  const replay = log.slice(again).filter((l) => /^in (dis)?connected: /.test(l));
  assert.deepEqual(replay, [], 'with resume (the panel\'s default) the take-over continues the stream: no client listed again');
  assert.ok(log.slice(again).some((l) => /^sys connecting: .*resume=1&have=\d+/.test(l)) || log.some((l) => /new socket \(take-over\): .*resume=1&have=\d+/.test(l)),
    'the new socket says what it has');
  for (const l of log) assert.ok(!/secret=(?!\*\*\*)/.test(l), `no secret in a logged URL: ${l}`);
  assert.ok(log.some((l) => l.includes('secret=***')), 'the take-over URL is logged with the secret hidden');

  await clientSend(2, 'after the take-over');
  await seeFrame('#host1', 'in', '2: after the take-over');
  await hostCommand(1, '2: still here');
  await seeFrame('#client2', 'in', 'still here');
});

test('join chips offer only other live sessions; a host taken over elsewhere ends with empty lists', async () => {
  sids[3] = await startHost(3);
  await until('host 2 offers Host 1 and Host 3', () => [...document.querySelectorAll('#host2 .chip')].map((e) => e.textContent)
    .filter((t) => t.startsWith('join')).join('|') === 'join Host 1|join Host 3');
  // Host 3 is closed and started again as a take-over of Host 1's session.
  await page.click('#host3 .close');
  await seeState('#host3', 'closed');
  await page.fill('#host3 .opt-id', sids[1]);
  await page.fill('#host3 .opt-secret', secrets[1]);
  await page.click('#host3 .start');
  await seeState('#host3', 'open');
  await seeFrame('#host3', 'in', `session: ${sids[1]}`);
  await seeState('#host1', 'closed');
  assert.match(await page.textContent('#host1 .state'), /closed 4001 taken over/);
  assert.equal(await info(1, 'clients'), '—');
  assert.equal(await info(1, 'links'), '—');
  await until('client 1b now names Host 3 as its host', () => document.querySelector('#client2 .rid').textContent === 'id 2 at Host 3');
  const chips = async (n) => page.$$eval(`#host${n} .chip`, (els) => els.filter((e) => e.textContent.startsWith('join'))
    .map((e) => `${e.textContent} ${e.dataset.command}`));
  assert.deepEqual(await chips(3), [`join Host 2 /join-session id=${sids[2]}`], 'Host 3 is not offered its own session');
  assert.deepEqual(await chips(2), [`join Host 3 /join-session id=${sids[1]}`], 'the ended panel is not offered');
  for (const l of await logOf('#host3')) assert.ok(!/secret=(?!\*\*\*)/.test(l), `no secret in a logged URL: ${l}`);
  await shot('taken-over', '#test');
});

// Host 3 took Host 1's session over as a new object, so with nothing (resume=1, have=0): PROTOCOL.md 7.5
// gives it ␁gap and the session's view afresh (its client 2); tests/resume.test.js checks the relay's side.
test('Close empties the panel\'s clients and links, and the session leaves the join chips', async () => {
  // Host 3 now holds Host 1's session (and its client 2); link it as master of Host 2.
  await hostCommand(2, '/leave-session');
  await barrier(2);
  await hostCommand(3, '/join-session master');
  await hostCommand(2, `/join-session id=${sids[1]}`);
  await until('host 3 is master of Host 2', () => document.querySelector('#host3 .links').textContent === 'master of Host 2');
  assert.match(await info(3, 'clients'), /^2 · Client 1b/);
  await page.click('#host3 .close');
  await seeState('#host3', 'closed');
  assert.equal(await info(3, 'clients'), '—');
  assert.equal(await info(3, 'links'), '—');
  await until('host 2 no longer offers the closed session', () => ![...document.querySelectorAll('#host2 .chip')].some((e) => e.textContent.startsWith('join')));
  await shot('after-close', '#group3');
});

/**
 * A scripted stand-in for the relay's WebSocket, installed in a second page:
 * it speaks the protocol's slave-client feed (PROTOCOL.md section 4) so the
 * page's handling of it is tested whatever the relay under test does.
 */
function fakeRelayFeed() {
  const hostsBySid = new Map();
  let nextSid = 1;
  class FakeSocket extends EventTarget {
    constructor(url) {
      super();
      this.url = url;
      this.readyState = 0;
      const u = new URL(url);
      const m = /^\/session\/(.+)$/.exec(u.pathname);
      // Section 7 (resume), as far as a socket that never dies needs it.
      this.resume = u.searchParams.get('resume') === '1';
      this.handled = 0;
      setTimeout(() => {
        this.readyState = 1;
        this.onopen?.({});
        if (m && this.resume) this.tell('\u0001resume 0');
        if (m) {
          const h = hostsBySid.get(m[1]);
          this.host = h;
          this.id = h.clients.length + 1;
          h.clients.push(this);
          h.tell(`connected: ${this.id}`);
          if (h.master) h.master.tell(`connected: ${h.offset + this.id}`);
        } else {
          this.sid = `S${nextSid++}`;
          this.clients = [];
          this.slaves = [];
          hostsBySid.set(this.sid, this);
          this.tell(`session: ${this.sid}`);
          this.tell(`secret: ${'f'.repeat(64)}`);
          if (this.resume) this.tell('\u0001resume 0');
        }
      }, 0);
    }
    tell(text) { setTimeout(() => this.onmessage?.({ data: text }), 0); }
    send(text) {
      if (text === '\u0001ping') { this.tell('\u0001pong'); return; }
      if (text.startsWith('\u0001ack ')) { this.tell(`\u0001ack ${this.handled}`); return; }
      this.handled += 1;
      const join = /^\/join-session id=(.+)$/.exec(text);
      if (join) {
        const master = hostsBySid.get(join[1]);
        this.master = master;
        this.offset = master.clients.length + master.slaves.reduce((n, s) => n + s.clients.length, 0);
        master.slaves.push(this);
        master.tell(`!added-slave: ${this.sid}`);
        for (const c of this.clients) master.tell(`connected: ${this.offset + c.id}`);
        this.tell(`!set-master: ${master.sid}`);
      } else if (text === '/leave-session' && this.master) {
        for (const c of this.clients) this.master.tell(`disconnected: ${this.offset + c.id}`);
        this.master.tell(`!slave-left: ${this.sid}`);
        this.master.slaves = this.master.slaves.filter((s) => s !== this);
        this.master = null;
      }
    }
    close() { this.readyState = 3; }
  }
  window.WebSocket = FakeSocket;
}

test('the master lists its slave\'s clients from the connected:/disconnected: feed (scripted relay feed)', async () => {
  const fake = await page.context().newPage();
  fake.on('pageerror', (err) => consoleErrors.push(`pageerror (fake feed page): ${err.message}`));
  await fake.addInitScript(fakeRelayFeed);
  await fake.goto(relay.url + '/');
  const names = (n) => fake.$$eval(`#host${n} .clients .cid`, (els) => els.map((e) => e.textContent).join('|'));
  const wait = (fn, arg) => fake.waitForFunction(fn, arg, { timeout: WAIT_MS });
  await fake.click('#host1 .start');
  await wait(() => document.querySelector('#host1 .sid').dataset.sid === 'S1');
  for (const c of [1, 2]) await fake.click(`#client${c} .connect`);
  await fake.click('#host2 .start');
  await wait(() => document.querySelector('#host2 .sid').dataset.sid === 'S2');
  await fake.click('#client3 .connect');
  await wait(() => document.querySelector('#host2 .clients').textContent.includes('1 · Client 2a'));
  await wait(() => document.querySelectorAll('#host1 .clients .cid').length === 2);
  await fake.fill('#host2 .cmd', '/join-session id=S1');
  await fake.press('#host2 .cmd', 'Enter');
  await wait(() => document.querySelectorAll('#host1 .clients .cid').length === 3);
  assert.equal(await names(1), '1 · Client 1a|2 · Client 1b|3 · via Host 2');
  assert.equal(await fake.textContent('#host1 .links'), 'master of Host 2');
  mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
  await fake.addStyleTag({ content: '.site-header { position: static !important; }' });
  await fake.locator('#group1').screenshot({ path: path.join(path.dirname(SCREENSHOT), 'master-slave-feed.png') });
  await fake.fill('#host2 .cmd', '/leave-session');
  await fake.press('#host2 .cmd', 'Enter');
  await wait(() => document.querySelector('#host1 .links').textContent === '—');
  assert.equal(await names(1), '1 · Client 1a|2 · Client 1b');
  assert.equal(await fake.textContent('#host2 .links'), '—');
  await fake.close();
});

// The resume scenario (tests/resume.test.js runs it in Node) with the
// library as the page loads it (/relay-client.js from the relay), in Chromium.
// Its own relay: the scenario raises the rate limits (SCENARIO_VARS) and
// needs the object's lifecycle log.
test('the page\'s library in Chromium: a host and three clients at 60 Hz both ways; the host cut for 5 s, a client, both, then all until the object is evicted', { timeout: 240_000 }, async (t) => {
  const cleanups = [];
  try {
    const scenarioRelay = await startRelay({ vars: SCENARIO_VARS });
    cleanups.push(() => scenarioRelay.stop());
    const T = await browserTraffic(scenarioRelay.url, { browser });
    cleanups.push(() => T.close());
    const { streams, detections } = await cutsScenario(T, scenarioRelay, (fn) => cleanups.push(fn));
    assert.deepEqual(T.errors, [], 'no page errors');
    t.diagnostic(`streams: ${JSON.stringify(streams)}`);
    t.diagnostic(`detections: ${JSON.stringify(detections)}`);
  } finally {
    for (const c of cleanups.reverse()) await c().catch(() => {});
  }
});

test('screenshot, and no console errors', async () => {
  await page.evaluate(() => {
    document.querySelectorAll('.log').forEach((l) => { l.scrollTop = l.scrollHeight; });
    window.scrollTo(0, 0); // the sticky header belongs at the top of a full-page shot
  });
  mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
  await page.screenshot({ path: SCREENSHOT, fullPage: true });
  console.log(`screenshot: ${SCREENSHOT}`);
  await shot('test-area', '#test');
  assert.deepEqual(consoleErrors, []);
});
