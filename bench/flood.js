// What floods cost the relay with its default limits (relay only; each part
// in its own `wrangler dev`, run by bench/run.js): how long until a flooder
// is closed, what neighbours' round trips look like meanwhile, and workerd's
// memory. tests/flood.test.js checks what must hold (the same scenarios, as
// events, against low limits); these are the figures, never asserted.
import { randomBytes } from 'node:crypto';
import { host, join } from '../tests/helpers/relay.js';
import { echo, framesFrom, pause, pinger, streamUntilClosed } from '../tests/helpers/flood.js';
import { percentile, sampleRss, workerdPids } from '../tests/helpers/proc.js';

// The defaults (PROTOCOL.md section 6): per client socket; a host gets
// MAX_CLIENTS x the rates and 2 x the frame burst, MAX_CLIENTS x the byte burst.
const RATE = 200;
const BURST = 500;
const MAX_CLIENTS = 8;
const BYTES_PER_SECOND = 1024 * 1024;
const BYTES_BURST = 4 * 1024 * 1024;
const PING_EVERY_MS = 20;
const MiB = 1024 * 1024;

const since = (t0) => performance.now() - t0;
const rtt = (xs) => ({ n: xs.length, p50: percentile(xs, 50), p99: percentile(xs, 99), max: percentile(xs, 100) });

/** The relay's sockets go to the runtime workerd directly (not the dev-only proxy), as the rest of the bench. */
const direct = (w) => ({ ws: w.runtimeWs });

/** A client floods its host with `frames` frames at once; a neighbour in the session and a client of another session keep pinging. */
async function clientFlood(w, { frames }) {
  const relay = direct(w);
  const ha = await host(relay, 'reconnect=false');
  const neighbour = await join(relay, ha);
  const flooder = await join(relay, ha);
  const hb = await host(relay, 'reconnect=false');
  const other = await join(relay, hb);
  const peers = [ha, neighbour, flooder, hb, other];
  try {
    echo(ha, new Set([flooder.id]));
    echo(hb);
    const rss = sampleRss(workerdPids(w.child.pid));
    let over = false;
    const pings = Promise.all([pinger(neighbour, () => over, 'n', { everyMs: PING_EVERY_MS }), pinger(other, () => over, 'o', { everyMs: PING_EVERY_MS })]);
    await ha.await(`${neighbour.id}: n 3`);
    const t0 = performance.now();
    const disconnected = ha.await(`disconnected: ${flooder.id}`);
    for (let i = 0; i < frames; i++) flooder.send(`f${i}`);
    const queuedMs = since(t0);
    const close = await flooder.closed(120_000);
    const closeMs = since(t0);
    const disconnectedMs = (await disconnected) - t0;
    await flooder.tcpClosed();
    const tcpClosedMs = since(t0);
    over = true;
    const [n, o] = await pings;
    await ha.barrier();
    const memory = rss.stop();
    const relayed = framesFrom(ha.log, flooder.id).length;
    return {
      frames, queuedMs, close, closeMs, disconnectedMs, tcpClosedMs, relayed, allowed: BURST + RATE * (closeMs / 1000),
      neighbour: rtt(n), other: rtt(o), rssKiB: memory,
    };
  } finally {
    for (const p of peers) p.terminate();
  }
}

/** A host floods its client with `frames` frames at once; a client of another session keeps pinging. */
async function hostFlood(w, { frames }) {
  const relay = direct(w);
  const hf = await host(relay);
  const player = await join(relay, hf);
  const hb = await host(relay, 'reconnect=false');
  const other = await join(relay, hb);
  const peers = [hf, player, hb, other];
  try {
    echo(hb);
    const rss = sampleRss(workerdPids(w.child.pid));
    let over = false;
    const pings = pinger(other, () => over, 'o', { everyMs: PING_EVERY_MS });
    await hb.await(`${other.id}: o 3`);
    let relayed = 0;
    let afterSeen;
    const after = new Promise((resolve) => { afterSeen = resolve; });
    player.socket.removeAllListeners('message');
    player.socket.on('message', (data) => { if (data.toString() === 'after') afterSeen(); else relayed++; });
    const t0 = performance.now();
    for (let i = 0; i < frames; i++) hf.send(`${player.id}: h${i}`);
    const queuedMs = since(t0);
    const close = await hf.closed(120_000);
    const closeMs = since(t0);
    await hf.tcpClosed();
    const tcpClosedMs = since(t0);
    // The host takes over and speaks: the player has all of the flood that got through once it hears that.
    const again = await host(relay, `id=${hf.sid}&secret=${hf.secret}`);
    peers.push(again);
    again.send(`${player.id}: after`);
    await after;
    over = true;
    const o = await pings;
    const memory = rss.stop();
    return {
      frames, queuedMs, close, closeMs, tcpClosedMs, relayed, allowed: 2 * BURST + MAX_CLIENTS * RATE * (closeMs / 1000),
      other: rtt(o), rssKiB: memory,
    };
  } finally {
    for (const p of peers) p.terminate();
  }
}

