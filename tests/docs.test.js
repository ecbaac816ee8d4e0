// The repository's own documents: docs/PROTOCOL.md stays in step with the
// normative ../shared/PROTOCOL.md, and every relative link in the README and
// docs/ resolves to a file a fresh clone has (a tracked file inside the repo).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');

const SHARED = path.join(ROOT, '..', 'shared', 'PROTOCOL.md');
const OWN = path.join(ROOT, 'docs', 'PROTOCOL.md');

/**
 * Sections 1 to 6: the intro may differ (the shared one names files beside it), and section 7 on is
 * this relay's own extension (heartbeat and acknowledged resume), which the shared page does not have.
 */
function body(text) {
  const at = text.indexOf('\n## 1.');
  assert.ok(at >= 0, 'no "## 1." section');
  const extension = text.indexOf('\n## 7.', at);
  return text.slice(at, extension >= 0 ? extension : undefined).replace(/\n+$/, '');
}

test('docs/PROTOCOL.md matches ../shared/PROTOCOL.md in sections 1 to 6', (t) => {
  if (!existsSync(SHARED)) {
    t.skip(`${SHARED} is absent (a clone outside the project workspace): nothing to compare with`);
    return;
  }
  const own = body(readFileSync(OWN, 'utf8')).split('\n');
  const shared = body(readFileSync(SHARED, 'utf8')).split('\n');
  const line = own.findIndex((l, i) => l !== shared[i]);
  if (line >= 0 || own.length !== shared.length) {
    const i = line >= 0 ? line : Math.min(own.length, shared.length);
    assert.fail(`docs/PROTOCOL.md drifted from ../shared/PROTOCOL.md at body line ${i + 1}:\n` +
      `  docs:   ${JSON.stringify(own[i])}\n  shared: ${JSON.stringify(shared[i])}\n` +
      'Copy the shared file from "## 1." on into docs/PROTOCOL.md (keep its own intro and section 7).');
  }
});

test('docs/PROTOCOL.md names nothing outside the repository', () => {
  const text = readFileSync(OWN, 'utf8');
  assert.doesNotMatch(text, /seed-relay-readme|\.\.\/shared|beside this file/);
});

/** Files a fresh clone has: git's tracked files plus what is staged or new but not ignored. */
function cloneFiles() {
  if (!existsSync(path.join(ROOT, '.git'))) return null;
  const out = execFileSync('git', ['ls-files', '--cached', '--others', '--exclude-standard'], { cwd: ROOT, encoding: 'utf8' });
  return new Set(out.split('\n').filter(Boolean));
}

for (const doc of ['README.md', 'CHANGELOG.md', 'docs/PROTOCOL.md']) {
  test(`every relative link in ${doc} resolves to a file in a fresh clone`, () => {
    const text = readFileSync(path.join(ROOT, doc), 'utf8');
    const files = cloneFiles();
    const links = [...text.matchAll(/\]\(([^)\s]+)\)/g)].map((m) => m[1]);
    for (const link of links) {
      if (/^[a-z][a-z0-9+.-]*:/i.test(link) || link.startsWith('#')) continue; // URLs and anchors
      const target = path.normalize(path.join(path.dirname(doc), link.split('#')[0]));
      assert.ok(!target.startsWith('..'), `${doc} links outside the repository: ${link}`);
      assert.ok(existsSync(path.join(ROOT, target)), `${doc} links a missing file: ${link}`);
      if (files) {
        const tracked = files.has(target) || [...files].some((f) => f.startsWith(`${target}/`));
        assert.ok(tracked, `${doc} links ${link}, which is not in the repository (ignored or untracked?)`);
      }
    }
  });
}
