// The SDK against real gateway processes and a real Valkey: drain, Redis restart, token
// refresh, an outbox replayed after a reload, a gap filled, a refused token.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { GatewayClient, MemoryStorage, backoffDelay } from "../src/index.js";
import { Gateway, collect, fleet, until } from "./harness.mjs";

const range = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

async function room(alice, bob) {
  const { conversation } = await alice.createConversation({ kind: "group", memberIds: [bob.userId] });
  return conversation.id;
}

test("full-jitter backoff stays within [min, min(max, min * 2^attempt)]", { timeout: 40000 }, () => {
  assert.equal(backoffDelay(0, { random: () => 0.999 }), 500);
  assert.equal(backoffDelay(3, { random: () => 0.5 }), 2000);
  assert.equal(backoffDelay(30, { random: () => 0.999 }), 19980);
  assert.equal(backoffDelay(2, { random: () => 0 }), 500);
});

describe("on two gateways", () => {
  let f;
  before(async () => {
    f = await fleet(2);
  });
  after(async () => f.stop());

  test("a drained instance's clients move to the other and miss nothing, none twice", { timeout: 40000 }, async () => {
    const [gw1, gw2] = f.gateways;
    const alice = await f.client("alice-drain", [gw1.url, gw2.url]);
    const bob = await f.client("bob-drain", [gw2.url]);
    const conversation = await room(alice, bob);
    const got = collect(alice, conversation);
    const states = [];
    alice.on("state", (s) => states.push(s));
    let sent = 0;
    const sending = (async () => {
      for (sent = 1; sent <= 40; sent++) {
        await bob.send(conversation, `m${sent}`).sent;
        if (sent === 10) gw1.stop("SIGTERM"); // drain mid-conversation
      }
    })();
    await sending;
    await got.atLeast(40, 15000);
    assert.deepEqual(got.seqs(), range(1, 40));
    assert.ok(states.some((s) => s.state === "disconnected" && s.code === 1012), JSON.stringify(states));
    assert.equal(alice.state, "connected");
    assert.ok(alice.hello.instance_id.startsWith("gw2"), alice.hello.instance_id);
  });
});

