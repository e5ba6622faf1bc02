// The demo chat: everything it does goes through the SDK (./sdk/index.js); this file only draws.
import { GatewayClient } from "./sdk/index.js";

const $ = (selector) => document.querySelector(selector);
const params = new URLSearchParams(location.search);
const scheme = location.protocol === "https:" ? "wss:" : "ws:";
// ?gateways=ws://a/ws,ws://b/ws lists instances to try in turn (no load balancer in front).
const gatewayUrls = (params.get("gateways") ?? `${scheme}//${location.host}/ws`).split(",");
const NAME_KEY = "pg-demo:name";

let client = null;
let me = null;
let openId = null; // the conversation on screen
let oldestSeq = null;
let hasOlder = false;
let loadingOlder = false;
const names = new Map(); // user id -> display name
const partners = JSON.parse(localStorage.getItem("pg-demo:partners") ?? "{}"); // conversation -> other user
const conversations = new Map(); // id -> {id, title, lastText, lastAt, pinned, unread}
const shown = new Map(); // seq or client_msg_id -> <li> of the open conversation
const typers = new Map(); // conversation id -> Set of user ids
const receipts = new Map(); // conversation id -> {delivered, read} watermarks of the others

// ---- sign in -----------------------------------------------------------------------------

$("#login").addEventListener("submit", (event) => {
  event.preventDefault();
  signIn($("#login-name").value.trim());
});
$("#logout").addEventListener("click", () => {
  localStorage.removeItem(NAME_KEY);
  location.reload();
});
$("#refresh-contacts").addEventListener("click", () => loadContacts().catch(report));

/** A request that failed (offline, refused): said in the header, never an unhandled error. */
function report(error) {
  $("#chat-status").textContent = `not done: ${error.code ?? ""} ${error.message ?? error}`;
}

async function fetchToken(name) {
  const response = await fetch(`/dev/token?name=${encodeURIComponent(name)}`);
  const body = await response.json();
  if (!response.ok) throw new Error(body.error?.message ?? response.statusText);
  return body;
}

async function signIn(name) {
  if (!name) return;
  try {
    me = await fetchToken(name);
  } catch (error) {
    $("#login-error").textContent = `Cannot sign in: ${error.message}`;
    $("#login-error").hidden = false;
    return;
  }
  localStorage.setItem(NAME_KEY, name);
  names.set(me.user_id, me.name);
  $("#me-name").textContent = me.name;
  $("#login").hidden = true;
  $("#app").hidden = false;
  client = new GatewayClient(gatewayUrls, {
    token: me.token,
    getToken: async () => (await fetchToken(name)).token,
    storageKey: `pg-demo:${me.user_id}`,
  });
  window.demo = { client, me };
  wire(client);
  await client.connect().catch(() => {}); // the banner says what happens
}

// ---- the SDK's events --------------------------------------------------------------------