/** A host sends `mib` MiB (within its byte burst) to a client that does not read; a neighbour pings meanwhile. */
async function pausedClient(w, { mib }) {
  const relay = direct(w);
  const h = await host(relay, 'reconnect=false');
  const slow = await join(relay, h);
  const neighbour = await join(relay, h);
  const peers = [h, slow, neighbour];
  try {
    // Incompressible, so permessage-deflate does not shrink the backlog on the wire.
    const kib = 64;
    const chunkBytes = kib * 1024 - 16;
    const chunk = () => randomBytes((chunkBytes * 3) / 4).toString('base64');
    const messages = Math.ceil((mib * 1024) / kib);
    pause(slow);
    const all = new Promise((resolve) => { slow.socket.on('message', () => { if (slow.received === messages) resolve(); }); });
    const rss = sampleRss(workerdPids(w.child.pid));
    const t0 = performance.now();
    for (let i = 0; i < messages; i++) h.send(`${slow.id}: ${String(i).padStart(8, '0')}${chunk()}`);
    h.send('/version');
    await h.until(/^!version /, 120_000);
    const handledMs = since(t0);
    const unread = rss.stop();
    echo(h);
    const n = await pinger(neighbour, () => true, 'n', { atLeast: 25 });
    const draining = sampleRss(workerdPids(w.child.pid));
    const t1 = performance.now();
    slow.resume();
    await all;
    const drainMs = since(t1);
    const drained = draining.stop();
    return { messages, mib: (messages * kib) / 1024, handledMs, rssKiB: unread, neighbour: rtt(n), drainMs, rssAfterKiB: drained.last, received: slow.received };
  } finally {
    for (const p of peers) p.terminate();
  }
}

/**
 * A host streams 64 KiB frames to a client that does not read, until it is
 * closed (past its byte burst and rate) or `maxMiB` are sent: the backlog a
 * host can pile up in workerd, and whether this machine's relay takes frames
 * in faster than the byte rate at all.
 */
async function byteStream(w, { maxMiB }) {
  const relay = direct(w);
  const h = await host(relay, 'reconnect=false');
  const slow = await join(relay, h);
  const peers = [h, slow];
  try {
    pause(slow);
    const chunk = randomBytes(48 * 1024).toString('base64');
    const rss = sampleRss(workerdPids(w.child.pid));
    const { sent, bytes, ms } = await streamUntilClosed(h, () => `${slow.id}: ${chunk}`, { maxBytes: maxMiB * MiB });
    const close = h.closeInfo;
    if (!close) h.close();
    slow.resume();
    const end = await slow.closed(300_000);
    const memory = rss.stop();
    const seconds = ms / 1000;
    return {
      capMiB: maxMiB, sentMiB: bytes / MiB, frames: sent, seconds, close, clientClose: end, relayedMiB: slow.bytes / MiB,
      boundMiB: (MAX_CLIENTS * BYTES_BURST + MAX_CLIENTS * BYTES_PER_SECOND * seconds) / MiB, rssKiB: memory,
    };
  } finally {
    for (const p of peers) p.terminate();
  }
}

/** The parts, each run in a fresh relay by bench/run.js. */
export const FLOOD_PARTS = [
  { key: 'clientFlood', name: 'a client floods its host', run: (w, cfg) => clientFlood(w, { frames: cfg.floodFrames }) },
  { key: 'hostFlood', name: 'a host floods its client', run: (w, cfg) => hostFlood(w, { frames: cfg.floodFrames }) },
  { key: 'pausedClient', name: 'a client that does not read', run: (w, cfg) => pausedClient(w, { mib: cfg.floodSlowMiB }) },
  { key: 'byteStream', name: 'a host streams past its byte limit to a client that does not read', run: (w, cfg) => byteStream(w, { maxMiB: cfg.floodStreamMiB }) },
];

