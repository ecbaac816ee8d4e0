// Types of relay-client (hand-written; checked by tests/client.test.js with tsc).

/** Close codes the relay uses, plus the standard ones the library acts on. */
export declare const CLOSE: Readonly<{
  NORMAL: 1000;
  GOING_AWAY: 1001;
  UNSUPPORTED_DATA: 1003;
  ABNORMAL: 1006;
  RATE_LIMITED: 1008;
  TOO_BIG: 1009;
  HOST_UNAVAILABLE: 1013;
  TAKEN_OVER: 4001;
  REPLACED: 4002;
  SESSION_FULL: 4003;
  SESSION_CLOSED: 4004;
  /** A resume socket that sent no heartbeat for 30 s (PROTOCOL.md 7.1). */
  NO_HEARTBEAT: 4005;
}>;
/** Close code the library itself uses when it lets a socket go. */
export declare const CLOSE_DROPPED: 4000;
/** Largest text frame the relay accepts, in bytes of UTF-8. */
export declare const MAX_FRAME_BYTES: number;
/** Longest keepAlive text the relay accepts, in bytes. */
export declare const MAX_KEEP_ALIVE_BYTES: number;
/** The text the relay sends a client before closing it with 4003. */
export declare const NO_SLOTS_TEXT: string;

export interface ClosePolicyEntry {
  /** Reconnect with back-off (true) or end in the final state `closed` (false). */
  retry: boolean;
  why: string;
}
/** What the library does after each close code; codes not listed are retried. */
export declare const CLOSE_POLICY: Readonly<Record<number, ClosePolicyEntry>>;
export declare function closePolicy(code: number): ClosePolicyEntry;

export type RelayErrorCode =
  | 'connect-failed'
  | 'gave-up'
  | 'closed'
  | 'not-connected'
  | 'buffer-full'
  | 'too-big'
  | 'switch-failed'
  /** A text starting with U+0001 while resume is on (it would read as a line of PROTOCOL.md section 7). */
  | 'reserved'
  /** (error events only) the relay broke PROTOCOL.md section 7: the message says how. */
  | 'protocol';

export declare class RelayError extends Error {
  constructor(code: RelayErrorCode, message: string, extra?: Record<string, unknown>);
  code: RelayErrorCode;
  closeCode?: number;
}

export declare function relayBase(base?: string, loc?: { protocol: string; host: string }): string;
export declare function redactUrl(url: string): string;
export declare function newUuid(): string;

export type HostFrame =
  | { kind: 'keepalive'; text: string }
  | { kind: 'message'; client: number; text: string }
  | { kind: 'session'; sid: string }
  | { kind: 'secret'; secret: string }
  | { kind: 'connected' | 'disconnected' | 'unknown'; client: number }
  | { kind: 'invalid' | 'master-left' }
  | { kind: 'added-slave' | 'set-master' | 'slave-left'; sid: string }
  | { kind: 'stats'; stats: RelayStats }
  | { kind: 'version'; version: string }
  | { kind: 'other'; text: string };
export declare function parseHostFrame(text: string, keepAlive?: string | null): HostFrame;

export interface RelayStats {
  numHostsOnline: number;
  numHostsLookingForSession: number;
  numClientsOnline: number;
  numPlayers: number;
}

/** A WebSocket constructor: the browser's, Node 22's global one, or e.g. the "ws" package's. */
export interface WebSocketLike {
  readonly readyState: number;
  onopen: ((ev: any) => any) | null;
  onmessage: ((ev: { data: unknown }) => any) | null;
  onerror: ((ev: any) => any) | null;
  onclose: ((ev: { code: number; reason: string }) => any) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}
export type WebSocketConstructor = new (url: string) => WebSocketLike;

