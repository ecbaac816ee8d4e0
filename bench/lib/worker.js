// Starts a Worker under `wrangler dev` (adapted from tests/helpers/relay.js:
// own --config, and it finds the workerd processes wrangler started).
//
// wrangler dev runs two workerd processes: a proxy on the port it prints, and
// the runtime that runs the Worker, on a port of its own. The load generator
// connects straight to the runtime's entry socket, so the proxy (which does not
// exist in production) is neither measured nor a second bottleneck; `proxyWs`
// is there for a comparison.
import { spawn } from 'node:child_process';
import { appendFileSync, cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { cmdline, comm, descendants, listeningPorts } from './proc.js';
import { ROOT, freePort } from '../../tests/helpers/relay.js';

export { ROOT, freePort };

export const WRANGLER = path.join(ROOT, 'node_modules/.bin/wrangler');


export function wranglerEnv() {
  return {
    ...process.env,
    PATH: `${path.join(ROOT, 'node_modules/.bin')}:${process.env.PATH}`,
    WRANGLER_SEND_METRICS: 'false',
    CI: 'true',
    FORCE_COLOR: '0',
    // wrangler dev attaches a trace collector (a tail worker storing every
    // event in SQLite) to the Worker: dev-only work per WebSocket event that
    // production does not do. Off unless BENCH_LOCAL_OBSERVABILITY=1.
    X_LOCAL_OBSERVABILITY: process.env.BENCH_LOCAL_OBSERVABILITY === '1' ? 'true' : 'false',
  };
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

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
 * A copy of the built relay (build/, public/ and wrangler.toml without its
 * [build] section) in a temporary directory. wrangler dev watches src/ and
 * rebuilds and restarts the Worker when it changes; people editing src/
 * during a bench run must not swap the relay under it.
 */
export function relaySnapshot() {
  const dir = mkdtempSync(path.join(tmpdir(), 'bench-relay-'));
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

/** Starts `wrangler dev` for `config` (absolute, or relative to ROOT) with Worker variables `vars`. */
export async function startWorker({ config = 'wrangler.toml', vars = {} } = {}) {
  const port = await freePort();
  const inspectorPort = await freePort();
  const persistTo = mkdtempSync(path.join(tmpdir(), 'bench-state-'));
  const args = [
    'dev', '--config', config, '--ip', '127.0.0.1', '--port', String(port), '--inspector-port', String(inspectorPort),
    '--persist-to', persistTo, '--show-interactive-dev-session=false',
  ];
  for (const [k, v] of Object.entries(vars)) args.push('--var', `${k}:${v}`);
  const child = spawn(WRANGLER, args, { cwd: ROOT, env: wranglerEnv(), stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  const w = {
    child, port, inspectorPort, persistTo, output: '',
    /** How often wrangler's output has matched `pattern` so far. */
    count(pattern) {
      return (w.output.match(new RegExp(pattern.source, 'g')) || []).length;
    },
    /** Is the runtime workerd found at start still running (wrangler did not restart it)? */
    alive() {
      return comm(w.runtimePid) === 'workerd';
    },
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        try { process.kill(-child.pid, 'SIGTERM'); } catch {}
        const timer = setTimeout(() => { try { process.kill(-child.pid, 'SIGKILL'); } catch {} }, 8000);
        await exited;
        clearTimeout(timer);
      }
      // workerd may outlive wrangler by a moment; make sure ours are gone.
      for (const pid of [w.runtimePid, w.proxyPid]) {
        for (let i = 0; i < 50 && pid && comm(pid) === 'workerd'; i++) await sleep(100);
        if (pid && comm(pid) === 'workerd') try { process.kill(pid, 'SIGKILL'); } catch {}
      }
      rmSync(persistTo, { recursive: true, force: true });
    },
  };
  // wrangler's whole output also goes to a file, for a look after the run.
  w.logFile = path.join(tmpdir(), `bench-wrangler-${path.basename(path.dirname(path.resolve(ROOT, config)))}-${child.pid}.log`);
  writeFileSync(w.logFile, '');
  const onData = (chunk) => { w.output += chunk.toString(); appendFileSync(w.logFile, chunk); };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);
  const deadline = Date.now() + 180_000;
  while (!/Ready on http/.test(w.output)) {
    if (child.exitCode !== null) throw new Error(`wrangler exited (${child.exitCode}):\n${w.output.slice(-3000)}`);
    if (Date.now() > deadline) { await w.stop(); throw new Error(`wrangler never got ready:\n${w.output.slice(-3000)}`); }
    await sleep(100);
  }
  // Find the two workerd processes among wrangler's descendants.
  for (let i = 0; i < 100 && !w.runtimePort; i++) {
    const kids = descendants(child.pid);
    w.wranglerPids = kids.filter((p) => comm(p) !== 'workerd' && cmdline(p).some((a) => a.includes('wrangler'))).concat(child.pid);
    for (const pid of kids.filter((p) => comm(p) === 'workerd')) {
      if (cmdline(pid).some((a) => a === `--socket-addr=entry=127.0.0.1:${port}`)) w.proxyPid = pid;
      else {
        for (const p of listeningPorts(pid)) {
          if (await isWorker(p)) { w.runtimePid = pid; w.runtimePort = p; break; }
        }
      }
    }
    if (!w.runtimePort) await sleep(200);
  }
  if (!w.runtimePort) { await w.stop(); throw new Error('could not find the runtime workerd and its entry port'); }
  w.ws = `ws://127.0.0.1:${w.runtimePort}`;
  w.proxyWs = `ws://127.0.0.1:${port}`;
  return w;
}
