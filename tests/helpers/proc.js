// Linux /proc readings of processes (the relay's workerd, wrangler, load
// generators): CPU time, resident memory, file descriptors, listening ports.
// Tests and the bench report these figures; nothing asserts on them.
//
// A reading of a process that is gone (or a field it lacks) is NaN, never 0,
// so a sum or a difference over a vanished process shows as missing rather
// than as a plausible number.
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';

const CLK_TCK = 100; // sysconf(_SC_CLK_TCK) on Linux x86-64

function read(path) {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return null;
  }
}

/** Fields of /proc/<pid>/stat after the command name (index 0 = state, 1 = ppid); comm may hold spaces and parentheses. */
function statFields(path) {
  const s = read(path);
  if (!s) return null;
  return s.slice(s.lastIndexOf(')') + 2).split(' ');
}

export function comm(pid) {
  return (read(`/proc/${pid}/comm`) ?? '').trim();
}

export function cmdline(pid) {
  return (read(`/proc/${pid}/cmdline`) ?? '').split('\0').filter(Boolean);
}

/** Every process id below `root` (children, grandchildren, …). */
export function descendants(root) {
  const children = new Map();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const f = statFields(`/proc/${name}/stat`);
    if (!f) continue;
    const ppid = Number(f[1]);
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

/** The pids of the workerd processes `wrangler dev` (pid `root`) runs. */
export function workerdPids(root) {
  return descendants(root).filter((pid) => comm(pid) === 'workerd');
}

/** Resident set size of `pid` in KiB (VmRSS), or NaN once it is gone. */
export function rssKiB(pid) {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(read(`/proc/${pid}/status`) ?? '');
  return m ? Number(m[1]) : NaN;
}

/**
 * Samples the summed RSS of `pids` every `everyMs` until `stop()`; returns
 * { baseline, peak, last } in KiB. A process that is gone adds nothing.
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

/** utime + stime of a process (or one of its threads), in seconds; NaN once it is gone. */
export function cpuSeconds(pid, tid) {
  const f = statFields(tid ? `/proc/${pid}/task/${tid}/stat` : `/proc/${pid}/stat`);
  if (!f) return NaN;
  return (Number(f[11]) + Number(f[12])) / CLK_TCK;
}

export function threads(pid) {
  try {
    return readdirSync(`/proc/${pid}/task`).map(Number);
  } catch {
    return [];
  }
}

/** CPU seconds of every live thread of `pid`. */
export function threadSeconds(pid) {
  const out = new Map();
  for (const tid of threads(pid)) {
    const s = cpuSeconds(pid, tid);
    if (Number.isFinite(s)) out.set(tid, s);
  }
  return out;
}

/** Whole-machine CPU seconds: busy and total (all cores). */
export function machineSeconds() {
  const line = (read('/proc/stat') ?? '').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const total = line.reduce((a, b) => a + b, 0);
  const idle = line[3] + (line[4] || 0);
  return { busy: (total - idle) / CLK_TCK, total: total / CLK_TCK };
}

/** Loopback TCP ports `pid` listens on. */
export function listeningPorts(pid) {
  const inodes = new Set();
  try {
    for (const fd of readdirSync(`/proc/${pid}/fd`)) {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
        if (m) inodes.add(m[1]);
      } catch {}
    }
  } catch {}
  const ports = [];
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    for (const row of (read(table) ?? '').split('\n').slice(1)) {
      const cols = row.trim().split(/\s+/);
      if (cols.length < 10 || cols[3] !== '0A') continue; // 0A = LISTEN
      if (inodes.has(cols[9])) ports.push(parseInt(cols[1].split(':')[1], 16));
    }
  }
  return ports;
}

/** Open file descriptors of `pid`; NaN once it is gone. */
export function openFds(pid) {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return NaN;
  }
}

/** The soft open-file limit of a process (Infinity when it has none; NaN once it is gone). */
export function fdLimit(pid) {
  const limits = read(`/proc/${pid}/limits`);
  if (limits === null) return NaN;
  const m = /^Max open files\s+(\d+)/m.exec(limits);
  return m ? Number(m[1]) : Infinity;
}

/**
 * Measures CPU use of named process groups over an interval.
 * groups: { name: [pid, …] }. stop() → { name: { pct, busiestThreadPct }, machine: { pct }, wallSeconds }
 * (percent of one core; the machine figure is of all cores together, so up
 * to nproc×100). A process gone by stop() counts as NaN: its share is unknown.
 */
export function cpuMeter(groups) {
  const t0 = performance.now();
  const m0 = machineSeconds();
  const before = {};
  for (const [name, pids] of Object.entries(groups)) {
    before[name] = pids.map((pid) => ({ pid, total: cpuSeconds(pid), threads: threadSeconds(pid) }));
  }
  return {
    stop() {
      const wall = (performance.now() - t0) / 1000;
      const m1 = machineSeconds();
      const out = { wallSeconds: wall, machine: { pct: ((m1.busy - m0.busy) / wall) * 100 } };
      for (const [name, list] of Object.entries(before)) {
        let total = 0;
        let busiest = 0;
        for (const b of list) {
          total += cpuSeconds(b.pid) - b.total;
          for (const [tid, secs] of threadSeconds(b.pid)) {
            busiest = Math.max(busiest, secs - (b.threads.get(tid) ?? 0));
          }
        }
        out[name] = { pct: (total / wall) * 100, busiestThreadPct: (busiest / wall) * 100 };
      }
      return out;
    },
  };
}

/** The p-th percentile (0..100) of `values` (nearest rank); NaN for none. */
export function percentile(values, p) {
  if (!values.length) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}