export interface ConnectionOptions {
  /** Relay origin: ws:, wss:, http: or https: URL. Default: the page's own origin (required in Node). */
  base?: string;
  /** Same as base. */
  url?: string;
  /** WebSocket constructor. Default: globalThis.WebSocket. */
  WebSocket?: WebSocketConstructor;
  /** Text the relay sends this socket every 30 s (at most 256 bytes). */
  keepAlive?: string;
  /** Reconnect after a lost connection (see CLOSE_POLICY). Default true. */
  autoReconnect?: boolean;
  /** An opening socket that is not open after this long is given up (ms). Default 10000. */
  connectTimeoutMs?: number;
  /** Failed reconnect attempts in a row before giving up. Default 10. */
  maxRetries?: number;
  /** Give up when no socket was open for this long (ms). Default 150000. */
  giveUpAfterMs?: number;
  /** Back-off: attempt k waits min(maxDelayMs, initialDelayMs * factor^k) * (1 - jitter * random). */
  initialDelayMs?: number;
  maxDelayMs?: number;
  factor?: number;
  /** 0..1. Default 0.5. */
  jitter?: number;
  /** Sends kept while not open. Default 100 messages and 256 KiB; 0 turns buffering off. */
  maxBufferedMessages?: number;
  maxBufferedBytes?: number;
  /** drop(): how long the old socket is read while waiting for its close frame (ms). Default 5000. */
  takeOverTimeoutMs?: number;
  /** After the relay's close frame, how long to wait for the runtime's close event (ms). Default 15000. */
  closeEventTimeoutMs?: number;
  /**
   * Heartbeat and acknowledged resume (PROTOCOL.md section 7). Default true
   * (false for a client with `uuid: false`). false: the protocol of sections
   * 1–6 only, exactly as before the extension.
   */
  resume?: boolean;
  /** Resume on: a `␁ping` this often (ms). Default 3000; 0: none. */
  heartbeatIntervalMs?: number;
  /** Resume on: a connection that brought no frame for this long is dead, closed and resumed (ms). Default 6000; 0: never. */
  heartbeatTimeoutMs?: number;
  /** Resume on: at most one `␁ack` this often, while something is to acknowledge (ms). Default 1000. */
  ackIntervalMs?: number;
  /** Resume on: own frames the relay has not acknowledged are kept at least this long and at least resumeWindowBytes. Defaults 120000 ms, 262144 bytes. */
  resumeWindowMs?: number;
  resumeWindowBytes?: number;
}

export type ConnectionState = 'idle' | 'connecting' | 'open' | 'closing' | 'reconnecting' | 'closed';

export interface StateDetail {
  state: ConnectionState;
  /** connecting/open: the URL, secret hidden. */
  url?: string;
  attempt?: number;
  switching?: boolean;
  /** reconnecting/closed: the close code (null while closing: the code comes with the close event). */
  code?: number | null;
  reason?: string | null;
  /** closing: the relay's close frame arrived. */
  byRelay?: boolean;
  retryInMs?: number;
  willReconnect?: boolean;
  /** closed: why it is final (absent after close()). */
  error?: string;
  errorCode?: RelayErrorCode;
  /** closed: buffered sends that never left. */
  unsent?: string[];
  /** closed, resume on: frames sent that the relay never acknowledged (they may or may not have reached it). */
  unacked?: string[];
  /** reconnecting: why the socket ended when no close code says it (e.g. the heartbeat found it dead). */
  detail?: string;
  /** open, resume on: what the relay said in `␁resume` (see ResumedDetail). */
  resumed?: ResumedDetail;
}

export interface ResumedDetail {
  /** The last relay frame this side had when it connected (sent as have=). */
  have: number;
  /** The relay has handled this side's frames up to here (`␁resume <m>`). */
  handled: number;
  /** Own frames sent again after it. */
  resent: number;
  /** The relay no longer knew the stream and started it afresh (a `gap` event comes with it). */
  fresh: boolean;
  /**
   * `␁resume <m> reset`: the relay's object was reset (a deploy); this side's
   * frames after `handled` may have been handled before the reset and are
   * handled again: at least once instead of exactly once.
   */
  reset: boolean;
}

export interface GapDetail {
  /** 'in': the relay's frames to this side; 'out': this side's own frames. */
  dir: 'in' | 'out';
  /** Frame numbers of the stream (not message counts); to is null when unknown (a stream started afresh). */
  from: number;
  to: number | null;
  /** How many of them never reached the app (in) or the relay (out); null when unknown. */
  lost: number | null;
  why: string;
}

/** What the resume extension did so far (RelayHost/RelayClient `counters`). */
export interface ResumeCounters {
  /** The app's frames sent (numbered), and the relay's frames handed to the app (each once). */
  sent: number;
  received: number;
  /** Own frames sent again after a resume. */
  resent: number;
  /** Relay frames dropped because the app already had them (a replay, a switch). */
  duplicates: number;
  /** Connections resumed (the first connection aside), and those after a reset of the relay's object. */
  resumes: number;
  resets: number;
  /** Gap events, and frames they lost: relay → here (lost), here → relay (lostOwn). */
  gaps: number;
  lost: number;
  lostOwn: number;
  /** Connections the heartbeat found dead. */
  dead: number;
  /** The last relay frame received (have=), the last own frame's number, own frames acknowledged up to, own frames kept. */
  have: number;
  out: number;
  acked: number;
  unacked: number;
}