function wire(c) {
  let everConnected = false;
  c.on("state", ({ state }) => {
    if (state === "connected") everConnected = true;
    $("#banner").hidden = state === "connected" || !everConnected;
    $("#me-dot").className = `dot ${state === "connected" ? "online" : "offline"}`;
  });
  c.on("connected", async () => {
    try {
      await loadContacts();
      await loadConversations();
    } catch (error) {
      report(error); // the connection went again: the next hello loads them
    }
  });
  c.on("presence", drawPresence);
  c.on("message", (message) => {
    noteMessage(message);
    if (message.conversation_id === openId) {
      drawMessage(message);
      if (message.sender_id !== me.user_id && document.visibilityState === "visible") {
        c.markRead(openId).catch(() => {});
      }
    }
  });
  c.on("sent", ({ clientMsgId, message }) => {
    const li = shown.get(clientMsgId);
    if (li) {
      shown.delete(clientMsgId);
      shown.set(message.seq, li);
      li.dataset.seq = message.seq;
      drawTicks(li, message.conversation_id);
    }
  });
  c.on("unread", ({ counts }) => {
    for (const [id, count] of Object.entries(counts)) {
      const conversation = conversations.get(id);
      if (conversation) conversation.unread = id === openId ? 0 : count;
    }
    drawConversations();
  });
  c.on("conversation.added", (conversation) => {
    rememberPartner(conversation);
    upsertConversation({ id: conversation.id, name: conversation.name, type: conversation.type });
  });
  c.on("typing", ({ conversationId, userId, typing }) => {
    const set = typers.get(conversationId) ?? new Set();
    if (typing) set.add(userId);
    else set.delete(userId);
    typers.set(conversationId, set);
    drawTyping();
  });
  c.on("message.status", ({ conversation_id, seq, user_id }) => {
    if (user_id !== me.user_id) moveReceipt(conversation_id, "delivered", seq);
  });
  c.on("message.read", ({ conversation_id, seq, user_id }) => {
    if (user_id !== me.user_id) moveReceipt(conversation_id, "read", seq);
  });
  c.on("message.deleted", ({ conversation_id, seq }) => {
    if (conversation_id !== openId) return;
    const li = shown.get(seq);
    if (li) {
      li.classList.add("deleted");
      li.firstChild.textContent = "message deleted";
    }
  });
  c.on("resumed", () => drawOutbox());
}

// ---- contacts and presence ---------------------------------------------------------------

async function loadContacts() {
  let users;
  try {
    ({ users } = await (await fetch("/dev/users")).json());
  } catch {
    return; // the instance that served this page is gone: keep the contacts shown
  }
  const list = $("#contacts");
  const others = users.filter((u) => u.user_id !== me.user_id);
  for (const user of users) names.set(user.user_id, user.name);
  for (const user of others) {
    if (list.querySelector(`[data-user-id="${user.user_id}"]`)) continue;
    const li = document.createElement("li");
    li.className = "contact";
    li.dataset.userId = user.user_id;
    li.innerHTML = `<span class="dot"></span><span class="name"></span><span class="seen"></span>`;
    li.querySelector(".name").textContent = user.name;
    li.addEventListener("click", () => openDirect(user.user_id).catch(report));
    list.append(li);
  }
  await client.watch(others.map((u) => u.user_id)).catch(() => {});
  drawConversations();
}

function drawPresence({ userId, status, lastSeen }) {
  const li = $(`#contacts [data-user-id="${userId}"]`);
  if (!li) return;
  li.querySelector(".dot").className = `dot ${status}`;
  li.dataset.status = status;
  li.querySelector(".seen").textContent =
    status === "offline" && lastSeen ? `seen ${new Date(lastSeen).toLocaleTimeString()}` : "";
  if (partners[openId] === userId) $("#chat-status").textContent = status;
}

// ---- conversations -----------------------------------------------------------------------

function rememberPartner(conversation) {
  if (conversation.type !== "direct") return;
  const other = conversation.member_ids.find((id) => id !== me.user_id);
  if (other) {
    partners[conversation.id] = other;
    localStorage.setItem("pg-demo:partners", JSON.stringify(partners));
  }
}

function titleOf(conversation) {
  const partner = partners[conversation.id];
  if (partner) return names.get(partner) ?? "Direct message";
  return conversation.name || "Conversation";
}

function upsertConversation(fields) {
  const current = conversations.get(fields.id) ?? { unread: 0, pinned: false, lastAt: "" };
  conversations.set(fields.id, { ...current, ...fields });
  drawConversations();
}

async function loadConversations() {
  const { conversations: list } = await client.conversations({ limit: 100 });
  for (const item of list) {
    upsertConversation({
      id: item.id,
      name: item.name,
      type: item.type,
      lastText: item.last_message_text,
      lastAt: item.last_message_at ?? "",
      pinned: item.is_pinned,
      unread: item.id === openId ? 0 : item.unread_count,
    });
  }
}

