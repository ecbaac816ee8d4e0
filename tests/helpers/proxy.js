// A TCP proxy in front of `wrangler dev` for client-library tests: it can add
// latency, cut every connection (a network loss: no close frame), blackhole
// the connections it holds (they stay open but carry nothing more, either
// way: a network that died silently), refuse new ones, or end a connection
// with a WebSocket close frame of any code. Also a "black hole" server that
// accepts TCP and never answers (connect timeouts).
import { createServer, connect } from 'node:net';

/** Starts a proxy on a free loopback port to `target` (a port on 127.0.0.1). */
export async function startProxy(target, { latencyMs = 0 } = {}) {
  const pairs = new Set();
  let mode = 'pass'; // 'pass' | 'refuse'
  let dropped = 0; // bytes a blackholed connection swallowed
  const delayed = (pair, to) => (chunk) => {
    if (pair.dead) { dropped += chunk.length; return; }
    if (!latencyMs) { to.write(chunk); return; }
    setTimeout(() => { if (!to.destroyed && !pair.dead) to.write(chunk); else dropped += chunk.length; }, latencyMs);
  };
  const server = createServer((down) => {
    if (mode === 'refuse') { down.destroy(); return; }
    const up = connect(target, '127.0.0.1');
    const pair = { down, up, dead: false };
    pairs.add(pair);
    const end = () => { pairs.delete(pair); down.destroy(); up.destroy(); };
    // A blackholed pair passes no close either: each side ends on its own.
    const ended = (side) => () => {
      if (!pair.dead) { if (latencyMs) setTimeout(end, latencyMs); else end(); return; }
      side.destroy();
      if (down.destroyed && up.destroyed) pairs.delete(pair);
    };
    down.on('data', delayed(pair, up));
    up.on('data', delayed(pair, down));
    down.on('error', ended(down)); up.on('error', ended(up));
    down.on('close', ended(down));
    up.on('close', ended(up));
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = server.address().port;
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    ws: `ws://127.0.0.1:${port}`,
    get connections() { return pairs.size; },
    /** Connections passing data now (not blackholed). */
    get live() { return [...pairs].filter((p) => !p.dead).length; },
    /** Bytes the blackholed connections swallowed so far. */
    get dropped() { return dropped; },
    /**
     * Every connection open now stops carrying data, both ways, and is not
     * closed: what a peer sends into it (frames, a close frame, a FIN) is lost,
     * as when a network dies without a word. New connections pass (or are
     * refused, with refuse()). Returns how many were blackholed.
     */
    blackhole() {
      let n = 0;
      for (const pair of pairs) if (!pair.dead) { pair.dead = true; n++; }
      return n;
    },
    /** Drops every connection without a close frame (what a network loss looks like). */
    cut() { for (const { down, up } of [...pairs]) { down.destroy(); up.destroy(); } pairs.clear(); },
    /** New connections are accepted and dropped at once (true) or passed on again (false). */
    refuse(on = true) { mode = on ? 'refuse' : 'pass'; },
    /** Sends every client a close frame with `code` (as a server would), then drops the connections. */
    closeWith(code, reason = '') {
      const body = Buffer.concat([Buffer.from([code >> 8, code & 255]), Buffer.from(reason)]);
      const frame = Buffer.concat([Buffer.from([0x88, body.length]), body]);
      for (const { down, up } of [...pairs]) {
        up.destroy();
        down.end(frame);
      }
      pairs.clear();
    },
    async stop() {
      this.cut();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/** A server that accepts TCP connections and never answers. */
export async function startBlackHole() {
  const sockets = new Set();
  const server = createServer((s) => { sockets.add(s); s.on('error', () => {}); s.on('close', () => sockets.delete(s)); });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = server.address().port;
  return {
    port,
    ws: `ws://127.0.0.1:${port}`,
    async stop() {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
