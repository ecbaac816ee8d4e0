// The page (GET /) in a real browser: docs, the 3×(host + 2 clients) test
// area, and relay-client.js doing relay, linking and take-over against the
// built worker under `wrangler dev`. Headless Debian Chromium via playwright-core.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { startRelay, ROOT } from './helpers/relay.js';

const WAIT_MS = 20_000;
const SCREENSHOT = path.join(ROOT, 'tests', 'artifacts', 'page.png');

let relay;
let browser;
let page;
const consoleErrors = [];

before(async () => {
  relay = await startRelay({ vars: { RECONNECT_SECONDS: '30' } });
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run', '--disable-sync'],
  });
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
  assert.ok(!(await logOf('#client1')).includes('in hi client 2'), 'client 1 does not see client 2\'s message');
});

test('hosts 1 and 2 link with /join-session: !added-slave and !set-master', async () => {
  sids[2] = await startHost(2);
  await connectClient(3, 2, 1);
  await hostCommand(1, '/join-session master');
  await hostCommand(2, `/join-session id=${sids[1]}`);
  await seeFrame('#host1', 'in', `!added-slave: ${sids[2]}`);
  await seeFrame('#host2', 'in', `!set-master: ${sids[1]}`);
  await page.waitForFunction(() => document.querySelector('#host1 .links').textContent.includes('master of Host 2'));

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

test('closing a client: the host sees disconnected', async () => {
  await page.click('#client1 .close');
  await seeFrame('#host1', 'in', 'disconnected: 1');
  await seeState('#client1', 'closed');
  assert.match(await page.textContent('#client1 .state'), /closed 1000/);
});

test('a dropped host socket: the library takes the session over again', async () => {
  const secret = await page.textContent('#host1 .secret');
  await page.click('#host1 .drop');
  await seeFrame('#host1', 'in', `session: ${sids[1]}`, 2);
  await seeFrame('#host1', 'in', `secret: ${secret}`, 2);
  await seeState('#host1', 'open');
  // After the second `session:`, the replay of the connected client.
  const log = await logOf('#host1');
  const again = log.lastIndexOf(`in session: ${sids[1]}`);
  await page.waitForFunction(([start]) => [...document.querySelectorAll('#host1 .log .frame')].slice(start)
    .some((e) => e.dataset.dir === 'in' && e.querySelector('.text').textContent === 'connected: 2'), [again], { timeout: WAIT_MS });
  assert.ok(log.slice(again).every((l) => l !== 'in connected: 1'), 'closed client 1 is not replayed');

  await clientSend(2, 'after the take-over');
  await seeFrame('#host1', 'in', '2: after the take-over');
  await hostCommand(1, '2: still here');
  await seeFrame('#client2', 'in', 'still here');
});

test('screenshot, and no console errors', async () => {
  await page.evaluate(() => {
    document.querySelectorAll('.log').forEach((l) => { l.scrollTop = l.scrollHeight; });
    window.scrollTo(0, 0); // the sticky header belongs at the top of a full-page shot
  });
  mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
  await page.screenshot({ path: SCREENSHOT, fullPage: true });
  console.log(`screenshot: ${SCREENSHOT}`);
  assert.deepEqual(consoleErrors, []);
});
