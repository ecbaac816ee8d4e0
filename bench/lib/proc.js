// Reads CPU time and resident memory of processes from /proc (Linux only).
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';

const CLK_TCK = 100; // sysconf(_SC_CLK_TCK) on Linux x86-64

function read(path) {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return null;
  }
}

/** Fields of /proc/<pid>/stat after the command name (index 0 = state). */
function statFields(path) {
  const s = read(path);
  if (!s) return null;
  return s.slice(s.lastIndexOf(')') + 2).split(' ');
}

/** utime + stime of a process or thread, in seconds. */
export function cpuSeconds(pid, tid) {
  const f = statFields(tid ? `/proc/${pid}/task/${tid}/stat` : `/proc/${pid}/stat`);
  if (!f) return 0;
  return (Number(f[11]) + Number(f[12])) / CLK_TCK;
}

export function threads(pid) {
  try {
    return readdirSync(`/proc/${pid}/task`).map(Number);
  } catch {
    return [];
  }
}

/** CPU seconds of every thread of `pid`. */
export function threadSeconds(pid) {
  const out = new Map();
  for (const tid of threads(pid)) out.set(tid, cpuSeconds(pid, tid));
  return out;
}

/** Resident set size in KiB. */
export function rssKiB(pid) {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(read(`/proc/${pid}/status`) ?? '');
  return m ? Number(m[1]) : 0;
}

export function comm(pid) {
  return (read(`/proc/${pid}/comm`) ?? '').trim();
}

export function cmdline(pid) {
  return (read(`/proc/${pid}/cmdline`) ?? '').split('\0').filter(Boolean);
}

/** All descendants of `root` (children, grandchildren, …). */
export function descendants(root) {
  const parent = new Map();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const f = statFields(`/proc/${name}/stat`);
    if (f) parent.set(Number(name), Number(f[1]));
  }
  const out = [];
  const walk = (pid) => {
    for (const [child, p] of parent) {
      if (p === pid) {
        out.push(child);
        walk(child);
      }
    }
  };
  walk(root);
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

export function openFds(pid) {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return 0;
  }
}

/**
 * Measures CPU use of named process groups over an interval.
 * groups: { name: [pid, …] }. stop() → { name: { pct, busiestThreadPct } , machine: {pct} }
 * (percent of one core; the machine figure is of all cores together, so up to nproc×100).
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

/** The soft open-file limit of a process. */
export function fdLimit(pid) {
  const m = /^Max open files\s+(\d+)/m.exec(read(`/proc/${pid}/limits`) ?? '');
  return m ? Number(m[1]) : Infinity;
}
