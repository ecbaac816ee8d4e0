// The benchmark's floor: the relay's host/client subset (PROTOCOL.md sections
// 2 and 3: session/secret, connected/disconnected, `<n>: <msg>` both ways,
// unknown/invalid, 404 for a missing session's client) as the smallest plain
// JavaScript Durable Object on the WebSocket Hibernation API: acceptWebSocket
// with tags, who a socket is in its attachment, the secret in synchronous
// storage. No library, no build step. Behaves like bench/peer, so the load
// generator drives the relay, the peer and this the same way.
import { DurableObject } from 'cloudflare:workers';

const HOST_FRAME = /^([1-9][0-9]{0,9}): ([\s\S]*)$/;
const ID = /^[A-Za-z0-9._-]{1,128}$/;

function hex(bytes) {
  let s = '';
  for (const b of bytes) s += b.toString(16).padStart(2, '0');
  return s;
}

export class Session extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    if (env.LOG_LIFECYCLE === 'true') console.log('lifecycle: session object constructed');
    const n = Number(env.MAX_CLIENTS ?? '8');
    this.maxClients = Number.isInteger(n) && n > 0 ? n : 8;
  }

  async fetch(request) {
    const role = request.headers.get('x-role');
    const sid = request.headers.get('x-sid');
    const kv = this.ctx.storage.kv;
    if (role === 'client' && kv.get('secret') === undefined) {
      return new Response('Session not found', { status: 404 });
    }
    const { 0: client, 1: server } = new WebSocketPair();
    if (role === 'host') {
      const secret = hex(crypto.getRandomValues(new Uint8Array(32)));
      kv.put('secret', secret);
      this.ctx.acceptWebSocket(server, ['host']);
      server.serializeAttachment({ host: true });
      server.send(`session: ${sid}`);
      server.send(`secret: ${secret}`);
    } else {
      let n = 0;
      for (let i = 1; i <= this.maxClients; i++) {
        if (this.ctx.getWebSockets(`c:${i}`).length === 0) { n = i; break; }
      }
      if (n === 0) {
        this.ctx.acceptWebSocket(server, ['full']);
        server.send('error: no slots available, max clients reached');
        server.close(4003, 'session full');
      } else {
        this.ctx.acceptWebSocket(server, [`c:${n}`]);
        server.serializeAttachment({ n });
        this.ctx.getWebSockets('host')[0]?.send(`connected: ${n}`);
      }
    }
    return new Response(null, { status: 101, webSocket: client });
  }

  webSocketMessage(ws, message) {
    const who = ws.deserializeAttachment();
    if (!who) return;
    if (typeof message !== 'string') {
      ws.close(1003, 'binary frames are not accepted');
      return;
    }
    if (!who.host) {
      this.ctx.getWebSockets('host')[0]?.send(`${who.n}: ${message}`);
      return;
    }
    const m = HOST_FRAME.exec(message);
    if (!m) {
      ws.send('invalid');
      return;
    }
    const target = this.ctx.getWebSockets(`c:${m[1]}`)[0];
    if (target) target.send(m[2]);
    else ws.send(`unknown: ${m[1]}`);
  }

  webSocketClose(ws) {
    const who = ws.deserializeAttachment();
    if (!who) return;
    if (!who.host) {
      this.ctx.getWebSockets('host')[0]?.send(`disconnected: ${who.n}`);
      return;
    }
    // The host left: the session ends (the relay's `reconnect=false`).
    for (const c of this.ctx.getWebSockets()) {
      if (c !== ws) {
        c.serializeAttachment(null);
        c.close(4004, 'session closed');
      }
    }
    this.ctx.storage.deleteAll();
  }
}

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    let sid;
    let role;
    if (url.pathname === '/session') {
      sid = crypto.randomUUID();
      role = 'host';
    } else if (url.pathname.startsWith('/session/')) {
      sid = url.pathname.slice('/session/'.length);
      role = 'client';
      if (!ID.test(sid)) return new Response('Invalid session id', { status: 400 });
    } else {
      return new Response('Not found', { status: 404 });
    }
    if (request.headers.get('Upgrade')?.toLowerCase() !== 'websocket') {
      return new Response('Expected a WebSocket upgrade', { status: 426 });
    }
    const headers = new Headers(request.headers);
    headers.set('x-role', role);
    headers.set('x-sid', sid);
    return env.Session.get(env.Session.idFromName(sid)).fetch(request.url, { headers });
  },
};