function noteMessage(message) {
  if (message.sender_id !== me.user_id && !partners[message.conversation_id]) {
    const known = conversations.get(message.conversation_id);
    if (!known || known.type === "direct") partners[message.conversation_id] = message.sender_id;
  }
  upsertConversation({
    id: message.conversation_id,
    lastText: message.content,
    lastAt: message.created_at,
  });
}

function drawConversations() {
  const list = $("#conversations");
  const sorted = [...conversations.values()].sort(
    (a, b) => b.pinned - a.pinned || (b.lastAt > a.lastAt ? 1 : b.lastAt < a.lastAt ? -1 : 0),
  );
  list.replaceChildren(
    ...sorted.map((conversation) => {
      const li = document.createElement("li");
      li.className = `conversation${conversation.id === openId ? " active" : ""}`;
      li.dataset.conversationId = conversation.id;
      li.innerHTML = `<span class="name"><span class="title"></span><span class="preview"></span></span>
        <button class="link pin" type="button" title="pin"></button><span class="badge"></span>`;
      li.querySelector(".title").textContent = titleOf(conversation);
      li.querySelector(".preview").textContent = conversation.lastText ?? "";
      li.querySelector(".pin").textContent = conversation.pinned ? "unpin" : "pin";
      li.classList.toggle("pinned", Boolean(conversation.pinned));
      li.querySelector(".pin").addEventListener("click", (event) => {
        event.stopPropagation();
        togglePin(conversation).catch(report);
      });
      const badge = li.querySelector(".badge");
      badge.textContent = conversation.unread || "";
      badge.hidden = !conversation.unread;
      li.addEventListener("click", () => openConversation(conversation.id).catch(report));
      return li;
    }),
  );
  const total = sorted.reduce((sum, c) => sum + (c.unread || 0), 0);
  $("#total-unread").textContent = total;
  $("#total-unread").hidden = !total;
}

async function togglePin(conversation) {
  const value = !conversation.pinned;
  await client.request("conversation.pin", { conversation_id: conversation.id, value });
  upsertConversation({ id: conversation.id, pinned: value });
}

async function openDirect(userId) {
  const ack = await client.createConversation({ kind: "direct", memberIds: [userId] });
  rememberPartner(ack.conversation);
  upsertConversation({ id: ack.conversation.id, type: "direct", name: ack.conversation.name });
  await openConversation(ack.conversation.id);
}

// ---- the open conversation ---------------------------------------------------------------

async function openConversation(id) {
  openId = id;
  shown.clear();
  $("#messages").replaceChildren();
  $("#composer").hidden = false;
  $("#chat-title").textContent = titleOf(conversations.get(id) ?? { id });
  const partner = partners[id];
  $("#chat-status").textContent = partner ? (client.presence.get(partner)?.status ?? "") : "";
  drawTyping();
  const page = await client.history(id, { limit: 30 });
  for (const message of page.messages) drawMessage(message);
  oldestSeq = page.messages[0]?.seq ?? null;
  hasOlder = page.hasMore;
  drawOutbox();
  scrollToEnd();
  upsertConversation({ id, unread: 0 });
  await client.markRead(id).catch(() => {});
}

$("#messages").addEventListener("scroll", async () => {
  const pane = $("#messages");
  if (pane.scrollTop > 40 || !hasOlder || loadingOlder || oldestSeq === null) return;
  loadingOlder = true;
  const id = openId;
  try {
    const page = await client.history(id, { beforeSeq: oldestSeq, limit: 30 });
    if (id !== openId) return;
    const height = pane.scrollHeight;
    for (const message of [...page.messages].reverse()) drawMessage(message, true);
    oldestSeq = page.messages[0]?.seq ?? oldestSeq;
    hasOlder = page.hasMore;
    pane.scrollTop = pane.scrollHeight - height; // keep what was on screen in place
  } catch (error) {
    report(error);
  } finally {
    loadingOlder = false;
  }
});

