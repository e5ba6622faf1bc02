// Type declarations of @presence-gateway/client (src/index.js).

export declare const VERSION: string;

export declare const CLIENT_ERRORS: Readonly<{
  TIMEOUT: "timeout";
  DISCONNECTED: "disconnected";
  CLOSED: "closed";
}>;

/** The protocol's error codes (docs/protocol.md), and the client's own. */
export type ErrorCode =
  | "invalid_json"
  | "invalid_frame"
  | "unknown_type"
  | "invalid_field"
  | "unauthenticated"
  | "forbidden"
  | "not_found"
  | "conflict"
  | "rate_limited"
  | "too_many_watched"
  | "unavailable"
  | "internal"
  | "timeout"
  | "disconnected"
  | "closed";

export declare class GatewayError extends Error {
  readonly code: ErrorCode | string;
  /** With `rate_limited`: when to try again. */
  readonly retryAfterMs?: number;
  /** The `error` frame, when the gateway sent one. */
  readonly frame?: Record<string, unknown>;
  constructor(code: string, message: string, frame?: Record<string, unknown>);
}

/** localStorage, React Native's AsyncStorage, or anything of that shape. */
export interface KeyValueStorage {
  getItem(key: string): string | null | Promise<string | null>;
  setItem(key: string, value: string): void | Promise<void>;
  removeItem(key: string): void | Promise<void>;
}

export declare class MemoryStorage implements KeyValueStorage {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

export declare function backoffDelay(
  attempt: number,
  options?: { minMs?: number; maxMs?: number; random?: () => number },
): number;

export interface ClientOptions {
  /** A token; with `getToken` too, it is used first. */
  token?: string;
  /** Called for the first token when none is given, on `session.expiring`, and before
   * reconnecting after the gateway refused a token (4001/4002/4003). */
  getToken?: () => Promise<string | null | undefined>;
  /** A WebSocket class (Node 20 without a global one, tests). */
  WebSocket?: new (url: string) => WebSocket;
  /** Where the outbox and positions are kept (default localStorage, else memory). */
  storage?: KeyValueStorage;
  /** Prefix of the storage keys: one per signed-in user when several share a browser. */
  storageKey?: string;
  requestTimeoutMs?: number;
  minReconnectDelayMs?: number;
  maxReconnectDelayMs?: number;
  /** How long a seq gap on a live connection may stay before it is read from history. */
  gapWaitMs?: number;
  typingThrottleMs?: number;
  /** Send `message.delivered` for messages handed to the app (default true). */
  autoDelivered?: boolean;
}

export type State = "disconnected" | "connecting" | "connected" | "closed";

export interface Hello {
  type: "hello";
  connection_id: string;
  user_id: string;
  session_id: string;
  instance_id: string;
  heartbeat_interval_ms: number;
  lease_ms: number;
  limits: Record<string, number>;
}

export interface Message {
  id: string;
  conversation_id: string;
  seq: number;
  sender_id: string;
  client_msg_id: string;
  content: string;
  content_type: "text" | "markdown" | "image" | "file";
  created_at: string;
}

export interface Conversation {
  id: string;
  type: "direct" | "group";
  name: string;
  member_ids: string[];
  created_by: string;
  created_at: string;
}

export interface ConversationSummary {
  id: string;
  type: "direct" | "group";
  name: string;
  last_message_id: string | null;
  last_message_text: string | null;
  last_message_at: string | null;
  unread_count: number;
  is_pinned: boolean;
  is_muted: boolean;
}

export interface OutboxEntry {
  client_msg_id: string;
  conversation_id: string;
  content: string;
  content_type: string;
  queued_at: number;
}

export interface Presence {
  userId: string;
  status: "online" | "away" | "offline";
  lastSeen: string | null;
}

export interface Events {
  state: { state: State; code?: number; reason?: string; hello?: Hello };
  connected: Hello;
  /** After every hello: watches renewed, conversations caught up. */
  resumed: { conversations: number };
  /** Every message once, in seq order per conversation (own ones too). */
  message: Message;
  "message.deleted": { conversation_id: string; message_id: string; seq: number };
  "message.status": {
    conversation_id: string;
    message_id: string;
    seq: number;
    user_id: string;
    status: "delivered";
  };
  "message.read": { conversation_id: string; user_id: string; seq: number };
  presence: Presence;
  typing: { conversationId: string; userId: string; typing: boolean };
  unread: { conversationId: string | null; count: number | null; total: number; counts: Record<string, number> };
  "conversation.added": Conversation;
  sent: { clientMsgId: string; message: Message; created: boolean };
  "send.failed": { clientMsgId: string; entry: OutboxEntry; error: GatewayError };
  outbox: OutboxEntry[];
  resync: { type: "resync"; reason: string };
  "token.refreshed": Record<string, never>;
  error: Error;
  /** Every server event frame, as it came. */
  event: Record<string, unknown> & { type: string };
}

export declare class GatewayClient {
  constructor(url: string | string[], options?: ClientOptions);
  urls: string[];
  readonly state: State;
  readonly hello: Hello | null;
  readonly userId: string | null;
  /** The latest presence of every watched user. */
  readonly presence: Map<string, Presence>;

  on<K extends keyof Events>(name: K, listener: (payload: Events[K]) => void): () => void;
  off<K extends keyof Events>(name: K, listener: (payload: Events[K]) => void): void;

  connect(): Promise<void>;
  close(code?: number, reason?: string): void;

  request<T = Record<string, unknown>>(
    type: string,
    fields?: Record<string, unknown>,
    options?: { timeoutMs?: number },
  ): Promise<T>;

  send(
    conversationId: string,
    content: string,
    options?: { contentType?: string; clientMsgId?: string },
  ): { clientMsgId: string; sent: Promise<Message> };
  pendingMessages(): OutboxEntry[];
  history(
    conversationId: string,
    options?: { beforeSeq?: number; afterSeq?: number; limit?: number },
  ): Promise<{ messages: Message[]; hasMore: boolean }>;
  markRead(conversationId: string, messageId?: string): Promise<{ delivered_seq: number; read_seq: number } | null>;
  deleteMessage(conversationId: string, messageId: string): Promise<{ message_id: string; seq: number }>;

  conversations(options?: { limit?: number }): Promise<{
    conversations: ConversationSummary[];
    total_unread: number | null;
  }>;
  createConversation(options: {
    kind?: "direct" | "group";
    memberIds: string[];
    name?: string;
  }): Promise<{ created: boolean; conversation: Conversation }>;

  watch(userIds: string[]): Promise<unknown>;
  unwatch(userIds: string[]): Promise<unknown>;
  setAway(away: boolean): Promise<{ status: string }>;

  typing(conversationId: string): void;
  stopTyping(conversationId: string): void;

  /** The last seq handed to the app, per conversation (kept in storage too). */
  positions(): Record<string, number>;
}
