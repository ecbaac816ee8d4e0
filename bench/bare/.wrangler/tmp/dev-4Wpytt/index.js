var __defProp = Object.defineProperty;
var __name = (target, value) => __defProp(target, "name", { value, configurable: true });

// index.js
import { DurableObject } from "cloudflare:workers";
var HOST_FRAME = /^([1-9][0-9]{0,9}): ([\s\S]*)$/;
var ID = /^[A-Za-z0-9._-]{1,128}$/;
function hex(bytes) {
  let s = "";
  for (const b of bytes) s += b.toString(16).padStart(2, "0");
  return s;
}
__name(hex, "hex");
var Session = class extends DurableObject {
  static {
    __name(this, "Session");
  }
  constructor(ctx, env) {
    super(ctx, env);
    if (env.LOG_LIFECYCLE === "true") console.log("lifecycle: session object constructed");
    const n = Number(env.MAX_CLIENTS ?? "8");
    this.maxClients = Number.isInteger(n) && n > 0 ? n : 8;
  }
  async fetch(request) {
    const role = request.headers.get("x-role");
    const sid = request.headers.get("x-sid");
    const kv = this.ctx.storage.kv;
    if (role === "client" && kv.get("secret") === void 0) {
      return new Response("Session not found", { status: 404 });
    }
    const { 0: client, 1: server } = new WebSocketPair();
    if (role === "host") {
      const secret = hex(crypto.getRandomValues(new Uint8Array(32)));
      kv.put("secret", secret);
      this.ctx.acceptWebSocket(server, ["host"]);
      server.serializeAttachment({ host: true });
      server.send(`session: ${sid}`);
      server.send(`secret: ${secret}`);
    } else {
      let n = 0;
      for (let i = 1; i <= this.maxClients; i++) {
        if (this.ctx.getWebSockets(`c:${i}`).length === 0) {
          n = i;
          break;
        }
      }
      if (n === 0) {
        this.ctx.acceptWebSocket(server, ["full"]);
        server.send("error: no slots available, max clients reached");
        server.close(4003, "session full");
      } else {
        this.ctx.acceptWebSocket(server, [`c:${n}`]);
        server.serializeAttachment({ n });
        this.ctx.getWebSockets("host")[0]?.send(`connected: ${n}`);
      }
    }
    return new Response(null, { status: 101, webSocket: client });
  }
  webSocketMessage(ws, message) {
    const who = ws.deserializeAttachment();
    if (!who) return;
    if (typeof message !== "string") {
      ws.close(1003, "binary frames are not accepted");
      return;
    }
    if (!who.host) {
      this.ctx.getWebSockets("host")[0]?.send(`${who.n}: ${message}`);
      return;
    }
    const m = HOST_FRAME.exec(message);
    if (!m) {
      ws.send("invalid");
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
      this.ctx.getWebSockets("host")[0]?.send(`disconnected: ${who.n}`);
      return;
    }
    for (const c of this.ctx.getWebSockets()) {
      if (c !== ws) {
        c.serializeAttachment(null);
        c.close(4004, "session closed");
      }
    }
    this.ctx.storage.deleteAll();
  }
};
var index_default = {
  async fetch(request, env) {
    const url = new URL(request.url);
    let sid;
    let role;
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
    const headers = new Headers(request.headers);
    headers.set("x-role", role);
    headers.set("x-sid", sid);
    return env.Session.get(env.Session.idFromName(sid)).fetch(request.url, { headers });
  }
};

// ../../node_modules/wrangler/templates/middleware/middleware-ensure-req-body-drained.ts
var drainBody = /* @__PURE__ */ __name(async (request, env, _ctx, middlewareCtx) => {
  try {
    return await middlewareCtx.next(request, env);
  } finally {
    try {
      if (request.body !== null && !request.bodyUsed) {
        const reader = request.body.getReader();
        while (!(await reader.read()).done) {
        }
      }
    } catch (e) {
      console.error("Failed to drain the unused request body.", e);
    }
  }
}, "drainBody");
var middleware_ensure_req_body_drained_default = drainBody;

// ../../node_modules/wrangler/templates/middleware/middleware-miniflare3-json-error.ts
function reduceError(e) {
  return {
    name: e?.name,
    message: e?.message ?? String(e),
    stack: e?.stack,
    cause: e?.cause === void 0 ? void 0 : reduceError(e.cause)
  };
}
__name(reduceError, "reduceError");
var jsonError = /* @__PURE__ */ __name(async (request, env, _ctx, middlewareCtx) => {
  try {
    return await middlewareCtx.next(request, env);
  } catch (e) {
    const error = reduceError(e);
    const body = JSON.stringify(error);
    const headers = {
      "Content-Type": "application/json",
      "MF-Experimental-Error-Stack": "true"
    };
    const encoded = encodeURIComponent(body);
    if (encoded.length <= 8192) {
      headers["MF-Experimental-Error-Stack-Payload"] = encoded;
    }
    return new Response(body, { status: 500, headers });
  }
}, "jsonError");
var middleware_miniflare3_json_error_default = jsonError;

