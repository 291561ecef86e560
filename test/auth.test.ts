/**
 * The gateway's authentication and TLS: each refusal (no token, a wrong token, a user token
 * on an admin route, a start beyond loopback without a token, plain HTTP to a TLS gateway),
 * what stays public, and that no token reaches the logs. A real DevServer on 127.0.0.1.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import { request as httpsRequest } from "node:https";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { DevServer } from "../src/embedded/dev-server.js";
import {
  accessOf,
  authorize,
  AuthError,
  checkListenAuth,
  GatewayAuth,
  gatherTokens,
  readTokenFile,
  TokenSet,
} from "../src/gateway/auth.js";
import { isLoopbackHost } from "../src/transport/handshake.js";
import { loadTls } from "../src/gateway/tls.js";
import type { Logger } from "../src/util/logger.js";
import { tempDir } from "./helpers/tmp.js";
import { errorCode, http } from "./helpers/http.js";

const FLOWS = fileURLToPath(new URL("./fixtures/flow/workflows.ts", import.meta.url));
const USER = "user-token-0123456789abcdef";
const ADMIN = "admin-token-0123456789abcdef";
const bearer = (t: string): Record<string, string> => ({ authorization: `Bearer ${t}` });

/** A logger that keeps every line as JSON text, to look for secrets in. */
function recordingLogger(lines: string[]): Logger {
  const at =
    (level: string) =>
    (obj: object, msg?: string): void => {
      lines.push(
        JSON.stringify({ level, obj, msg }, (_k, v: unknown) =>
          v instanceof Error ? v.message : v,
        ),
      );
    };
  const logger: Logger = {
    debug: at("debug"),
    info: at("info"),
    warn: at("warn"),
    error: at("error"),
    child: () => logger,
  };
  return logger;
}

describe("gateway tokens", () => {
  const t = tempDir();
  const lines: string[] = [];
  let server: DevServer;
  let url = "";

  beforeAll(async () => {
    server = await DevServer.start({
      functions: FLOWS,
      dataDir: join(t.dir, "data"),
      workers: 1,
      logger: recordingLogger(lines),
      auth: { tokens: [USER], adminTokens: [ADMIN] },
    });
    url = server.url;
  }, 60_000);

  afterAll(async () => {
    await server?.close();
    t.remove();
  });

  it("refuses a request without a token with 401 UNAUTHENTICATED and a Bearer challenge, and runs nothing", async () => {
    const r = await http(url, "POST", "/function/plain-add", { body: '{"a":1,"b":2}' });
    expect(r.status).toBe(401);
    expect(errorCode(r)).toBe("UNAUTHENTICATED");
    expect(r.headers.get("www-authenticate")).toMatch(/^Bearer /);
    const ok = await http(url, "POST", "/function/plain-add", {
      body: '{"a":1,"b":2}',
      headers: bearer(USER),
    });
    expect(ok.status).toBe(200);
    expect(ok.json).toBe(3);
  });

  it("refuses a wrong token, a token of another length, a near miss and a malformed header", async () => {
    for (const headers of [
      bearer("wrong-token-0123456789abcdef"),
      bearer(USER.slice(0, -1)),
      bearer(`${USER}x`),
      { authorization: USER },
      { authorization: `Basic ${USER}` },
      { authorization: "Bearer" },
    ]) {
      const r = await http(url, "GET", "/functions", { headers });
      expect(r.status, JSON.stringify(headers)).toBe(401);
      expect(errorCode(r)).toBe("UNAUTHENTICATED");
      expect(r.text).not.toContain(USER);
    }
  });

  it("needs a token for unknown routes too, so a stranger cannot map the API", async () => {
    expect((await http(url, "GET", "/no/such/route")).status).toBe(401);
    expect((await http(url, "GET", "/no/such/route", { headers: bearer(USER) })).status).toBe(404);
  });

  it("keeps /healthz and the dashboard's page public, and its data behind a token", async () => {
    expect((await http(url, "GET", "/healthz")).status).toBe(200);
    const page = await http(url, "GET", "/ui");
    expect(page.status).toBe(200);
    expect(page.text).toContain("<title>Boki.ts dashboard</title>");
    expect((await http(url, "GET", "/ui/assets/app.mjs")).status).toBe(200);
    expect((await http(url, "GET", "/ui/api/overview")).status).toBe(401);
    expect((await http(url, "GET", "/metrics")).status).toBe(401);
    const data = await http(url, "GET", "/ui/api/overview", { headers: bearer(USER) });
    expect(data.status).toBe(200);
    expect((data.json as { gateway: { auth: boolean } }).gateway.auth).toBe(true);
  });

  it("refuses a user token on an admin route with 403 FORBIDDEN and leaves the instance as it was; an admin token cancels it", async () => {
    const start = await http(url, "POST", "/async/workflow/napper", {
      body: '{"ms":600000}',
      headers: { ...bearer(USER), "x-boki-workflow-id": "nap-1" },
    });
    expect(start.status).toBe(202);
    const sleeping = async (): Promise<{ status: string; cancelRequested?: boolean }> => {
      for (let i = 0; i < 200; i++) {
        const s = await http(url, "GET", "/workflows/nap-1", { headers: bearer(USER) });
        const body = s.json as { status: string; cancelRequested?: boolean };
        if (s.status === 200 && body.status === "sleeping") return body;
        await new Promise((r) => setTimeout(r, 50));
      }
      throw new Error("the instance never slept");
    };
    await sleeping();
    const denied = await http(url, "POST", "/workflows/nap-1/cancel", { headers: bearer(USER) });
    expect(denied.status).toBe(403);
    expect(errorCode(denied)).toBe("FORBIDDEN");
    const none = await http(url, "POST", "/workflows/nap-1/cancel");
    expect(none.status).toBe(401);
    expect((await sleeping()).cancelRequested).toBeUndefined();
    const done = await http(url, "POST", "/workflows/nap-1/cancel", {
      body: '{"reason":"test"}',
      headers: bearer(ADMIN),
    });
    expect(done.status).toBe(200);
    expect((done.json as { cancelled: boolean }).cancelled).toBe(true);
    // An admin token passes where a user token does.
    expect((await http(url, "GET", "/functions", { headers: bearer(ADMIN) })).status).toBe(200);
  });

  it("writes no token into the logs", () => {
    const all = lines.join("\n");
    for (const secret of [USER, ADMIN, "wrong-token-0123456789abcdef"])
      expect(all).not.toContain(secret);
  });
});

