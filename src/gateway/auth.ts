/**
 * Bearer-token authentication of the HTTP gateway.
 *
 * Every route needs a token except the public ones (`GET /healthz`, the dashboard's page and
 * its static files; its data comes from routes that need one). Two kinds of token:
 * - a **user** token calls functions, starts workflows and reads status, metrics and the
 *   dashboard's data;
 * - an **admin** token does that and also what changes the state of instances or of the
 *   cluster: `POST /workflows/<id>/cancel`, and any route registered with
 *   `config: { access: "admin" }`.
 * A request without a token (or with a token that matches none) gets `401 UNAUTHENTICATED`;
 * a user token on an admin route gets `403 FORBIDDEN`. Unknown routes need a token too, so
 * that a stranger cannot map the API.
 *
 * Tokens are compared in constant time: each presented token is hashed (SHA-256) and the
 * digest compared with every configured token's digest with `timingSafeEqual`, without an
 * early exit, so neither a token's content nor its length shows in the timing. Tokens are
 * never logged and never echoed in errors.
 *
 * A gateway that listens beyond loopback refuses to start without a token unless told
 * `allowUnauthenticated` (see `checkListenAuth`).
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { readFileSync } from "node:fs";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { InvalidArgumentError } from "../log/errors.js";
import { isLoopbackHost } from "../transport/handshake.js";

export { isLoopbackHost };

/** Fewest characters a token may have (`openssl rand -hex 32` gives 64). */
export const AUTH_TOKEN_CHARS_MIN = 16;
/** Most characters a token may have. */
export const AUTH_TOKEN_CHARS_MAX = 4096;
/** Most tokens of one kind (several allow rotating them without a restart of clients). */
export const AUTH_TOKENS_MAX = 64;

/** Who may use a route. */
export type Access = "public" | "user" | "admin";

/** The route config key a registrar sets to give its route an access level. */
export const ACCESS_CONFIG_KEY = "access";

export interface GatewayAuthOptions {
  /** User tokens. */
  readonly tokens?: readonly string[];
  /** Admin tokens (they also pass where a user token does). */
  readonly adminTokens?: readonly string[];
  /**
   * Serve beyond loopback without any token. Anyone who can reach the port may then call
   * every route, admin ones included. Default false.
   */
  readonly allowUnauthenticated?: boolean;
}

export type AuthErrorCode = "UNAUTHENTICATED" | "FORBIDDEN";

/** A request was refused by authentication. Never retryable with the same credentials. */
export class AuthError extends Error {
  readonly code: AuthErrorCode;
  readonly retryable = false;
  constructor(code: AuthErrorCode, message: string) {
    super(message);
    this.name = "AuthError";
    this.code = code;
  }
  get status(): 401 | 403 {
    return this.code === "UNAUTHENTICATED" ? 401 : 403;
  }
  toJSON(): { code: AuthErrorCode; message: string } {
    return { code: this.code, message: this.message };
  }
}

function checkToken(token: string, what: string): string {
  if (token.length < AUTH_TOKEN_CHARS_MIN || token.length > AUTH_TOKEN_CHARS_MAX) {
    throw new InvalidArgumentError(
      `${what} must be ${AUTH_TOKEN_CHARS_MIN} to ${AUTH_TOKEN_CHARS_MAX} characters, got ${token.length} (make one with: openssl rand -hex 32)`,
    );
  }
  if (!/^[\x21-\x7e]+$/.test(token)) {
    throw new InvalidArgumentError(`${what} must be visible ASCII characters without spaces`);
  }
  return token;
}

const digest = (s: string): Buffer => createHash("sha256").update(s, "utf8").digest();

/** A set of tokens, matched in constant time. Its string forms never show a token. */
export class TokenSet {
  readonly #digests: readonly Buffer[];

  constructor(tokens: readonly string[], what = "a token") {
    if (tokens.length > AUTH_TOKENS_MAX) {
      throw new InvalidArgumentError(
        `at most ${AUTH_TOKENS_MAX} tokens of a kind, got ${tokens.length}`,
      );
    }
    this.#digests = tokens.map((t) => digest(checkToken(t, what)));
  }

  get size(): number {
    return this.#digests.length;
  }

  /** Whether `presented` is one of the tokens; takes the same time whichever matches. */
  matches(presented: string): boolean {
    const d = digest(presented);
    let found = false;
    for (const t of this.#digests) found = timingSafeEqual(d, t) || found;
    return found;
  }

  toString(): string {
    return `[${this.#digests.length} tokens]`;
  }

  toJSON(): string {
    return this.toString();
  }
}

/** Tokens from a file: one per line; blank lines and lines starting with `#` are skipped. */
export function readTokenFile(path: string): string[] {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new InvalidArgumentError(
      `cannot read the token file ${path}: ${err instanceof Error ? err.message : String(err)}`,
    );
  }
  const tokens = text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l.length > 0 && !l.startsWith("#"));
  if (tokens.length === 0) throw new InvalidArgumentError(`the token file ${path} holds no token`);
  tokens.forEach((t, i) => checkToken(t, `the token on line ${i + 1} of ${path}`));
  return tokens;
}

/**
 * Gathers the tokens of one kind from a flag, a file and an environment variable (all that
 * are given count), e.g. `--auth-token`, `--auth-token-file` and `BOKI_AUTH_TOKEN`.
 */
