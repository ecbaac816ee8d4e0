// Pieces of the flood scenarios, shared by tests/flood.test.js (what must
// hold) and bench/flood.js (what it costs): an echoing host that records what
// it hears, paced round trips of a neighbour, and a client that stops reading.
import { parseHostFrame } from '../../client/relay-client.js';
import { sleep } from './relay.js';

/**
 * Turns a host Peer into an echo: `<n>: <msg>` from a client goes back as
 * `<n>: <msg>`, except from `quiet` ids, whose frames are only recorded.
 * Every frame is recorded in `h.log` ({ line, at }); `h.await(line)` resolves
 * (with the time) at the first frame from now on equal to, or matching, `line`.
 * (The Peer's own next() reads nothing more once it echoes.)
 */
export function echo(h, quiet = new Set()) {
  h.log = [];
  h.waiters = [];
  h.socket.removeAllListeners('message');
  h.socket.on('message', (data) => {
    const line = data.toString();
    h.log.push({ line, at: performance.now() });
    const f = parseHostFrame(line);
    if (f.kind === 'message' && f.client > 0 && !quiet.has(f.client)) h.send(line);
    h.waiters = h.waiters.filter((w) => !w(line));
  });
  h.await = (line) => new Promise((resolve) => {
    const hit = (l) => (line instanceof RegExp ? line.test(l) : l === line);
    h.waiters.push((l) => { if (!hit(l)) return false; resolve(performance.now()); return true; });
  });
  /** The /version barrier (see barrier() in relay.js): resolves once the answer is in `h.log`. */
  h.barrier = async () => {
    const answered = h.await(/^!version /);
    h.send('/version');
    await answered;
  };
  return h;
}

/** The texts from client `id` among `log` entries (an echo host's `h.log`, or part of it), in order. */
export function framesFrom(log, id) {
  const out = [];
  for (const { line } of log) {
    const f = parseHostFrame(line);
    if (f.kind === 'message' && f.client === id) out.push(f.text);
  }
  return out;
}

/**
 * Round trips from client Peer `c` through its echoing host, one every
 * `everyMs` (paced: well inside a client's rate limit), until `done()` and at
 * least `atLeast` of them. Each must come back, and in order; resolves their
 * times in ms. No time bound: a round trip that never comes back fails the
 * test at its own timeout.
 */
export async function pinger(c, done, label, { atLeast = 5, everyMs = 20 } = {}) {
  const rtts = [];
  for (let i = 0; !done() || rtts.length < atLeast; i++) {
    const t = performance.now();
    c.send(`${label} ${i}`);
    const back = await c.next(Infinity);
    if (back !== `${label} ${i}`) throw new Error(`round trip ${label} ${i} came back as ${JSON.stringify(back)}`);
    const rtt = performance.now() - t;
    rtts.push(rtt);
    await sleep(Math.max(0, everyMs - rtt)); // pacing, not a wait for anything
  }
  return rtts;
}

/**
 * Stops reading client Peer `c`'s TCP connection (what the relay sends piles
 * up in workerd) and counts what it gets once reading again: `c.received`
 * messages and `c.bytes` bytes; `resume()` reads again.
 */
export function pause(c) {
  c.received = 0;
  c.bytes = 0;
  c.socket.removeAllListeners('message');
  c.socket.on('message', (data) => { c.received += 1; c.bytes += data.length; });
  c.socket._socket.pause();
  c.resume = () => c.socket._socket.resume();
  return c;
}

/**
 * Streams `frame()` from host Peer `h` until its close frame arrives (or
 * `maxBytes` were sent), one frame at a time as the socket takes them (each
 * send's callback: no unbounded buffer here). Resolves { sent, bytes, ms },
 * `ms` from the first send to the close frame (or the last send).
 */
export async function streamUntilClosed(h, frame, { maxBytes = Infinity } = {}) {
  const t0 = performance.now();
  let sent = 0;
  let bytes = 0;
  while (!h.closeInfo && bytes < maxBytes) {
    const text = frame(sent);
    const error = await new Promise((resolve) => h.send(text, resolve));
    if (error) break; // the socket closed under the send
    sent += 1;
    bytes += text.length;
  }
  return { sent, bytes, ms: performance.now() - t0 };
}