describe("who may start a gateway, and without which token", () => {
  it("refuses to listen beyond loopback without a token, saying what to give it", async () => {
    const t = tempDir();
    try {
      await expect(
        DevServer.start({
          functions: FLOWS,
          dataDir: join(t.dir, "d"),
          workers: 1,
          host: "0.0.0.0",
        }),
      ).rejects.toThrow(/beyond loopback, without authentication: give it a token/);
    } finally {
      t.remove();
    }
    expect(() => checkListenAuth("10.1.2.3", {})).toThrow(/--auth-token-file/);
    expect(() => checkListenAuth("10.1.2.3", { tokens: [USER] })).not.toThrow();
    expect(() => checkListenAuth("0.0.0.0", { allowUnauthenticated: true })).not.toThrow();
    expect(() => checkListenAuth("127.0.0.1", {})).not.toThrow();
  });

  it("tells loopback addresses from the rest", () => {
    for (const h of ["127.0.0.1", "127.8.9.10", "localhost", "::1", "[::1]", "::ffff:127.0.0.1"])
      expect(isLoopbackHost(h), h).toBe(true);
    for (const h of [
      "0.0.0.0",
      "::",
      "10.0.0.1",
      "192.168.1.1",
      "example.com",
      "128.0.0.1",
      "127.0.0.256",
    ])
      expect(isLoopbackHost(h), h).toBe(false);
  });

  it("rejects short, spaced and non-ASCII tokens with an exact message, and reads token files", () => {
    expect(() => new TokenSet(["short"])).toThrow(/16 to 4096 characters, got 5/);
    expect(() => new TokenSet(["has a space in it ok"])).toThrow(/visible ASCII/);
    const t = tempDir();
    try {
      const f = join(t.dir, "tokens");
      writeFileSync(f, `# comment\n${USER}\n\n${ADMIN}\n`);
      expect(readTokenFile(f)).toEqual([USER, ADMIN]);
      expect(gatherTokens({ file: f, env: USER, what: "t" })).toEqual([USER, ADMIN]);
      writeFileSync(f, "\n# nothing\n");
      expect(() => readTokenFile(f)).toThrow(/holds no token/);
    } finally {
      t.remove();
    }
  });

  it("decides access by route: public, user, admin; and never shows a token in its string forms", () => {
    expect(accessOf("GET", "/healthz", {})).toBe("public");
    expect(accessOf("HEAD", "/ui/assets/:file", {})).toBe("public");
    expect(accessOf("GET", "/ui/api/overview", {})).toBe("user");
    expect(accessOf("POST", "/workflows/:id/cancel", {})).toBe("admin");
    expect(accessOf("POST", "/anything", { access: "admin" })).toBe("admin");
    expect(accessOf("GET", undefined, undefined)).toBe("user");
    const auth = new GatewayAuth({ tokens: [USER], adminTokens: [ADMIN] });
    expect(String(auth.users)).not.toContain(USER);
    expect(JSON.stringify(auth)).not.toContain(ADMIN);
    expect(() => authorize(auth, "admin", `Bearer ${USER}`, "x")).toThrow(AuthError);
    expect(() => authorize(auth, "admin", `Bearer ${ADMIN}`, "x")).not.toThrow();
    const userOnly = new GatewayAuth({ tokens: [USER] });
    expect(() => authorize(userOnly, "admin", `Bearer ${USER}`, "cancel")).toThrow(
      /has none configured/,
    );
  });
});