describe("on one gateway", () => {
  let f;
  before(async () => {
    f = await fleet(1);
  });
  after(async () => f.stop());

  test("a Redis restart: resync, then what was sent meanwhile arrives in order", { timeout: 40000 }, async () => {
    const alice = await f.client("alice-resync");
    const bob = await f.client("bob-resync");
    const conversation = await room(alice, bob);
    const got = collect(alice, conversation);
    await bob.send(conversation, "before").sent;
    await got.atLeast(1);
    const resynced = new Promise((resolve) => alice.on("resync", resolve));
    await f.valkey.stop();
    // Sends are acknowledged from the store while Redis is away; their live events are lost.
    for (const n of range(1, 5)) await bob.send(conversation, `during ${n}`).sent;
    await f.valkey.restart();
    await resynced;
    await bob.send(conversation, "after").sent;
    await got.atLeast(7, 15000);
    assert.deepEqual(got.seqs(), range(1, 7));
    assert.deepEqual(
      got.seen.map((m) => m.content),
      ["before", "during 1", "during 2", "during 3", "during 4", "during 5", "after"],
    );
  });

  test("a token refreshed in band: no reconnect past the first token's end", { timeout: 40000 }, async () => {
    const [gw] = f.gateways;
    let calls = 0;
    const alice = await f.client("alice-refresh", undefined, {
      getToken: async () => (await gw.token({ name: "alice-refresh", ttl: 6 })).token,
    });
    alice.on("token.refreshed", () => (calls += 1));
    const first = alice.hello.connection_id;
    const states = [];
    alice.on("state", (s) => states.push(s.state));
    await until(() => calls >= 1, "a refresh", 10000);
    // The first token is past its end (6 s + 0.5 s leeway): the connection is the same.
    await new Promise((resolve) => setTimeout(resolve, 3000));
    assert.equal(alice.state, "connected");
    assert.equal(alice.hello.connection_id, first);
    assert.deepEqual(states, []);
    await alice.request("heartbeat", {});
  });

  test("an outbox survives a reload and the server stores each message once", { timeout: 40000 }, async () => {
    const [gw] = f.gateways;
    const bob = await f.client("bob-outbox");
    const storage = new MemoryStorage(); // what localStorage keeps across the reload
    const page1 = await f.client("alice-outbox", [gw.url], { storage });
    const conversation = await room(page1, bob);
    const got = collect(bob, conversation);
    // One message reached the server but its ack never came back: it stays in the outbox.
    const acked = page1.send(conversation, "already stored", { clientMsgId: "k-0" });
    await acked.sent;
    const stored = JSON.parse(storage.getItem("presence-gateway:outbox"));
    assert.deepEqual(stored, []);
    storage.setItem(
      "presence-gateway:outbox",
      JSON.stringify([{ client_msg_id: "k-0", conversation_id: conversation, content: "already stored", content_type: "text" }]),
    );
    // Offline: the page queues three more, then is reloaded before it ever reconnects.
    page1.close();
    const offline = new GatewayClient([gw.url], { storage, token: "unused" });
    const ids = ["one", "two", "three"].map((text) => offline.send(conversation, text).clientMsgId);
    assert.equal(JSON.parse(storage.getItem("presence-gateway:outbox")).length, 4);
    offline.close();
    const page2 = await f.client("alice-outbox", [gw.url], { storage });
    const sent = [];
    page2.on("sent", (s) => sent.push(s));
    await until(() => page2.pendingMessages().length === 0, "the outbox to empty");
    assert.deepEqual(JSON.parse(storage.getItem("presence-gateway:outbox")), []);
    assert.deepEqual(sent.map((s) => s.clientMsgId), ["k-0", ...ids]);
    assert.deepEqual(sent.map((s) => s.created), [false, true, true, true]);
    await got.atLeast(4);
    const history = await bob.history(conversation);
    assert.deepEqual(history.messages.map((m) => m.content), ["already stored", "one", "two", "three"]);
    assert.deepEqual(got.seen.map((m) => m.content), ["already stored", "one", "two", "three"]);
  });

  test("a live event lost on the way: the gap is filled from the store, in order", { timeout: 40000 }, async () => {
    const [gw] = f.gateways;
    const bob = await f.client("bob-gap");
    let dropped = 0;
    // A socket that loses the second message.new it receives, as a broken network would.
    class LossyWebSocket extends WebSocket {
      set onmessage(handler) {
        super.onmessage = (event) => {
          if (event.data.includes('"message.new"') && ++dropped === 2) return;
          handler(event);
        };
      }
    }
    const alice = await f.client("alice-gap", [gw.url], { WebSocket: LossyWebSocket, gapWaitMs: 100 });
    const conversation = await room(alice, bob);
    const got = collect(alice, conversation);
    for (const n of range(1, 4)) await bob.send(conversation, `g${n}`).sent;
    await got.atLeast(4);
    assert.ok(dropped >= 2);
    assert.deepEqual(got.seqs(), [1, 2, 3, 4]);
  });

  test("a refused token without getToken: closed, never reconnecting", { timeout: 40000 }, async () => {
    const [gw] = f.gateways;
    const client = new GatewayClient(gw.url, { token: "not-a-jwt", storage: new MemoryStorage() });
    const states = [];
    client.on("state", (s) => states.push(s));
    await assert.rejects(client.connect(), (error) => error.code === "closed" || error.code === "timeout");
    await until(() => client.state === "closed", "closed");
    assert.equal(states.at(-1).code, 4001);
    assert.deepEqual(states.map((s) => s.state), ["connecting", "closed"]);
  });

  test("requests carry the protocol's error code", { timeout: 40000 }, async () => {
    const alice = await f.client("alice-errors");
    await assert.rejects(
      alice.request("messages.list", { conversation_id: "not-a-uuid" }),
      (error) => error.code === "invalid_field",
    );
    await assert.rejects(
      alice.request("typing.start", { conversation_id: "00000000-0000-4000-8000-000000000000" }),
      (error) => error.code === "forbidden",
    );
  });

  test("presence, typing with local expiry, unread counts and read receipts", { timeout: 40000 }, async () => {
    const alice = await f.client("alice-live");
    const bob = await f.client("bob-live");
    const conversation = await room(alice, bob);
    const presence = [];
    alice.on("presence", (p) => presence.push(p));
    await alice.watch([bob.userId]);
    assert.equal(presence.at(-1).status, "online");
    const typing = [];
    alice.on("typing", (t) => typing.push(t.typing));
    bob.typing(conversation);
    bob.typing(conversation); // throttled: one frame
    await until(() => typing.length >= 1, "typing start");
    bob.stopTyping(conversation);
    await until(() => typing.length >= 2, "typing stop");
    assert.deepEqual(typing, [true, false]);
    const unread = [];
    alice.on("unread", (u) => unread.push(u));
    await bob.send(conversation, "hi").sent;
    await until(() => unread.some((u) => u.count === 1), "unread 1");
    const reads = [];
    bob.on("message.read", (r) => reads.push(r));
    const statuses = [];
    bob.on("message.status", (s) => statuses.push(s));
    await until(() => statuses.length >= 1, "the automatic delivered receipt");
    await alice.markRead(conversation);
    await until(() => reads.length >= 1, "the read receipt");
    assert.equal(reads[0].user_id, alice.userId);
    assert.equal(unread.at(-1).count, 0);
    bob.close();
    await until(() => presence.at(-1).status === "offline", "offline after grace", 10000);
  });
});

test("a gateway that is gone: the client keeps trying, then connects when one is back", { timeout: 40000 }, async () => {
  const f = await fleet(1);
  try {
    const [gw] = f.gateways;
    const alice = await f.client("alice-back", [gw.url]);
    const conversation = await room(alice, await f.client("bob-back"));
    await gw.stop("SIGKILL");
    await until(() => alice.state === "disconnected", "disconnected");
    const queued = alice.send(conversation, "while away");
    const replacement = await Gateway.start({ redisUrl: f.valkey.url, dir: f.dir, name: "gw9" });
    f.gateways.push(replacement);
    alice.urls = [replacement.url];
    const message = await queued.sent;
    assert.equal(message.content, "while away");
    assert.equal(alice.state, "connected");
  } finally {
    await f.stop();
  }
});
