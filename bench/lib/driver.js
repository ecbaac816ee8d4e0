// The orchestrator's side of bench/loadgen.js: a forked load generator
// process, driven by request/answer over IPC. Used by bench/run.js and
// bench/profile.js.
import { fork } from 'node:child_process';
import path from 'node:path';
import { ROOT, sleep } from '../../tests/helpers/relay.js';

/** A forked load generator process, driven by request/answer over IPC. */
export class Loadgen {
  constructor(name) {
    this.name = name;
    this.child = fork(path.join(ROOT, 'bench/loadgen.js'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    this.pid = this.child.pid;
    this.pending = new Map();
    this.seq = 0;
    this.child.on('message', ({ id, result, error }) => {
      const p = this.pending.get(id);
      this.pending.delete(id);
      if (error) p?.reject(new Error(`${this.name}: ${error}`)); else p?.resolve(result);
    });
    this.child.on('exit', (code) => {
      for (const p of this.pending.values()) p.reject(new Error(`${this.name} exited (${code})`));
      this.pending.clear();
    });
  }
  call(cmd, args) {
    const id = ++this.seq;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.child.send({ id, cmd, args });
    });
  }
  async stop() {
    if (this.child.exitCode !== null) return;
    const exited = new Promise((r) => this.child.once('exit', r));
    try { await Promise.race([this.call('closeAll'), sleep(5000)]); } catch {}
    this.child.disconnect();
    const t = setTimeout(() => this.child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(t);
  }
}