const f0 = (x) => (x === undefined || !Number.isFinite(x) ? '–' : x.toFixed(0));
const f1 = (x) => (x === undefined || !Number.isFinite(x) ? '–' : x.toFixed(1));
const mib = (kib) => f1(kib / 1024);
const rtts = (r) => `${r.n} round trips, p50 ${f1(r.p50)} ms, p99 ${f1(r.p99)} ms, max ${f1(r.max)} ms`;
const mem = (m) => `${mib(m.baseline)} → peak ${mib(m.peak)} MiB (+${mib(m.peak - m.baseline)})`;
const closeText = (c) => (c ? `${c.code} ${c.reason}` : 'not closed');

/** The Markdown section of bench/results.md. */
export function floodReport(r, cfg) {
  if (!r) return '_not run_';
  const row = (part, text) => {
    const x = r[part.key];
    if (!x) return null;
    return `| **${part.name}** | ${x.error ? `**failed**: ${x.error.split('\n')[0]}` : text(x)} |`;
  };
  const [cf, hf, pc, bs] = FLOOD_PARTS;
  const rows = [
    row(cf, (x) => `${x.frames.toLocaleString('en-US')} frames queued by ws in ${f0(x.queuedMs)} ms; **${closeText(x.close)} after ${f0(x.closeMs)} ms**, the host heard \`disconnected\` after ${f0(x.disconnectedMs)} ms, the flooder's TCP closed after ${f0(x.tcpClosedMs)} ms; ${x.relayed} frames relayed (the bucket allowed ${f0(x.allowed)}). Neighbour in the session: ${rtts(x.neighbour)}; another session: ${rtts(x.other)}. workerd RSS ${mem(x.rssKiB)}`),
    row(hf, (x) => `${x.frames.toLocaleString('en-US')} frames queued by ws in ${f0(x.queuedMs)} ms; **${closeText(x.close)} after ${f0(x.closeMs)} ms**, the host's TCP closed after ${f0(x.tcpClosedMs)} ms; ${x.relayed} frames relayed (allowed ${f0(x.allowed)}). Another session: ${rtts(x.other)}. workerd RSS ${mem(x.rssKiB)}`),
    row(pc, (x) => `${x.messages} messages of 64 KiB (${f0(x.mib)} MiB) handled by the relay in ${f0(x.handledMs)} ms; workerd RSS ${mem(x.rssKiB)} while unread; a neighbour meanwhile: ${rtts(x.neighbour)}; once it reads, all ${x.received} arrive in ${f0(x.drainMs)} ms (RSS then ${mib(x.rssAfterKiB)} MiB)`),
    row(bs, (x) => `${f1(x.sentMiB)} MiB sent in ${f1(x.seconds)} s: **${x.close ? closeText(x.close) : `not cut off before the cap of ${f1(x.capMiB)} MiB (BENCH_FLOOD_STREAM_MB)`}**; ${f1(x.relayedMiB)} MiB reached the client (the bucket allowed ${f1(x.boundMiB)} MiB in that time); the client then got ${closeText(x.clientClose)}. workerd RSS ${mem(x.rssKiB)}`),
  ].filter(Boolean);
  return `Default limits: ${RATE} frames/s and a burst of ${BURST} per client socket, ${MAX_CLIENTS}× the rate and 2× the burst for a host; bytes ${BYTES_PER_SECOND / MiB} MiB/s and ${BYTES_BURST / MiB} MiB per client, ${MAX_CLIENTS}× both for a host. Each part in a fresh \`wrangler dev\`; workerd RSS is both workerd processes' (runtime and proxy); round trips are paced every ${PING_EVERY_MS} ms through an echoing host.

| scenario | figures |
|---|---|
${rows.join('\n')}

What must hold in these scenarios (the flooder is closed with 1008, nothing of it is relayed after that, what got through stays within the bucket, neighbours keep working, a paused client loses nothing) is checked by tests/flood.test.js against low limits, so that it holds on any machine; whether a flood is over the default limits at all depends on how fast this machine's relay takes frames in.`;
}
