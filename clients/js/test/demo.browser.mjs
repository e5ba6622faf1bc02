// The demo page in a real headless Chromium: two users in two browser contexts on two gateway
// instances. Presence, typing, a message and its read tick, an unread badge, and a drain of
// one instance mid-conversation. Screenshots go to ARTIFACTS_DIR (test-results/browser).
//
// CHROMIUM is the browser binary (/usr/bin/chromium by default).

import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { chromium } from "playwright-core";
import { Gateway, Valkey, freePort } from "./harness.mjs";

const ARTIFACTS = process.env.ARTIFACTS_DIR ?? path.resolve("../../test-results/browser");
const WAIT = { timeout: 15000 };

let valkey;
let gateways = [];
let browser;
let dir;
let origins;

before(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  dir = mkdtempSync(path.join(tmpdir(), "pg-demo-"));
  valkey = await Valkey.start();
  const ports = [await freePort(), await freePort()];
  origins = ports.map((p) => `http://127.0.0.1:${p}`).join(",");
  for (const [i, port] of ports.entries()) {
    gateways.push(
      await Gateway.start({
        redisUrl: valkey.url,
        dir,
        name: `gw${i + 1}`,
        extra: { port: String(port), "allowed-origins": origins, "drain-timeout": "2" },
      }),
    );
  }
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: [
      "--no-sandbox",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--disable-quic",
    ],
  });
});

after(async () => {
  await browser?.close();
  for (const gateway of gateways) await gateway.stop("SIGKILL");
  await valkey?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** A page served by `home`, whose client connects to `sockets` (gateways' WebSocket URLs). */
async function openAs(name, home, sockets) {
  const context = await browser.newContext({ viewport: { width: 1100, height: 700 } });
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (error) => errors.push(error));
  page.errors = errors;
  await page.goto(`${home.http}/demo/?gateways=${sockets.join(",")}`);
  await page.fill("#login-name", name);
  await page.click("#login-button");
  await page.waitForFunction(() => window.demo?.client?.state === "connected", null, WAIT);
  return page;
}

const shot = (page, name) => page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`) });
const userIdOf = (page) => page.evaluate(() => window.demo.me.user_id);
const texts = (page) =>
  page.$$eval("#messages .message .text", (items) => items.map((item) => item.textContent));

test("two users chat across two instances, and one instance is drained", { timeout: 120000 }, async () => {
  const [gw1, gw2] = gateways;
  const alice = await openAs("Alice", gw1, [gw1.url, gw2.url]);
  const bob = await openAs("Bob", gw2, [gw2.url, gw1.url]);
  const bobId = await userIdOf(bob);
  const aliceId = await userIdOf(alice);

  // Presence: Bob's dot turns online on Alice's page.
  await alice.click("#refresh-contacts");
  await alice.waitForSelector(`#contacts [data-user-id="${bobId}"] .dot.online`, WAIT);
  await bob.click("#refresh-contacts");
  await bob.waitForSelector(`#contacts [data-user-id="${aliceId}"] .dot.online`, WAIT);
  await shot(alice, "1-alice-sees-bob-online");

  // Two messages while Bob looks elsewhere: his unread badge counts them.
  await alice.click(`#contacts [data-user-id="${bobId}"]`);
  await alice.waitForSelector("#composer:not([hidden])", WAIT);
  for (const text of ["hello Bob", "are you there?"]) {
    await alice.fill("#message-input", text);
    await alice.press("#message-input", "Enter");
  }
  await alice.waitForSelector('#messages .message.mine[data-status] >> nth=1', WAIT);
  const badge = bob.locator("#conversations .conversation .badge");
  await badge.filter({ hasText: "2" }).waitFor(WAIT);
  await shot(bob, "2-bob-unread-badge");

  // Bob opens it: the badge clears, Alice's ticks turn to read.
  await bob.click("#conversations .conversation");
  await bob.waitForFunction(
    () => [...document.querySelectorAll("#messages .message .text")].length === 2,
    null,
    WAIT,
  );
  assert.equal(await badge.isVisible(), false);
  await alice.waitForSelector('#messages .message.mine[data-status="read"] >> nth=1', WAIT);
  await shot(alice, "3-alice-read-ticks");

  // Typing appears on Bob's page and clears when Alice empties the box.
  await alice.fill("#message-input", "typ");
  await bob.waitForFunction(() => document.querySelector("#typing").textContent.includes("Alice"), null, WAIT);
  await shot(bob, "4-bob-sees-typing");
  await alice.fill("#message-input", "");
  await bob.waitForFunction(() => document.querySelector("#typing").textContent === "", null, WAIT);

  // Drain Alice's instance mid-conversation; Bob keeps writing meanwhile.
  const draining = gw1.stop("SIGTERM");
  const during = ["while you move 1", "while you move 2", "while you move 3"];
  for (const text of during) {
    await bob.fill("#message-input", text);
    await bob.press("#message-input", "Enter");
  }
  await draining;
  await alice.waitForFunction(
    () => window.demo.client.state === "connected" && window.demo.client.hello.instance_id.startsWith("gw2"),
    null,
    WAIT,
  );
  const expected = ["hello Bob", "are you there?", ...during];
  await alice.waitForFunction(
    (want) => document.querySelectorAll("#messages .message").length === want,
    expected.length,
    WAIT,
  );
  assert.deepEqual(await texts(alice), expected);
  const seqs = await alice.$$eval("#messages .message", (items) => items.map((i) => Number(i.dataset.seq)));
  assert.deepEqual(seqs, [1, 2, 3, 4, 5]);
  assert.equal(await alice.locator("#banner").isVisible(), false);
  await shot(alice, "5-alice-after-drain");
  assert.deepEqual(alice.errors, []);
  assert.deepEqual(bob.errors, []);
});