function drawMessage(message, prepend = false) {
  if (shown.has(message.seq)) return;
  let li = shown.get(message.client_msg_id);
  if (li && message.sender_id === me.user_id) {
    shown.delete(message.client_msg_id); // the pending bubble becomes the stored message
  } else {
    li = document.createElement("li");
    li.innerHTML = `<span class="text"></span><span class="meta"></span>`;
  }
  const mine = message.sender_id === me.user_id;
  li.className = `message${mine ? " mine" : ""}${message.content === "" ? " deleted" : ""}`;
  li.dataset.seq = message.seq;
  li.querySelector(".text").textContent = message.content || "message deleted";
  li.querySelector(".meta").textContent = new Date(message.created_at).toLocaleTimeString([], {
    hour: "2-digit",
    minute: "2-digit",
  });
  shown.set(message.seq, li);
  if (mine) drawTicks(li, message.conversation_id);
  if (!li.isConnected) {
    const pane = $("#messages");
    const atEnd = pane.scrollHeight - pane.scrollTop - pane.clientHeight < 60;
    if (prepend) pane.prepend(li);
    else pane.append(li);
    if (!prepend && atEnd) scrollToEnd();
  }
}

function drawOutbox() {
  if (!client || !openId) return;
  for (const entry of client.pendingMessages()) {
    if (entry.conversation_id !== openId || shown.has(entry.client_msg_id)) continue;
    const li = document.createElement("li");
    li.className = "message mine";
    li.dataset.clientMsgId = entry.client_msg_id;
    li.innerHTML = `<span class="text"></span><span class="meta"></span>`;
    li.querySelector(".text").textContent = entry.content;
    li.querySelector(".meta").innerHTML = `<span class="ticks pending" title="waiting to send">…</span>`;
    shown.set(entry.client_msg_id, li);
    $("#messages").append(li);
  }
  scrollToEnd();
}

function moveReceipt(conversationId, kind, seq) {
  const marks = receipts.get(conversationId) ?? { delivered: 0, read: 0 };
  marks[kind] = Math.max(marks[kind], seq);
  if (kind === "read") marks.delivered = Math.max(marks.delivered, seq);
  receipts.set(conversationId, marks);
  if (conversationId !== openId) return;
  for (const li of $("#messages").querySelectorAll(".message.mine[data-seq]")) {
    drawTicks(li, conversationId);
  }
}

function drawTicks(li, conversationId) {
  const seq = Number(li.dataset.seq);
  const marks = receipts.get(conversationId) ?? { delivered: 0, read: 0 };
  const state = marks.read >= seq ? "read" : marks.delivered >= seq ? "delivered" : "sent";
  let ticks = li.querySelector(".ticks");
  if (!ticks) {
    ticks = document.createElement("span");
    li.querySelector(".meta").append(ticks);
  }
  ticks.className = `ticks ${state}`;
  ticks.textContent = state === "sent" ? "✓" : "✓✓";
  li.dataset.status = state;
}

function drawTyping() {
  const set = typers.get(openId) ?? new Set();
  const who = [...set].map((id) => names.get(id) ?? "Someone");
  $("#typing").textContent = who.length ? `${who.join(", ")} ${who.length > 1 ? "are" : "is"} typing…` : "";
}

function scrollToEnd() {
  const pane = $("#messages");
  pane.scrollTop = pane.scrollHeight;
}

// ---- composing ---------------------------------------------------------------------------

$("#message-input").addEventListener("input", (event) => {
  if (!openId) return;
  if (event.target.value) client.typing(openId);
  else client.stopTyping(openId);
});

$("#composer").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = $("#message-input");
  const text = input.value.trim();
  if (!text || !openId) return;
  input.value = "";
  client.stopTyping(openId);
  client.send(openId, text);
  drawOutbox();
});

document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible" && openId) client?.markRead(openId).catch(() => {});
});

// A reload signs the same user in again: the outbox the SDK kept is sent from here.
const remembered = localStorage.getItem(NAME_KEY);
if (remembered) signIn(remembered);
