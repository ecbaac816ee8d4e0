// `wrangler deploy --dry-run` bundles the worker exactly as a real deploy would.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { ROOT } from './helpers/relay.js';

test('wrangler deploy --dry-run succeeds and bundles the wasm', async () => {
  const outdir = mkdtempSync(path.join(tmpdir(), 'relay-deploy-'));
  const env = { ...process.env, PATH: `${path.join(ROOT, 'node_modules/.bin')}:${process.env.PATH}`, WRANGLER_SEND_METRICS: 'false' };
  const { stdout } = await promisify(execFile)(path.join(ROOT, 'node_modules/.bin/wrangler'),
    ['deploy', '--dry-run', '--outdir', outdir], { cwd: ROOT, env, maxBuffer: 16 << 20 });
  assert.match(stdout, /--dry-run: exiting now/);
  const files = readdirSync(outdir);
  const wasm = files.find((f) => f.endsWith('.wasm'));
  assert.ok(wasm, `no wasm in ${files}`);
  assert.ok(statSync(path.join(outdir, wasm)).size > 10_000);
});
