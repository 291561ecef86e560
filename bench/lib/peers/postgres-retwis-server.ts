/**
 * Retwis on PostgreSQL behind an HTTP server: the peer of bench/functions/store/retwis.ts in
 * the store benchmark. One Node process (fastify, as Boki's gateway) with a pg Pool; the
 * same routes and JSON as `boki dev` (POST /function/retwis-<request>), so the load
 * generator sends identical requests to both. Every transaction runs SERIALIZABLE (the
 * session default), read-only ones as single statements; serialization failures (40001,
 * 40P01) are retried with the same bound and backoff as the store's `transaction` helper.
 * The one operation outside a transaction on both sides, a post's push onto the global
 * timeline, is a single-row update at READ COMMITTED (an atomic read-modify-write, as the
 * store's plain `push` is).
 *
 *   node --import tsx postgres-retwis-server.ts --url <postgres url> --port <n> --pool <n>
 */
import Fastify from "fastify";
import pg from "pg";

export const RETWIS_SCHEMA = `
  CREATE TABLE users (
    id text PRIMARY KEY,
    username text NOT NULL UNIQUE,
    password text NOT NULL,
    auth text NOT NULL,
    followers text[] NOT NULL,
    followees text[] NOT NULL,
    posts text[] NOT NULL
  );
  CREATE TABLE posts (id text PRIMARY KEY, user_id text NOT NULL, user_name text NOT NULL, body text NOT NULL);
  CREATE TABLE timeline (id int PRIMARY KEY, posts text[] NOT NULL);
`;

const USER_POSTS_MAX = 24;
const TIMELINE_POSTS_MAX = 96;
const NOTIFIED_FOLLOWERS_MAX = 4;
const TIMELINE_READ_MAX = 8;
/** As the store's `transaction` helper: retries, and backoff base/cap in ms with jitter. */
const RETRIES = 8;
const BACKOFF_BASE_MS = 2;
const BACKOFF_CAP_MS = 200;

function backoffMs(attempt: number): number {
  const exp = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** Math.max(0, attempt - 1));
  return exp / 2 + (exp / 2) * Math.random();
}

const isRetryable = (err: unknown): boolean => {
  const code = (err as { code?: unknown }).code;
  return code === "40001" || code === "40P01";
};

function arg(name: string): string {
  const i = process.argv.indexOf(`--${name}`);
  const v = i < 0 ? undefined : process.argv[i + 1];
  if (v === undefined) throw new Error(`missing --${name}`);
  return v;
}

/** Runs `fn` in a SERIALIZABLE transaction on one pooled client, retrying serialization failures. */
async function inTransaction<T>(
  pool: pg.Pool,
  fn: (c: pg.PoolClient) => Promise<T>,
): Promise<{ out: T; attempts: number } | { conflict: true; attempts: number }> {
  for (let attempt = 1; ; attempt++) {
    const c = await pool.connect();
    try {
      await c.query("BEGIN ISOLATION LEVEL SERIALIZABLE");
      const out = await fn(c);
      await c.query("COMMIT");
      return { out, attempts: attempt };
    } catch (err) {
      await c.query("ROLLBACK").catch(() => undefined);
      if (!isRetryable(err)) throw err;
      if (attempt > RETRIES) return { conflict: true, attempts: attempt };
    } finally {
      c.release();
    }
    await new Promise((r) => setTimeout(r, backoffMs(attempt)));
  }
}

/** A single statement (its own serializable transaction), retried on serialization failure. */
async function statement<R extends pg.QueryResultRow>(
  pool: pg.Pool,
  text: string,
  values: unknown[],
): Promise<pg.QueryResult<R>> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await pool.query<R>({ text, values });
    } catch (err) {
      if (!isRetryable(err) || attempt > RETRIES) throw err;
    }
    await new Promise((r) => setTimeout(r, backoffMs(attempt)));
  }
}

const TIMELINE_SQL = (source: string): string => `
  SELECT p.body, p.user_name
  FROM ${source} AS s, unnest(s.posts) WITH ORDINALITY AS l(pid, n)
  JOIN posts p ON p.id = l.pid
  ORDER BY l.n DESC
  LIMIT ${TIMELINE_READ_MAX}`;