export function gatherTokens(sources: {
  readonly token?: string | undefined;
  readonly file?: string | undefined;
  readonly env?: string | undefined;
  readonly what: string;
}): string[] {
  const out: string[] = [];
  if (sources.token !== undefined) out.push(checkToken(sources.token.trim(), sources.what));
  if (sources.env !== undefined && sources.env.trim() !== "")
    out.push(checkToken(sources.env.trim(), sources.what));
  if (sources.file !== undefined) out.push(...readTokenFile(sources.file));
  return [...new Set(out)];
}

/** Resolved authentication of a gateway: which tokens, and whether any is required. */
export class GatewayAuth {
  readonly users: TokenSet;
  readonly admins: TokenSet;

  constructor(options: GatewayAuthOptions = {}) {
    this.users = new TokenSet(options.tokens ?? [], "an auth token");
    this.admins = new TokenSet(options.adminTokens ?? [], "an admin token");
  }

  /** Whether requests need a token at all. */
  get enabled(): boolean {
    return this.users.size + this.admins.size > 0;
  }
}

/**
 * Refuses to serve beyond loopback without authentication: throws an error saying what to
 * do. Loopback-only gateways may run without tokens (as `boki dev` does by default).
 */
export function checkListenAuth(host: string, options: GatewayAuthOptions | undefined): void {
  const auth = new GatewayAuth(options);
  if (auth.enabled || isLoopbackHost(host) || options?.allowUnauthenticated === true) return;
  throw new InvalidArgumentError(
    `the gateway would listen on ${host}, beyond loopback, without authentication: give it a token ` +
      "(--auth-token-file <file>, BOKI_AUTH_TOKEN or --auth-token; make one with `openssl rand -hex 32`), " +
      "or listen on 127.0.0.1",
  );
}

/** Routes whose access is not "user", by method and route pattern. */
const ROUTE_ACCESS: ReadonlyMap<string, Access> = new Map<string, Access>([
  ["GET /healthz", "public"],
  ["POST /workflows/:id/cancel", "admin"],
]);

/** Patterns (with a trailing `*`) of public routes: the dashboard's page and its files. */
const PUBLIC_PREFIXES: readonly string[] = ["/ui/assets/"];
const PUBLIC_ROUTES: ReadonlySet<string> = new Set(["/ui", "/ui/"]);

/** The access a request needs: by the route's config, else by its method and pattern. */
export function accessOf(method: string, routeUrl: string | undefined, config: unknown): Access {
  const declared = (config as Record<string, unknown> | undefined)?.[ACCESS_CONFIG_KEY];
  if (declared === "public" || declared === "user" || declared === "admin") return declared;
  if (routeUrl === undefined) return "user";
  const m = method === "HEAD" ? "GET" : method;
  const known = ROUTE_ACCESS.get(`${m} ${routeUrl}`);
  if (known !== undefined) return known;
  if (
    m === "GET" &&
    (PUBLIC_ROUTES.has(routeUrl) || PUBLIC_PREFIXES.some((p) => routeUrl.startsWith(p)))
  )
    return "public";
  return "user";
}

/** The token of an `Authorization: Bearer <token>` header; throws when it is malformed. */
export function bearerToken(header: string | string[] | undefined): string | undefined {
  if (header === undefined) return undefined;
  if (Array.isArray(header) || header.length > AUTH_TOKEN_CHARS_MAX + 16) {
    throw new AuthError("UNAUTHENTICATED", "the Authorization header must be one 'Bearer <token>'");
  }
  const m = /^Bearer[ ]+([\x21-\x7e]+)[ ]*$/i.exec(header);
  if (m === null) {
    throw new AuthError("UNAUTHENTICATED", "the Authorization header must be 'Bearer <token>'");
  }
  return m[1]!;
}

/**
 * Decides a request: resolves when it may go on, throws `AuthError` otherwise. Pure: the
 * route's access and the header in, a decision out.
 */
export function authorize(
  auth: GatewayAuth,
  access: Access,
  authorization: string | string[] | undefined,
  what: string,
): void {
  if (!auth.enabled || access === "public") return;
  const token = bearerToken(authorization);
  if (token === undefined) {
    throw new AuthError("UNAUTHENTICATED", `${what} needs a token (Authorization: Bearer <token>)`);
  }
  // Both sets are always checked, so the time taken does not tell which kind matched.
  const admin = auth.admins.matches(token);
  const user = auth.users.matches(token);
  if (!admin && !user) throw new AuthError("UNAUTHENTICATED", "the token is not valid here");
  if (access === "admin" && !admin) {
    throw new AuthError(
      "FORBIDDEN",
      auth.admins.size === 0
        ? `${what} needs an admin token, and this gateway has none configured (--admin-token-file)`
        : `${what} needs an admin token`,
    );
  }
}

function sendAuthError(reply: FastifyReply, err: AuthError): FastifyReply {
  if (err.code === "UNAUTHENTICATED") void reply.header("www-authenticate", 'Bearer realm="boki"');
  return reply.code(err.status).send({ error: err.toJSON() });
}

/** Adds the check to every request of `app` (nothing at all when no token is configured). */
export function registerAuth(app: FastifyInstance, auth: GatewayAuth): void {
  if (!auth.enabled) return;
  app.addHook("onRequest", (req: FastifyRequest, reply: FastifyReply, done) => {
    const route = req.routeOptions.url;
    const access = accessOf(req.method, route, req.routeOptions.config);
    try {
      authorize(auth, access, req.headers.authorization, `${req.method} ${route ?? "this route"}`);
    } catch (err) {
      if (!(err instanceof AuthError)) throw err;
      return sendAuthError(reply, err);
    }
    done();
  });
}