// .wrangler/tmp/bundle-YE7h6J/middleware-insertion-facade.js
var __INTERNAL_WRANGLER_MIDDLEWARE__ = [
  middleware_ensure_req_body_drained_default,
  middleware_miniflare3_json_error_default
];
var middleware_insertion_facade_default = index_default;

// ../../node_modules/wrangler/templates/middleware/common.ts
var __facade_middleware__ = [];
function __facade_register__(...args) {
  __facade_middleware__.push(...args.flat());
}
__name(__facade_register__, "__facade_register__");
function __facade_invokeChain__(request, env, ctx, dispatch, middlewareChain) {
  const [head, ...tail] = middlewareChain;
  const middlewareCtx = {
    dispatch,
    next(newRequest, newEnv) {
      return __facade_invokeChain__(newRequest, newEnv, ctx, dispatch, tail);
    }
  };
  return head(request, env, ctx, middlewareCtx);
}
__name(__facade_invokeChain__, "__facade_invokeChain__");
function __facade_invoke__(request, env, ctx, dispatch, finalMiddleware) {
  return __facade_invokeChain__(request, env, ctx, dispatch, [
    ...__facade_middleware__,
    finalMiddleware
  ]);
}
__name(__facade_invoke__, "__facade_invoke__");

// .wrangler/tmp/bundle-YE7h6J/middleware-loader.entry.ts
var __Facade_ScheduledController__ = class ___Facade_ScheduledController__ {
  constructor(scheduledTime, cron, noRetry) {
    this.scheduledTime = scheduledTime;
    this.cron = cron;
    this.#noRetry = noRetry;
  }
  scheduledTime;
  cron;
  static {
    __name(this, "__Facade_ScheduledController__");
  }
  #noRetry;
  noRetry() {
    if (!(this instanceof ___Facade_ScheduledController__)) {
      throw new TypeError("Illegal invocation");
    }
    this.#noRetry();
  }
};
function wrapExportedHandler(worker) {
  if (__INTERNAL_WRANGLER_MIDDLEWARE__ === void 0 || __INTERNAL_WRANGLER_MIDDLEWARE__.length === 0) {
    return worker;
  }
  for (const middleware of __INTERNAL_WRANGLER_MIDDLEWARE__) {
    __facade_register__(middleware);
  }
  const fetchDispatcher = /* @__PURE__ */ __name(function(request, env, ctx) {
    if (worker.fetch === void 0) {
      throw new Error("Handler does not export a fetch() function.");
    }
    return worker.fetch(request, env, ctx);
  }, "fetchDispatcher");
  return {
    ...worker,
    fetch(request, env, ctx) {
      const dispatcher = /* @__PURE__ */ __name(function(type, init) {
        if (type === "scheduled" && worker.scheduled !== void 0) {
          const controller = new __Facade_ScheduledController__(
            Date.now(),
            init.cron ?? "",
            () => {
            }
          );
          return worker.scheduled(controller, env, ctx);
        }
      }, "dispatcher");
      return __facade_invoke__(request, env, ctx, dispatcher, fetchDispatcher);
    }
  };
}
__name(wrapExportedHandler, "wrapExportedHandler");
function wrapWorkerEntrypoint(klass) {
  if (__INTERNAL_WRANGLER_MIDDLEWARE__ === void 0 || __INTERNAL_WRANGLER_MIDDLEWARE__.length === 0) {
    return klass;
  }
  for (const middleware of __INTERNAL_WRANGLER_MIDDLEWARE__) {
    __facade_register__(middleware);
  }
  return class extends klass {
    #fetchDispatcher = /* @__PURE__ */ __name((request, env, ctx) => {
      this.env = env;
      this.ctx = ctx;
      if (super.fetch === void 0) {
        throw new Error("Entrypoint class does not define a fetch() function.");
      }
      return super.fetch(request);
    }, "#fetchDispatcher");
    #dispatcher = /* @__PURE__ */ __name((type, init) => {
      if (type === "scheduled" && super.scheduled !== void 0) {
        const controller = new __Facade_ScheduledController__(
          Date.now(),
          init.cron ?? "",
          () => {
          }
        );
        return super.scheduled(controller);
      }
    }, "#dispatcher");
    fetch(request) {
      return __facade_invoke__(
        request,
        this.env,
        this.ctx,
        this.#dispatcher,
        this.#fetchDispatcher
      );
    }
  };
}
__name(wrapWorkerEntrypoint, "wrapWorkerEntrypoint");
var WRAPPED_ENTRY;
if (typeof middleware_insertion_facade_default === "object") {
  WRAPPED_ENTRY = wrapExportedHandler(middleware_insertion_facade_default);
} else if (typeof middleware_insertion_facade_default === "function") {
  WRAPPED_ENTRY = wrapWorkerEntrypoint(middleware_insertion_facade_default);
}
var middleware_loader_entry_default = WRAPPED_ENTRY;
export {
  Session,
  __INTERNAL_WRANGLER_MIDDLEWARE__,
  middleware_loader_entry_default as default
};
//# sourceMappingURL=index.js.map