describe("TLS", () => {
  const t = tempDir();
  let server: DevServer;
  let cert: Buffer;

  beforeAll(async () => {
    const key = join(t.dir, "key.pem");
    const crt = join(t.dir, "cert.pem");
    execFileSync(
      "openssl",
      [
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        key,
        "-out",
        crt,
        "-days",
        "2",
        "-subj",
        "/CN=127.0.0.1",
        "-addext",
        "subjectAltName=IP:127.0.0.1",
      ],
      { stdio: "ignore", timeout: 20_000 },
    );
    const tls = loadTls(crt, key)!;
    cert = tls.cert as Buffer;
    server = await DevServer.start({
      functions: FLOWS,
      dataDir: join(t.dir, "data"),
      workers: 1,
      tls,
      auth: { tokens: [USER] },
    });
  }, 60_000);

  afterAll(async () => {
    await server?.close();
    t.remove();
  });

  const httpsCall = (
    path: string,
    headers: Record<string, string>,
  ): Promise<{ status: number; body: string }> =>
    new Promise((resolve, reject) => {
      const u = new URL(server.url + path);
      const req = httpsRequest(
        {
          host: u.hostname,
          port: u.port,
          path: u.pathname,
          method: "POST",
          ca: cert,
          headers,
          timeout: 10_000,
        },
        (res) => {
          let body = "";
          res.on("data", (c: Buffer) => (body += c.toString()));
          res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
        },
      );
      req.on("error", reject);
      req.end('{"a":2,"b":3}');
    });

  it("serves HTTPS, with the tokens checked inside it", async () => {
    expect(server.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    expect(await httpsCall("/function/plain-add", bearer(USER))).toEqual({
      status: 200,
      body: "5",
    });
    expect((await httpsCall("/function/plain-add", {})).status).toBe(401);
  });

  it("refuses plain HTTP: the connection fails, and HTTPS goes on serving", async () => {
    const plain = server.url.replace(/^https:/, "http:");
    await expect(
      fetch(`${plain}/healthz`, { signal: AbortSignal.timeout(10_000) }),
    ).rejects.toThrow();
    expect((await httpsCall("/function/plain-add", bearer(USER))).status).toBe(200);
  });

  it("refuses a certificate without its key, and files that are not PEM, naming them", () => {
    expect(() => loadTls(join(t.dir, "cert.pem"), undefined)).toThrow(/both a certificate/);
    const junk = join(t.dir, "junk.pem");
    writeFileSync(junk, "not a pem");
    expect(() => loadTls(junk, junk)).toThrow(/junk\.pem.*cannot serve TLS/);
    expect(() => loadTls(join(t.dir, "missing.pem"), junk)).toThrow(
      /cannot read the TLS certificate/,
    );
  });
});
