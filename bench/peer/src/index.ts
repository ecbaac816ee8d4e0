// The benchmark's peer: the relay's host/client subset (PROTOCOL.md sections
// 2 and 3: session/secret, connected/disconnected, `<n>: <msg>` both ways,
// unknown/invalid) written the idiomatic PartyServer way, one hibernating
// Server (Durable Object) per session. Not part of the relay; `npm run bench`
// runs it under the same wrangler/workerd as the relay to compare the two.
import { Server, routePartykitRequest, type Connection, type ConnectionContext } from "partyserver";

interface Env {
  Session: DurableObjectNamespace<Session>;
  LOG_LIFECYCLE?: string;
  MAX_CLIENTS?: string;
}

type Who = { role: "host" } | { role: "client"; n: number };

const HOST_FRAME = /^([1-9][0-9]{0,9}): ([\s\S]*)$/;
const ID = /^[A-Za-z0-9._-]{1,128}$/;

function hex(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += b.toString(16).padStart(2, "0");
  return s;
}

export class Session extends Server<Env> {
  static options = { hibernate: true };

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    if (env.LOG_LIFECYCLE === "true") console.log("lifecycle: session object constructed");
  }

  // Refuse a client of a session that does not exist before upgrading,
  // as the relay does (404 "Session not found").
  async fetch(request: Request): Promise<Response> {
    if (request.headers.get("x-role") === "client" && (await this.ctx.storage.get("secret")) === undefined) {
      return new Response("Session not found", { status: 404 });
    }
    return super.fetch(request);
  }

  private maxClients(): number {
    const n = Number(this.env.MAX_CLIENTS ?? "8");
    return Number.isInteger(n) && n > 0 ? n : 8;
  }

  private host(): Connection | undefined {
    for (const c of this.getConnections("host")) return c;
    return undefined;
  }

  private client(n: number): Connection | undefined {
    for (const c of this.getConnections(`c:${n}`)) return c;
    return undefined;
  }

  // Runs before the socket is accepted; the state set here is stored in the
  // socket's attachment, so it survives hibernation.
  getConnectionTags(connection: Connection, ctx: ConnectionContext): string[] {
    if (ctx.request.headers.get("x-role") === "host") {
      connection.setState({ role: "host" } satisfies Who);
      return ["host"];
    }
    const used = new Set<number>();
    for (const c of this.getConnections()) {
      const who = c.state as Who | null;
      if (who?.role === "client") used.add(who.n);
    }
    let n = 0;
    for (let i = 1; i <= this.maxClients(); i++) if (!used.has(i)) { n = i; break; }
    connection.setState({ role: "client", n } satisfies Who);
    return n ? [`c:${n}`] : ["full"];
  }

  async onConnect(connection: Connection, _ctx: ConnectionContext): Promise<void> {
    const who = connection.state as Who;
    if (who.role === "host") {
      const secret = hex(crypto.getRandomValues(new Uint8Array(32)));
      await this.ctx.storage.put("secret", secret);
      connection.send(`session: ${this.name}`);
      connection.send(`secret: ${secret}`);
      return;
    }
    if (who.n === 0) {
      connection.send("error: no slots available, max clients reached");
      connection.setState(null);
      connection.close(4003, "session full");
      return;
    }
    this.host()?.send(`connected: ${who.n}`);
  }

  onMessage(connection: Connection, message: string | ArrayBuffer): void {
    const who = connection.state as Who | null;
    if (!who) return;
    if (typeof message !== "string") {
      connection.close(1003, "binary frames are not accepted");
      return;
    }
    if (who.role === "client") {
      this.host()?.send(`${who.n}: ${message}`);
      return;
    }
    const m = HOST_FRAME.exec(message);
    if (!m) {
      connection.send("invalid");
      return;
    }
    const target = this.client(Number(m[1]));
    if (target) target.send(m[2]);
    else connection.send(`unknown: ${m[1]}`);
  }

  async onClose(connection: Connection, _code: number, _reason: string, _wasClean: boolean): Promise<void> {
    const who = connection.state as Who | null;
    if (!who) return;
    if (who.role === "client") {
      this.host()?.send(`disconnected: ${who.n}`);
      return;
    }
    // The host left: the session ends (the relay's `reconnect=false`).
    for (const c of this.getConnections()) {
      if (c !== connection && (c.state as Who | null)?.role === "client") {
        c.setState(null);
        c.close(4004, "session closed");
      }
    }
    await this.ctx.storage.deleteAll();
  }
}

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    const url = new URL(request.url);
    let sid: string;
    let role: "host" | "client";
    if (url.pathname === "/session") {
      sid = crypto.randomUUID();
      role = "host";
    } else if (url.pathname.startsWith("/session/")) {
      sid = url.pathname.slice("/session/".length);
      role = "client";
      if (!ID.test(sid)) return new Response("Invalid session id", { status: 400 });
    } else {
      return new Response("Not found", { status: 404 });
    }
    if (request.headers.get("Upgrade")?.toLowerCase() !== "websocket") {
      return new Response("Expected a WebSocket upgrade", { status: 426 });
    }
    // Into PartyServer's own router: /parties/<party>/<room>.
    const routed = new Request(new URL(`/parties/session/${sid}`, url), request);
    routed.headers.set("x-role", role);
    return (await routePartykitRequest(routed, env)) ?? new Response("Not found", { status: 404 });
  }
} satisfies ExportedHandler<Env>;
