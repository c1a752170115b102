// The real dispatcher binary, on a free port with its own SQLite file, for the tests.
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
export const BINARY = process.env.DISPATCHER_BIN ?? join(here, "../../../target/debug/dispatcher");
export const SECRET = "client-library-tests-secret-0123456789abcdef";

export function freePort() {
  return new Promise((resolve) => {
    const server = createServer();
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

export function token(role, sub, { masterId, ttl = 3600 } = {}) {
  const args = ["token", "--role", role, "--sub", String(sub), "--ttl", String(ttl)];
  if (masterId !== undefined) args.push("--master-id", String(masterId));
  return execFileSync(BINARY, args, { env: { ...process.env, JWT_SECRET: SECRET } }).toString().trim();
}

export const masterToken = (id, ttl) => token("master", 1000 + id, { masterId: id, ttl });
export const serviceToken = () => token("service", 2);

export class Server {
  constructor(vars = {}) {
    this.vars = vars;
    this.dir = mkdtempSync(join(tmpdir(), "dispatcher-js-"));
    this.database = join(this.dir, "dispatcher.db");
  }

  async start(port) {
    this.port = port ?? this.port ?? (await freePort());
    this.process = spawn(BINARY, [], {
      env: {
        PATH: process.env.PATH,
        RUST_LOG: "warn",
        BIND_ADDR: `127.0.0.1:${this.port}`,
        DATABASE_URL: this.database,
        JWT_SECRET: SECRET,
        ...this.vars,
      },
      stdio: ["ignore", "ignore", "inherit"],
    });
    const until = Date.now() + 15_000;
    for (;;) {
      try {
        const response = await fetch(`${this.http}/health`);
        if (response.ok) return this;
      } catch {
        // Not listening yet.
      }
      if (Date.now() > until) throw new Error("dispatcher did not start");
      await sleep(50);
    }
  }

  get http() {
    return `http://127.0.0.1:${this.port}`;
  }

  get ws() {
    return `ws://127.0.0.1:${this.port}/ws`;
  }

  kill() {
    this.process.kill("SIGKILL");
    return new Promise((resolve) => this.process.once("exit", resolve));
  }

  async stop() {
    if (this.process.exitCode === null && this.process.signalCode === null) await this.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }

  async call(method, path, body, bearer = serviceToken()) {
    const response = await fetch(`${this.http}${path}`, {
      method,
      headers: { Authorization: `Bearer ${bearer}`, "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: response.status, body: await response.json() };
  }

  async putOrder(id) {
    return this.call("PUT", `/api/v1/orders/${id}`, {
      clientUserId: 7,
      address: `Lenina ${id}`,
      deviceType: "washing machine",
      problem: "does not drain",
    });
  }

  async offer(orderId, masterId, ttlSeconds = 60) {
    const { status, body } = await this.call("POST", "/api/v1/assignments", { orderId, masterId, ttlSeconds });
    if (status !== 201) throw new Error(`offer: ${status} ${JSON.stringify(body)}`);
    return body.assignment;
  }
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Resolves with the first value `subscribe(handler)` hands a handler that passes `test`. */
export function next(on, name, test = () => true, within = 10_000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`no ${name} within ${within} ms`));
    }, within);
    const off = on(name, (value) => {
      if (!test(value)) return;
      clearTimeout(timer);
      off();
      resolve(value);
    });
  });
}

export async function until(condition, within = 10_000, what = "condition") {
  const end = Date.now() + within;
  while (!(await condition())) {
    if (Date.now() > end) throw new Error(`${what} not met within ${within} ms`);
    await sleep(25);
  }
}
