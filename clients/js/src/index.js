// presence-gateway's JavaScript client: one resilient connection to the gateway.
//
// It authenticates (a token or a getToken() callback, refreshed in band), beats, notices a dead
// connection, reconnects with full-jitter backoff, resumes with nothing missed (presence
// re-watched, every conversation caught up from its last seq, events in seq order, never twice),
// keeps unsent messages in an outbox that survives a reload, and sends delivered receipts for
// what it hands the app. No dependencies: browsers, Node 20+ and React Native.

export const VERSION = "0.1.0";

/** Codes of errors that are not the protocol's own. */
export const CLIENT_ERRORS = Object.freeze({
  TIMEOUT: "timeout",
  DISCONNECTED: "disconnected",
  CLOSED: "closed",
});

/** An `error` frame answering a request, or a request the client gave up on. */
export class GatewayError extends Error {
  constructor(code, message, frame = undefined) {
    super(`${code}: ${message}`);
    this.name = "GatewayError";
    this.code = code;
    this.retryAfterMs = frame?.retry_after_ms;
    this.frame = frame;
  }
}

// Close codes after which the token must change before connecting again.
const TOKEN_REFUSED = new Set([4001, 4002, 4003]);
// Send failures worth retrying: the message stays in the outbox.
const TRANSIENT = new Set(["unavailable", "rate_limited", "internal", "timeout", "disconnected"]);
const PAGE = 100;

/** A key-value store with the localStorage / AsyncStorage shape, in memory. */
export class MemoryStorage {
  constructor() {
    this.items = new Map();
  }
  getItem(key) {
    return this.items.has(key) ? this.items.get(key) : null;
  }
  setItem(key, value) {
    this.items.set(key, String(value));
  }
  removeItem(key) {
    this.items.delete(key);
  }
}

function defaultStorage() {
  try {
    const storage = globalThis.localStorage;
    if (storage) {
      const probe = "__presence_gateway_probe__";
      storage.setItem(probe, "1");
      storage.removeItem(probe);
      return storage;
    }
  } catch {
    // Private browsing or a sandboxed frame: memory it is.
  }
  return new MemoryStorage();
}

