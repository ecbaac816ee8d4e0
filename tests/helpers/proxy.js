// A TCP proxy in front of `wrangler dev` for client-library tests: it can add
// latency, cut every connection (a network loss: no close frame), refuse new
// ones, or end a connection with a WebSocket close frame of any code. Also a
// "black hole" server that accepts TCP and never answers (connect timeouts).
import { createServer, connect } from 'node:net';

/** Starts a proxy on a free loopback port to `target` (a port on 127.0.0.1). */
export async function startProxy(target, { latencyMs = 0 } = {}) {
  const pairs = new Set();
  let mode = 'pass'; // 'pass' | 'refuse'
  const delayed = (to) => (chunk) => {
    if (!latencyMs) { to.write(chunk); return; }
    setTimeout(() => { if (!to.destroyed) to.write(chunk); }, latencyMs);
  };
  const server = createServer((down) => {
    if (mode === 'refuse') { down.destroy(); return; }
    const up = connect(target, '127.0.0.1');
    const pair = { down, up };
    pairs.add(pair);
    const end = () => { pairs.delete(pair); down.destroy(); up.destroy(); };
    down.on('data', delayed(up));
    up.on('data', delayed(down));
    down.on('error', end); up.on('error', end);
    down.on('close', () => (latencyMs ? setTimeout(end, latencyMs) : end()));
    up.on('close', () => (latencyMs ? setTimeout(end, latencyMs) : end()));
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = server.address().port;
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    ws: `ws://127.0.0.1:${port}`,
    get connections() { return pairs.size; },
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