test("messages written offline survive a page reload and are stored once", { timeout: 120000 }, async () => {
  const web = gateways[1]; // serves the pages (the first test drained the other)
  // Carol's WebSocket goes to an instance of its own, which the test takes away and brings back
  // on the same port: the network to the gateway gone while the page can still be loaded.
  const port = await freePort();
  const start = (name) =>
    Gateway.start({
      redisUrl: valkey.url,
      dir,
      name,
      extra: { port: String(port), "allowed-origins": origins },
    });
  let socketSide = await start("gw3");
  gateways.push(socketSide);
  const dave = await openAs("Dave", web, [web.url]);
  const carol = await openAs("Carol", web, [socketSide.url]);
  const daveId = await userIdOf(dave);
  await carol.click("#refresh-contacts");
  await carol.click(`#contacts [data-user-id="${daveId}"]`);
  await carol.waitForSelector("#composer:not([hidden])", WAIT);

  await socketSide.stop("SIGKILL");
  await carol.waitForFunction(() => window.demo.client.state !== "connected", null, WAIT);
  await carol.waitForSelector("#banner:not([hidden])", WAIT);
  for (const text of ["written offline", "and this one too"]) {
    await carol.fill("#message-input", text);
    await carol.press("#message-input", "Enter");
  }
  await carol.waitForSelector("#messages .ticks.pending >> nth=1", WAIT);
  await shot(carol, "6-carol-offline-outbox");

  // Nothing reached a gateway: the two messages exist only in the page's localStorage.
  const kept = await carol.evaluate(
    () => JSON.parse(localStorage.getItem(`pg-demo:${window.demo.me.user_id}:outbox`)).length,
  );
  assert.equal(kept, 2);
  const before = await dave.evaluate(() => window.demo.client.conversations());
  assert.equal(before.conversations[0].last_message_id, null);

  // The page is reloaded while its gateway is still away; then the gateway comes back.
  await carol.reload();
  await carol.waitForFunction(() => window.demo?.client?.pendingMessages().length === 2, null, WAIT);
  socketSide = await start("gw3-again");
  gateways.push(socketSide);
  await carol.waitForFunction(() => window.demo.client.state === "connected", null, {
    timeout: 30000,
  });
  await carol.waitForFunction(() => window.demo.client.pendingMessages().length === 0, null, WAIT);
  await dave.click("#conversations .conversation");
  await dave.waitForFunction(
    () => document.querySelectorAll("#messages .message").length === 2,
    null,
    WAIT,
  );
  assert.deepEqual(await texts(dave), ["written offline", "and this one too"]);
  const stored = await dave.evaluate(async () => {
    const client = window.demo.client;
    const [id] = Object.keys(client.positions());
    return (await client.history(id)).messages.map((m) => m.content);
  });
  assert.deepEqual(stored, ["written offline", "and this one too"]);
  await shot(dave, "7-dave-got-each-once");
  assert.deepEqual(carol.errors, []);
});