async function main(): Promise<void> {
  const pool = new pg.Pool({
    connectionString: arg("url"),
    max: Number(arg("pool")),
    // Every transaction of this server is serializable unless it says otherwise.
    options: "-c default_transaction_isolation=serializable",
  });
  const app = Fastify({ logger: false });
  let nextPost = 0;
  const prefix = `${process.pid.toString(36)}-`;

  app.get("/healthz", () => ({ status: "ok" }));

  app.post("/function/retwis-login", async (req) => {
    const input = req.body as { username: string; password: string };
    const r = await statement<{ id: string; password: string; auth: string }>(
      pool,
      "SELECT id, password, auth FROM users WHERE username = $1",
      [input.username],
    );
    const u = r.rows[0];
    if (u === undefined) return { ok: false, message: "no such user" };
    if (u.password !== input.password) return { ok: false, message: "wrong password" };
    return { ok: true, userId: u.id, auth: u.auth };
  });

  app.post("/function/retwis-profile", async (req) => {
    const input = req.body as { userId: string };
    const r = await statement<{ username: string; f: number; g: number; p: number }>(
      pool,
      `SELECT username, cardinality(followers) AS f, cardinality(followees) AS g, cardinality(posts) AS p
       FROM users WHERE id = $1`,
      [input.userId],
    );
    const u = r.rows[0];
    if (u === undefined) return { ok: false, message: `no user ${input.userId}` };
    return { ok: true, username: u.username, numFollowers: u.f, numFollowees: u.g, numPosts: u.p };
  });

  app.post("/function/retwis-timeline", async (req) => {
    const input = (req.body ?? {}) as { userId?: string };
    const r =
      input.userId === undefined
        ? await statement<{ body: string; user_name: string }>(
            pool,
            TIMELINE_SQL("(SELECT posts FROM timeline WHERE id = 1)"),
            [],
          )
        : await statement<{ body: string; user_name: string }>(
            pool,
            TIMELINE_SQL("(SELECT posts FROM users WHERE id = $1)"),
            [input.userId],
          );
    return { ok: true, posts: r.rows.map((p) => ({ body: p.body, user: p.user_name })) };
  });

  app.post("/function/retwis-post", async (req) => {
    const input = req.body as { userId: string; body: string };
    const postId = `${prefix}${++nextPost}`;
    const r = await inTransaction(pool, async (c) => {
      const u = await c.query<{ username: string; followers: string[] }>(
        "SELECT username, followers FROM users WHERE id = $1",
        [input.userId],
      );
      const user = u.rows[0];
      if (user === undefined) return { ok: false, message: `no user ${input.userId}` };
      await c.query("INSERT INTO posts (id, user_id, user_name, body) VALUES ($1, $2, $3, $4)", [
        postId,
        input.userId,
        user.username,
        input.body,
      ]);
      const followers = [...user.followers];
      for (let i = followers.length - 1; i > 0; i--) {
        const j = Math.floor(Math.random() * (i + 1));
        [followers[i], followers[j]] = [followers[j]!, followers[i]!];
      }
      const notified = followers.slice(0, NOTIFIED_FOLLOWERS_MAX);
      if (notified.length > 0) {
        await c.query(
          `UPDATE users SET posts = (array_append(posts, $1))[greatest(1, cardinality(posts) + 2 - ${USER_POSTS_MAX}):]
           WHERE id = ANY($2)`,
          [postId, notified],
        );
      }
      return { ok: true };
    });
    if ("conflict" in r) return { ok: false, conflict: true, attempts: r.attempts };
    if (r.out.ok) {
      // Outside the transaction, as the store's plain push onto the timeline: one atomic
      // read-modify-write of one row. READ COMMITTED gives exactly that (the update waits for
      // the row and applies to its newest version); SERIALIZABLE would fail it with 40001
      // whenever two posts race for this one hot row.
      const c = await pool.connect();
      try {
        await c.query("BEGIN ISOLATION LEVEL READ COMMITTED");
        await c.query(
          `UPDATE timeline SET posts = (array_append(posts, $1))[greatest(1, cardinality(posts) + 2 - ${TIMELINE_POSTS_MAX}):]
           WHERE id = 1`,
          [postId],
        );
        await c.query("COMMIT");
      } catch (err) {
        await c.query("ROLLBACK").catch(() => undefined);
        throw err;
      } finally {
        c.release();
      }
    }
    return { ...r.out, attempts: r.attempts };
  });

  const address = await app.listen({ host: "127.0.0.1", port: Number(arg("port")) });
  process.stdout.write(`retwis-postgres listening at ${address}\n`);
  const stop = (): void => {
    void app
      .close()
      .then(() => pool.end())
      .finally(() => process.exit(0));
  };
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
}

if (process.argv.includes("--url")) await main();