function newClientMsgId() {
  const bytes = new Uint8Array(16);
  if (globalThis.crypto?.getRandomValues) globalThis.crypto.getRandomValues(bytes);
  else for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(Math.random() * 256);
  return "m-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Full jitter: a uniform delay in [0, min(max, base * 2^attempt)], never below `floor`. */
export function backoffDelay(attempt, { minMs = 500, maxMs = 20000, random = Math.random } = {}) {
  const ceiling = Math.min(maxMs, minMs * 2 ** Math.min(attempt, 30));
  return Math.max(minMs, Math.floor(random() * ceiling));
}

class Emitter {
  constructor() {
    this.listeners = new Map();
  }
  /** Listen to `name`; returns a function that stops listening. */
  on(name, listener) {
    if (!this.listeners.has(name)) this.listeners.set(name, new Set());
    this.listeners.get(name).add(listener);
    return () => this.off(name, listener);
  }
  off(name, listener) {
    this.listeners.get(name)?.delete(listener);
  }
  emit(name, payload) {
    for (const listener of [...(this.listeners.get(name) ?? [])]) {
      try {
        listener(payload);
      } catch (error) {
        // An app's listener must not break the client; report it where it can be seen.
        setTimeout(() => {
          throw error;
        });
      }
    }
  }
}

/** One conversation's read position: what was handed to the app, what waits for a gap. */
class Timeline {
  constructor(lastSeq) {
    this.lastSeq = lastSeq; // null: not seen yet, the first message sets the baseline
    this.lastMessageId = null;
    this.held = new Map(); // seq -> message, ahead of a gap
    this.filling = null; // the running catch-up, if any
    this.gapTimer = null;
  }
}

export class GatewayClient extends Emitter {
  /**
   * @param {string | string[]} url one gateway URL, or several tried in turn
   * @param {object} options see index.d.ts
   */
  constructor(url, options = {}) {
    super();
    this.urls = Array.isArray(url) ? [...url] : [url];
    if (this.urls.length === 0) throw new TypeError("at least one URL");
    this.options = {
      requestTimeoutMs: 10000,
      minReconnectDelayMs: 500,
      maxReconnectDelayMs: 20000,
      gapWaitMs: 400,
      typingThrottleMs: 3000,
      autoDelivered: true,
      storageKey: "presence-gateway",
      ...options,
    };
    this.WebSocketImpl = options.WebSocket ?? globalThis.WebSocket;
    if (!this.WebSocketImpl) throw new TypeError("no WebSocket: pass options.WebSocket");
    this.storage = options.storage ?? defaultStorage();
    this.token = options.token ?? null;
    this.state = "disconnected";
    this.hello = null;
    this.userId = null;
    this.ws = null;
    this.urlIndex = 0;
    this.attempt = 0;
    this.nextDelayMs = null;
    this.requestIds = 0;
    this.pending = new Map(); // request id -> {resolve, reject, timer}
    this.waitingForConnection = new Set();
    this.timelines = new Map();
    this.watched = new Set();
    this.presence = new Map();
    this.typingTimers = new Map();
    this.typingSent = new Map();
    this.unread = new Map();
    this.deliveredQueue = new Map();
    this.outbox = [];
    this.outboxWaiters = new Map();
    this.flushing = null;
    this.timers = new Set();
    this.outboxLoaded = false;
    this.loaded = this.loadStored();
  }

  // ---- lifecycle -------------------------------------------------------------------------

  /** Start connecting (and keep reconnecting until close()). Resolves on the first hello. */
  connect() {
    if (this.state === "closed") this.state = "disconnected";
    if (this.state === "disconnected") this.open();
    return this.waitConnected(this.options.requestTimeoutMs);
  }

  /** Close for good: no reconnect. The outbox stays in storage for the next client. */
  close(code = 1000, reason = "client closed") {
    this.setState("closed", { code, reason });
    this.clearTimers();
    this.dropSocket(code, reason);
    this.failPending(CLIENT_ERRORS.CLOSED, "the client was closed");
  }

  setState(state, detail = {}) {
    if (this.state === state) return;
    this.state = state;
    this.emit("state", { state, ...detail });
    if (state === "connected" || state === "closed") {
      for (const wake of this.waitingForConnection) wake(state);
      this.waitingForConnection.clear();
    }
  }

  async open() {
    this.setState("connecting");
    await this.loaded;
    if (this.state !== "connecting") return;
    let token = this.token;
    if (!token && this.options.getToken) {
      try {
        token = this.token = await this.options.getToken();
      } catch (error) {
        this.emit("error", error);
      }
    }
    if (this.state !== "connecting") return;
    if (!token) {
      this.setState("closed", { code: 4001, reason: "no token" });
      return;
    }
    const url = this.urls[this.urlIndex % this.urls.length];
    let ws;
    try {
      ws = new this.WebSocketImpl(url);
    } catch (error) {
      this.emit("error", error);
      this.lost(1006, String(error?.message ?? error));
      return;
    }
    this.ws = ws;
    this.hello = null;
    ws.onopen = () => {
      if (ws !== this.ws) return;
      this.sendFrame({ type: "auth", token });
      // A peer that accepts the socket but never says hello (a broken proxy) is a failure too.
      this.later(this.options.requestTimeoutMs, () => {
        if (ws === this.ws && !this.hello) this.lost(1006, "no hello from the gateway");
      });
    };
    ws.onmessage = (event) => ws === this.ws && this.receive(event.data);
    // A socket that never opened: some implementations (Node 20's) fire no close after it.
    ws.onerror = () => ws === this.ws && ws.readyState !== 1 && this.lost(1006, "connection failed");
    ws.onclose = (event) => ws === this.ws && this.lost(event.code, event.reason ?? "");
  }

  /** The socket ended (or was found dead): decide whether and when to connect again. */
  lost(code, reason) {
    this.dropSocket(code, reason);
    this.failPending(CLIENT_ERRORS.DISCONNECTED, `connection closed (${code})`);
    if (this.state === "closed") return;
    if (TOKEN_REFUSED.has(code)) {
      this.token = null;
      if (!this.options.getToken) {
        this.setState("closed", { code, reason });
        return;
      }
    }
    this.setState("disconnected", { code, reason });
    let delay = this.nextDelayMs;
    this.nextDelayMs = null;
    if (delay === null) {
      delay = backoffDelay(this.attempt, {
        minMs: this.options.minReconnectDelayMs,
        maxMs: this.options.maxReconnectDelayMs,
      });
      this.attempt += 1;
      this.urlIndex += 1; // a failing instance: try the next URL
    } else {
      this.urlIndex += 1; // drained: the others are where to go
    }
    this.later(delay, () => {
      if (this.state === "disconnected") this.open();
    });
  }

  dropSocket(code, reason) {
    const ws = this.ws;
    this.ws = null;
    this.stopHeartbeat();
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = null;
      try {
        ws.close(code >= 3000 || code === 1000 ? code : 1000, String(reason).slice(0, 100));
      } catch {
        // already closed
      }
    }
  }

  // ---- frames ----------------------------------------------------------------------------

  sendFrame(frame) {
    if (!this.ws || this.ws.readyState !== 1) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  receive(data) {
    let frame;
    try {
      frame = JSON.parse(typeof data === "string" ? data : new TextDecoder().decode(data));
    } catch {
      this.emit("error", new Error("the gateway sent a frame that is not JSON"));
      return;
    }
    this.lastHeard = Date.now();
    if (!this.hello) {
      if (frame.type === "hello") this.welcome(frame);
      else if (frame.type === "error") this.emit("error", new GatewayError(frame.code, frame.message, frame));
      return;
    }
    const waiter = frame.id !== undefined ? this.pending.get(frame.id) : undefined;
    if (waiter && (frame.type === "ack" || frame.type === "error" || frame.type === "heartbeat_ack")) {
      this.pending.delete(frame.id);
      clearTimeout(waiter.timer);
      if (frame.type === "error") waiter.reject(new GatewayError(frame.code, frame.message, frame));
      else waiter.resolve(frame);
      return;
    }
    this.event(frame);
  }

  welcome(hello) {
    this.hello = hello;
    this.userId = hello.user_id;
    this.attempt = 0;
    this.startHeartbeat(hello.heartbeat_interval_ms, hello.lease_ms);
    this.setState("connected", { hello });
    this.emit("connected", hello);
    this.resume();
  }

  event(frame) {
    this.emit("event", frame);
    switch (frame.type) {
      case "message.new":
        this.accept(frame.message, true);
        break;
      case "message.deleted":
        this.emit("message.deleted", frame);
        break;
      case "message.status":
        this.emit("message.status", frame);
        break;
      case "message.read":
        if (frame.user_id === this.userId) this.setUnread(frame.conversation_id, 0);
        this.emit("message.read", frame);
        break;
      case "presence":
        this.notePresence(frame);
        break;
      case "typing":
        this.noteTyping(frame);
        break;
      case "conversation.added":
        this.timeline(frame.conversation.id, 0);
        this.emit("conversation.added", frame.conversation);
        break;
      case "session.expiring":
        this.refreshToken();
        break;
      case "reconnect":
        this.nextDelayMs = Math.max(0, Number(frame.after_ms) || 0);
        break;
      case "resync":
        this.emit("resync", frame);
        this.catchUpAll().catch((error) => this.emit("error", error));
        this.requery();
        break;
      case "error": // an error about a frame sent without an id
        this.emit("error", new GatewayError(frame.code, frame.message, frame));
        break;
      default:
        this.emit(frame.type, frame);
    }
  }

  // ---- heartbeats ------------------------------------------------------------------------

  startHeartbeat(intervalMs, leaseMs) {
    this.stopHeartbeat();
    this.lastHeard = Date.now();
    let outstanding = false;
    this.heartbeat = setInterval(() => {
      if (Date.now() - this.lastHeard > leaseMs) {
        this.lost(4000, "no answer from the gateway within the lease");
        return;
      }
      // One at a time: a gateway slowed by its Redis answers late, and beats must not queue
      // up ahead of the app's requests.
      if (outstanding) return;
      outstanding = true;
      this.request("heartbeat", {}, { timeoutMs: leaseMs })
        .catch(() => {}) // an error frame is an answer too; silence is judged above
        .finally(() => (outstanding = false));
    }, Math.max(50, intervalMs));
  }

  stopHeartbeat() {
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.heartbeat = null;
  }

  // ---- requests --------------------------------------------------------------------------

  /**
   * Send a request frame and resolve with its ack. Made while disconnected, it waits for the
   * connection within its timeout. Rejects with a GatewayError carrying the protocol's code.
   */
  async request(type, fields = {}, { timeoutMs = this.options.requestTimeoutMs } = {}) {
    const deadline = Date.now() + timeoutMs;
    await this.waitConnected(timeoutMs);
    const id = `r${++this.requestIds}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new GatewayError(CLIENT_ERRORS.TIMEOUT, `${type}: no answer in ${timeoutMs} ms`));
      }, Math.max(0, deadline - Date.now()));
      this.pending.set(id, { resolve, reject, timer });
      if (!this.sendFrame({ type, id, ...fields })) {
        this.pending.delete(id);
        clearTimeout(timer);
        reject(new GatewayError(CLIENT_ERRORS.DISCONNECTED, `${type}: not connected`));
      }
    });
  }

  waitConnected(timeoutMs) {
    if (this.state === "connected") return Promise.resolve();
    if (this.state === "closed") {
      return Promise.reject(new GatewayError(CLIENT_ERRORS.CLOSED, "the client is closed"));
    }
    return new Promise((resolve, reject) => {
      const wake = (state) => {
        clearTimeout(timer);
        if (state === "connected") resolve();
        else reject(new GatewayError(CLIENT_ERRORS.CLOSED, "the client is closed"));
      };
      const timer = setTimeout(() => {
        this.waitingForConnection.delete(wake);
        reject(new GatewayError(CLIENT_ERRORS.TIMEOUT, `not connected within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waitingForConnection.add(wake);
    });
  }

  failPending(code, message) {
    for (const [id, waiter] of this.pending) {
      clearTimeout(waiter.timer);
      waiter.reject(new GatewayError(code, message));
      this.pending.delete(id);
    }
  }

  async refreshToken() {
    if (!this.options.getToken) return;
    try {
      const token = await this.options.getToken();
      if (!token) return;
      this.token = token;
      await this.request("auth", { token });
      this.emit("token.refreshed", {});
    } catch (error) {
      this.emit("error", error);
    }
  }

  // ---- resume ----------------------------------------------------------------------------

  /** After every hello: watch again, catch every conversation up, then send the outbox. */
  async resume() {
    const hello = this.hello;
    try {
      await this.rewatch();
      await this.catchUpAll();
      if (this.hello === hello) this.emit("resumed", { conversations: this.timelines.size });
    } catch (error) {
      if (this.hello === hello) this.emit("error", error);
    }
    this.flushOutbox();
  }

  async rewatch() {
    const ids = [...this.watched];
    for (let i = 0; i < ids.length; i += 1000) {
      const ack = await this.request("presence.subscribe", { user_ids: ids.slice(i, i + 1000) });
      this.notePresenceMap(ack.presence);
    }
  }

  async requery() {
    const ids = [...this.watched];
    try {
      for (let i = 0; i < ids.length; i += 1000) {
        const ack = await this.request("presence.query", { user_ids: ids.slice(i, i + 1000) });
        this.notePresenceMap(ack.presence);
      }
    } catch (error) {
      this.emit("error", error);
    }
  }

  catchUpAll() {
    const known = [...this.timelines.entries()].filter(([, t]) => t.lastSeq !== null);
    return Promise.all(known.map(([id]) => this.catchUp(id)));
  }

  /** Read what followed the conversation's last seq from the store, page after page. */
  catchUp(conversationId) {
    const timeline = this.timeline(conversationId);
    if (timeline.filling) return timeline.filling;
    clearTimeout(timeline.gapTimer);
    timeline.gapTimer = null;
    const filling = (async () => {
      await null; // `timeline.filling` is set before the first request
      try {
        for (;;) {
          if (this.timelines.get(conversationId) !== timeline) return;
          const ack = await this.request("messages.list", {
            conversation_id: conversationId,
            after_seq: timeline.lastSeq ?? 0,
            limit: PAGE,
          });
          for (const message of ack.messages) this.accept(message, false);
          if (!ack.has_more) break;
        }
        // The store has everything up to now: what is still held lies past deleted messages.
        this.release(timeline, true);
      } catch (error) {
        if (error.code === "forbidden" || error.code === "not_found") {
          this.timelines.delete(conversationId); // left or gone: nothing more to follow
          this.savePositions();
          return;
        }
        throw error;
      } finally {
        if (timeline.filling === filling) timeline.filling = null;
      }
    })();
    timeline.filling = filling;
    return filling;
  }

  timeline(conversationId, lastSeq = null) {
    let timeline = this.timelines.get(conversationId);
    if (!timeline) {
      timeline = new Timeline(lastSeq);
      this.timelines.set(conversationId, timeline);
    } else if (timeline.lastSeq === null && lastSeq !== null) {
      timeline.lastSeq = lastSeq;
    }
    return timeline;
  }

  /** Hand a message to the app once, in seq order; hold it when one before it is missing. */
  accept(message, live) {
    const timeline = this.timeline(message.conversation_id);
    if (timeline.lastSeq === null) timeline.lastSeq = message.seq - 1;
    if (message.seq <= timeline.lastSeq || timeline.held.has(message.seq)) return;
    if (message.seq !== timeline.lastSeq + 1) {
      timeline.held.set(message.seq, message);
      if (live && !timeline.filling && !timeline.gapTimer) {
        // The gateway fills its own gaps within 250 ms; only a gap that stays is read here.
        timeline.gapTimer = setTimeout(() => {
          timeline.gapTimer = null;
          if (timeline.held.size && this.state === "connected") {
            this.catchUp(message.conversation_id).catch((error) => this.emit("error", error));
          }
        }, this.options.gapWaitMs);
      }
      return;
    }
    this.deliver(timeline, message);
    this.release(timeline, false);
  }

  release(timeline, skipGaps) {
    while (timeline.held.size) {
      const next = timeline.held.get(timeline.lastSeq + 1);
      if (next) {
        timeline.held.delete(next.seq);
        this.deliver(timeline, next);
      } else if (skipGaps) {
        const first = Math.min(...timeline.held.keys());
        timeline.lastSeq = first - 1;
      } else {
        return;
      }
    }
    clearTimeout(timeline.gapTimer);
    timeline.gapTimer = null;
  }

  deliver(timeline, message) {
    timeline.lastSeq = message.seq;
    timeline.lastMessageId = message.id;
    this.savePositions();
    const own = message.sender_id === this.userId;
    if (!own) {
      this.setUnread(message.conversation_id, (this.unread.get(message.conversation_id) ?? 0) + 1);
      this.clearTyping(message.conversation_id, message.sender_id);
    }
    this.emit("message", message);
    if (!own && this.options.autoDelivered) this.queueDelivered(message);
  }

  queueDelivered(message) {
    // One receipt per conversation for a burst: the highest seq, a watermark.
    const queued = this.deliveredQueue.get(message.conversation_id);
    if (queued && queued.seq >= message.seq) return;
    this.deliveredQueue.set(message.conversation_id, message);
    if (queued) return;
    this.later(50, () => {
      const latest = this.deliveredQueue.get(message.conversation_id);
      this.deliveredQueue.delete(message.conversation_id);
      this.request("message.delivered", {
        conversation_id: latest.conversation_id,
        message_id: latest.id,
      }).catch(() => {}); // a lost receipt is sent again by the next message's
    });
  }

  // ---- messages --------------------------------------------------------------------------

  /**
   * Queue a message: returns at once with its client_msg_id; `sent` resolves with the stored
   * message (rejects only when the gateway refuses it for good). Kept in the outbox, in
   * storage, until acknowledged: across reconnects and page reloads, always with the same id.
   */
  send(conversationId, content, { contentType = "text", clientMsgId = newClientMsgId() } = {}) {
    const entry = {
      client_msg_id: clientMsgId,
      conversation_id: conversationId,
      content,
      content_type: contentType,
      queued_at: Date.now(),
    };
    this.outbox.push(entry);
    this.saveOutbox();
    const sent = new Promise((resolve, reject) => {
      this.outboxWaiters.set(clientMsgId, { resolve, reject });
    });
    sent.catch(() => {}); // reported through "send.failed" as well
    this.emit("outbox", this.pendingMessages());
    this.flushOutbox();
    return { clientMsgId, sent };
  }

  /** Messages not yet acknowledged, oldest first. */
  pendingMessages() {
    return this.outbox.map((entry) => ({ ...entry }));
  }

  flushOutbox() {
    if (this.flushing || this.state !== "connected" || !this.outbox.length) return this.flushing;
    const flushing = (async () => {
      await null; // `this.flushing` is set before the loop runs
      try {
        while (this.outbox.length && this.state === "connected") {
          const entry = this.outbox[0];
          const outcome = await this.sendOne(entry);
          if (outcome.retry) break;
          // Out of storage first: whoever hears of the outcome finds the outbox as it is.
          this.outbox.shift();
          this.saveOutbox();
          this.settle(entry, outcome);
        }
      } finally {
        if (this.flushing === flushing) this.flushing = null;
      }
    })();
    this.flushing = flushing;
    return flushing;
  }

  /** One attempt: `{ack}`, `{error}` (refused for good) or `{retry: true}`. */
  async sendOne(entry) {
    try {
      const { queued_at: _, ...fields } = entry;
      return { ack: await this.request("message.send", fields) };
    } catch (error) {
      if (!TRANSIENT.has(error.code)) return { error };
      if (this.state === "connected") {
        const wait = error.retryAfterMs ?? backoffDelay(1, { minMs: 1000, maxMs: 5000 });
        this.later(wait, () => this.flushOutbox());
      }
      return { retry: true };
    }
  }

  settle(entry, { ack, error }) {
    const waiter = this.outboxWaiters.get(entry.client_msg_id);
    this.outboxWaiters.delete(entry.client_msg_id);
    this.emit("outbox", this.pendingMessages());
    if (error) {
      waiter?.reject(error);
      this.emit("send.failed", { clientMsgId: entry.client_msg_id, entry, error });
      return;
    }
    this.accept(ack.message, true);
    waiter?.resolve(ack.message);
    this.emit("sent", { clientMsgId: entry.client_msg_id, message: ack.message, created: ack.created });
  }

  /** History: the newest page, or the page before `beforeSeq`. Marks the conversation seen. */
  async history(conversationId, { beforeSeq, afterSeq, limit = 50 } = {}) {
    const fields = { conversation_id: conversationId, limit };
    if (beforeSeq !== undefined) fields.before_seq = beforeSeq;
    if (afterSeq !== undefined) fields.after_seq = afterSeq;
    const ack = await this.request("messages.list", fields);
    if (beforeSeq === undefined && afterSeq === undefined) {
      // The app shows this page itself: the live position moves up to its newest message.
      const newest = ack.messages.at(-1);
      const timeline = this.timeline(conversationId, newest ? newest.seq : 0);
      if (newest && timeline.lastSeq <= newest.seq) {
        timeline.lastSeq = newest.seq;
        timeline.lastMessageId = newest.id;
        for (const seq of timeline.held.keys()) if (seq <= newest.seq) timeline.held.delete(seq);
        this.release(timeline, false);
        this.savePositions();
      }
    }
    return { messages: ack.messages, hasMore: ack.has_more };
  }

  /** Read receipt up to `messageId` (default: the last message handed to the app). */
  async markRead(conversationId, messageId = undefined) {
    const id = messageId ?? this.timelines.get(conversationId)?.lastMessageId;
    if (!id) return null;
    const ack = await this.request("message.read", { conversation_id: conversationId, message_id: id });
    this.setUnread(conversationId, 0);
    return ack;
  }

  deleteMessage(conversationId, messageId) {
    return this.request("message.delete", { conversation_id: conversationId, message_id: messageId });
  }

  // ---- conversations and unread ----------------------------------------------------------

  async conversations({ limit = 50 } = {}) {
    const ack = await this.request("conversations.list", { limit });
    for (const conversation of ack.conversations) {
      this.timeline(conversation.id);
      this.unread.set(conversation.id, conversation.unread_count);
    }
    this.emitUnread(null);
    return ack;
  }

  async createConversation({ kind = "group", memberIds, name = "" }) {
    const ack = await this.request("conversation.create", { kind, member_ids: memberIds, name });
    this.timeline(ack.conversation.id, ack.created ? 0 : null);
    return ack;
  }

  setUnread(conversationId, count) {
    if (this.unread.get(conversationId) === count) return;
    this.unread.set(conversationId, count);
    this.emitUnread(conversationId);
  }

  emitUnread(conversationId) {
    let total = 0;
    for (const count of this.unread.values()) total += count;
    this.emit("unread", {
      conversationId,
      count: conversationId ? this.unread.get(conversationId) : null,
      total,
      counts: Object.fromEntries(this.unread),
    });
  }

  // ---- presence --------------------------------------------------------------------------

  /** Watch users: their current presence, then every change, as "presence" events. */
  async watch(userIds) {
    for (const id of userIds) this.watched.add(id);
    if (this.state !== "connected") return null;
    const ack = await this.request("presence.subscribe", { user_ids: userIds });
    this.notePresenceMap(ack.presence);
    return ack;
  }

  async unwatch(userIds) {
    for (const id of userIds) this.watched.delete(id);
    if (this.state !== "connected") return null;
    return this.request("presence.unsubscribe", { user_ids: userIds });
  }

  setAway(away) {
    return this.request("presence.set", { status: away ? "away" : "online" });
  }

  notePresenceMap(map) {
    for (const value of Object.values(map ?? {})) this.notePresence(value);
  }

  notePresence(frame) {
    const before = this.presence.get(frame.user_id);
    const value = { userId: frame.user_id, status: frame.status, lastSeen: frame.last_seen ?? null };
    this.presence.set(frame.user_id, value);
    if (!before || before.status !== value.status || before.lastSeen !== value.lastSeen) {
      this.emit("presence", value);
    }
  }

  // ---- typing ----------------------------------------------------------------------------

  /** Say the user is typing: at most one frame per throttle window. */
  typing(conversationId) {
    const last = this.typingSent.get(conversationId) ?? 0;
    if (Date.now() - last < this.options.typingThrottleMs) return;
    this.typingSent.set(conversationId, Date.now());
    this.sendFrame({ type: "typing.start", conversation_id: conversationId });
  }

  stopTyping(conversationId) {
    if (!this.typingSent.delete(conversationId)) return;
    this.sendFrame({ type: "typing.stop", conversation_id: conversationId });
  }

  noteTyping(frame) {
    const key = `${frame.conversation_id}/${frame.user_id}`;
    clearTimeout(this.typingTimers.get(key));
    this.typingTimers.delete(key);
    const typing = frame.state === "start";
    if (typing) {
      // Expire it here too: a stop lost on the way never leaves a stuck indicator.
      this.typingTimers.set(
        key,
        setTimeout(() => this.clearTyping(frame.conversation_id, frame.user_id), frame.expires_in_ms),
      );
    }
    this.emit("typing", { conversationId: frame.conversation_id, userId: frame.user_id, typing });
  }

  clearTyping(conversationId, userId) {
    const key = `${conversationId}/${userId}`;
    if (!this.typingTimers.has(key)) return;
    clearTimeout(this.typingTimers.get(key));
    this.typingTimers.delete(key);
    this.emit("typing", { conversationId, userId, typing: false });
  }

  // ---- storage ---------------------------------------------------------------------------

  /**
   * Read the outbox and positions back. A synchronous storage (localStorage) is read before
   * the constructor returns, so a send() right after it can never overwrite what was kept;
   * an asynchronous one (AsyncStorage) holds the outbox's writes until it has been read.
   */
  loadStored() {
    const outbox = this.storage.getItem(this.key("outbox"));
    const positions = this.storage.getItem(this.key("positions"));
    const apply = (outboxText, positionsText) => {
      try {
        const kept = JSON.parse(outboxText ?? "[]");
        const known = new Set(this.outbox.map((e) => e.client_msg_id));
        this.outbox = [...kept.filter((e) => !known.has(e.client_msg_id)), ...this.outbox];
        for (const [id, seq] of Object.entries(JSON.parse(positionsText ?? "{}"))) {
          this.timeline(id, seq);
        }
      } catch (error) {
        this.emit("error", error);
      }
      this.outboxLoaded = true;
      if (this.outbox.length) this.saveOutbox();
    };
    if (typeof outbox?.then !== "function" && typeof positions?.then !== "function") {
      apply(outbox, positions);
      return Promise.resolve();
    }
    return Promise.all([outbox, positions]).then(
      ([o, p]) => apply(o, p),
      (error) => {
        this.emit("error", error);
        this.outboxLoaded = true;
      },
    );
  }

  key(name) {
    return `${this.options.storageKey}:${name}`;
  }

  saveOutbox() {
    if (this.outboxLoaded) this.store("outbox", this.outbox);
  }

  savePositions() {
    if (this.positionsQueued) return;
    this.positionsQueued = true;
    this.later(100, () => {
      this.positionsQueued = false;
      this.store("positions", this.positions());
    });
  }

  /** The last seq handed to the app per conversation (what an app keeps across restarts). */
  positions() {
    const positions = {};
    for (const [id, timeline] of this.timelines) {
      if (timeline.lastSeq !== null) positions[id] = timeline.lastSeq;
    }
    return positions;
  }

  store(name, value) {
    try {
      const done = this.storage.setItem(this.key(name), JSON.stringify(value));
      if (done?.catch) done.catch((error) => this.emit("error", error));
    } catch (error) {
      this.emit("error", error);
    }
  }

  // ---- timers ----------------------------------------------------------------------------

  later(ms, fn) {
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      fn();
    }, ms);
    this.timers.add(timer);
    return timer;
  }

  clearTimers() {
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    for (const timer of this.typingTimers.values()) clearTimeout(timer);
    this.typingTimers.clear();
    for (const timeline of this.timelines.values()) clearTimeout(timeline.gapTimer);
    this.stopHeartbeat();
  }
}
