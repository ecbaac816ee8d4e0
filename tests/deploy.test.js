// `wrangler deploy --dry-run` bundles the worker exactly as a real deploy would.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { PREBUILT, ROOT, WRANGLER, relaySnapshot, wranglerEnv } from './helpers/relay.js';

test('wrangler deploy --dry-run succeeds and bundles the wasm', async (t) => {
  const outdir = mkdtempSync(path.join(tmpdir(), 'relay-deploy-'));
  // With RELAY_PREBUILT=1, the build/ that is there (no build step).
  const snapshot = PREBUILT ? relaySnapshot() : null;
  t.after(() => snapshot?.remove());
  const { stdout } = await promisify(execFile)(WRANGLER,
    ['deploy', '--dry-run', ...(snapshot ? ['--config', snapshot.config] : []), '--outdir', outdir],
    { cwd: ROOT, env: wranglerEnv(), maxBuffer: 16 << 20 });
  assert.match(stdout, /--dry-run: exiting now/);
  const files = readdirSync(outdir);
  const wasm = files.find((f) => f.endsWith('.wasm'));
  assert.ok(wasm, `no wasm in ${files}`);
  assert.ok(statSync(path.join(outdir, wasm)).size > 10_000);
});