export interface FrameDetail {
  dir: 'in' | 'out';
  text: string;
  time: Date;
  /** in: the parsed kind; out: 'out' (sent now), 'buffered' or 'flushed'. */
  kind: string;
}

export interface ErrorDetail {
  code: RelayErrorCode;
  message: string;
  closeCode?: number;
}

interface CommonEvents {
  state: StateDetail;
  frame: FrameDetail;
  error: ErrorDetail;
  keepalive: { text: string };
  /** Resume on: a socket was resumed (also the first: have 0). */
  resumed: ResumedDetail;
  /** Resume on: frames lost for good; the stream continues after them. A host's view is listed afresh after an 'in' gap. */
  gap: GapDetail;
}

export interface HostEvents extends CommonEvents {
  /** resuming: a take-over that continues the stream (resume on), so clients are not listed again. */
  session: { sid: string; takeOver: boolean; resuming?: boolean };
  secret: { secret: string };
  connected: { client: number };
  disconnected: { client: number };
  message: { client: number; text: string };
  unknown: { client: number };
  invalid: {};
  linked: { role: 'master' | 'slave'; sid: string };
  unlinked: { role: 'master' | 'slave'; sid: string | null; self?: boolean };
  stats: RelayStats;
  version: { version: string };
}

export interface ClientEvents extends CommonEvents {
  message: { text: string };
}

declare class Connection<E> extends EventTarget {
  readonly options: Required<Omit<ConnectionOptions, 'base' | 'url' | 'WebSocket' | 'keepAlive' | 'resume'>>;
  readonly base: string;
  /** The keep-alive text asked for (null with resume on: the heartbeat replaces it). */
  readonly keepAlive: string | null;
  /** Heartbeat and acknowledged resume (PROTOCOL.md section 7) in use. */
  readonly resume: boolean;
  /** What the resume extension did so far (a copy). */
  readonly counters: ResumeCounters;
  readonly state: ConnectionState;
  /** True while connecting, open, closing or reconnecting. */
  readonly active: boolean;
  /** Sends waiting for a socket. */
  readonly buffered: number;
  /** The WebSocket in use, for diagnostics. */
  readonly socket: WebSocketLike | undefined;
  connect(): this;
  close(code?: number, reason?: string): void;
  /** Moves to a fresh socket without losing frames (make before break). */
  drop(): boolean;
  /**
   * Debugging hook: the current socket stops passing frames both ways without
   * closing, as on a network that died silently (for good). With resume on
   * the heartbeat then finds it dead and the library resumes on a new socket.
   */
  _blackhole(on?: boolean): boolean;
  addEventListener<K extends keyof E & string>(type: K, listener: (ev: CustomEvent<E[K]>) => void, options?: boolean | AddEventListenerOptions): void;
  addEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | AddEventListenerOptions): void;
  removeEventListener<K extends keyof E & string>(type: K, listener: (ev: CustomEvent<E[K]>) => void, options?: boolean | EventListenerOptions): void;
  removeEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | EventListenerOptions): void;
}

export interface HostOptions extends ConnectionOptions {
  /** Session id to create, or (with secret) to take over. */
  id?: string;
  secret?: string;
  /** Default true: the session waits 2 minutes for a take-over when the socket closes. */
  reconnect?: boolean;
}

export declare class RelayHost extends Connection<HostEvents> {
  constructor(opts?: HostOptions);
  readonly reconnect: boolean;
  readonly sid: string | null;
  readonly secret: string | null;
  /** Client ids this host may address (own, and its slaves' translated ids when master). */
  readonly clients: Set<number>;
  readonly master: string | null;
  readonly slaves: Set<string>;
  /** `<n>: <text>`. True if sent now, false if buffered. */
  send(clientId: number, text: string): boolean;
  /** `0: <text>` to the linked hosts. */
  broadcast(text: string): boolean;
  /** One raw line (`/stats`, `/join-session master`, …). */
  command(line: string): boolean;
  /** `/leave-session`. */
  leave(): boolean;
}

export interface ClientOptions extends ConnectionOptions {
  /** Stable identity (sent as client=); false sends none. */
  uuid?: string | false;
  /** localStorage key to keep the uuid in. */
  storageKey?: string;
}

export declare class RelayClient extends Connection<ClientEvents> {
  constructor(sid: string, opts?: ClientOptions);
  readonly sid: string;
  readonly uuid: string | null;
  /** Bare text to the host. True if sent now, false if buffered. */
  send(text: string): boolean;
}
