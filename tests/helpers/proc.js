// Linux /proc readings of the relay's processes, for tests that measure what
// abuse costs (they report these figures; they never assert on them).
import { readdirSync, readFileSync } from 'node:fs';

/** Every process id below `root` (children, grandchildren, ...). */
export function descendants(root) {
  const children = new Map();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let stat;
    try { stat = readFileSync(`/proc/${name}/stat`, 'utf8'); } catch { continue; }
    // pid (comm) state ppid ...: comm may hold spaces and parentheses.
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    if (!children.has(ppid)) children.set(ppid, []);
    children.get(ppid).push(Number(name));
  }
  const out = [];
  const stack = [root];
  while (stack.length) {
    for (const c of children.get(stack.pop()) ?? []) { out.push(c); stack.push(c); }
  }
  return out;
}

function comm(pid) {
  try { return readFileSync(`/proc/${pid}/comm`, 'utf8').trim(); } catch { return ''; }
}

/** The pids of the workerd processes `wrangler dev` (pid `root`) runs. */
export function workerdPids(root) {
  return descendants(root).filter((pid) => comm(pid) === 'workerd');
}

/** Resident set size of `pid` in KiB (VmRSS), or NaN once it is gone. */
export function rssKiB(pid) {
  try {
    const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : NaN;
  } catch { return NaN; }
}

/**
 * Samples the summed RSS of `pids` every `everyMs` until `stop()`; returns
 * { baseline, peak, last } in KiB.
 */
export function sampleRss(pids, everyMs = 25) {
  const total = () => pids.reduce((sum, p) => sum + (rssKiB(p) || 0), 0);
  const baseline = total();
  let peak = baseline;
  let last = baseline;
  const timer = setInterval(() => { last = total(); peak = Math.max(peak, last); }, everyMs);
  return {
    stop() {
      clearInterval(timer);
      last = total();
      peak = Math.max(peak, last);
      return { baseline, peak, last };
    },
  };
}

/** The p-th percentile (0..100) of `values` (nearest rank). */
export function percentile(values, p) {
  if (!values.length) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}
