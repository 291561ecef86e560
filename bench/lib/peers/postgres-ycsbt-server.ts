/**
 * YCSB-T accounts on PostgreSQL behind an HTTP server: the peer of bench/functions/txn in the
 * txn benchmark. One Node process (fastify, as Boki's gateway) with a pg Pool, answering the
 * same routes with the same JSON as `boki dev` does for the accounts, so the load generator
 * sends identical requests to both:
 *
 *   POST /object/ycsbt-account/<key>/read     the account { balance, fields }
 *   POST /object/ycsbt-account/<key>/update   { field, value }: one column of one row
 *   POST /workflow/ycsbt-transfer             { from, to, amount }: a SERIALIZABLE transaction
 *
 * Every statement runs SERIALIZABLE (the session default). A transfer is an interactive
 * transaction, as an application holding a connection writes it: BEGIN, the withdrawal (an
 * UPDATE that takes nothing below zero), the deposit, COMMIT, one round trip each. It is
 * retried on serialization failures (40001) and on deadlocks (40P01, found after the
 * server's deadlock_timeout), each counted and returned, with the same bound and backoff as
 * the store benchmark's peer. Reads and updates are single statements, retried likewise.
 *
 *   node --import tsx postgres-ycsbt-server.ts --url <postgres url> --port <n> --pool <n>
 */
import Fastify from "fastify";
import pg from "pg";

/** Fields of an account besides its balance (columns f0 … f9). */
export const YCSBT_FIELDS = 10;
export const YCSBT_SCHEMA = `
  CREATE TABLE accounts (
    key text PRIMARY KEY,
    balance bigint NOT NULL,
    ${Array.from({ length: YCSBT_FIELDS }, (_, i) => `f${i} text NOT NULL`).join(",\n    ")}
  );
`;

/** Retries of a transfer or statement, and backoff base/cap in ms with jitter. */
const RETRIES = 8;
const BACKOFF_BASE_MS = 2;
const BACKOFF_CAP_MS = 200;
const FIELD_COLUMNS = Array.from({ length: YCSBT_FIELDS }, (_, i) => `f${i}`);

function backoffMs(attempt: number): number {
  const exp = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** Math.max(0, attempt - 1));
  return exp / 2 + (exp / 2) * Math.random();
}

function sqlState(err: unknown): unknown {
  return (err as { code?: unknown } | null)?.code;
}
const SERIALIZATION_FAILURE = "40001";
const DEADLOCK = "40P01";

function arg(name: string): string {
  const i = process.argv.indexOf(`--${name}`);
  const v = i < 0 ? undefined : process.argv[i + 1];
  if (v === undefined) throw new Error(`missing --${name}`);
  return v;
}

/** What a transfer answers (the shape of Boki's transaction outcome, plus the retries' causes). */
export type PgTransferOutcome =
  | {
      readonly status: "committed";
      readonly outputs: readonly number[];
      readonly attempts: number;
      readonly serializationFailures: number;
      readonly deadlocks: number;
    }
  | {
      readonly status: "aborted";
      readonly retryable: boolean;
      readonly error: { readonly code: string; readonly message: string };
      readonly attempts: number;
      readonly serializationFailures: number;
      readonly deadlocks: number;
    };

async function transfer(
  pool: pg.Pool,
  from: string,
  to: string,
  amount: number,
): Promise<PgTransferOutcome> {
  let serializationFailures = 0;
  let deadlocks = 0;
  for (let attempt = 1; ; attempt++) {
    const c = await pool.connect();
    try {
      await c.query("BEGIN ISOLATION LEVEL SERIALIZABLE");
      const w = await c.query<{ balance: string }>(
        "UPDATE accounts SET balance = balance - $2 WHERE key = $1 AND balance >= $2 RETURNING balance",
        [from, amount],
      );
      const wb = w.rows[0];
      if (wb === undefined) {
        await c.query("ROLLBACK");
        return {
          status: "aborted",
          retryable: false,
          error: { code: "INSUFFICIENT_FUNDS", message: `${from} has less than ${amount}` },
          attempts: attempt,
          serializationFailures,
          deadlocks,
        };
      }
      const d = await c.query<{ balance: string }>(
        "UPDATE accounts SET balance = balance + $2 WHERE key = $1 RETURNING balance",
        [to, amount],
      );
      const db = d.rows[0];
      if (db === undefined) {
        await c.query("ROLLBACK");
        return {
          status: "aborted",
          retryable: false,
          error: { code: "NO_ACCOUNT", message: `account ${to} was never loaded` },
          attempts: attempt,
          serializationFailures,
          deadlocks,
        };
      }
      await c.query("COMMIT");
      return {
        status: "committed",
        outputs: [Number(wb.balance), Number(db.balance)],
        attempts: attempt,
        serializationFailures,
        deadlocks,
      };
    } catch (err) {
      await c.query("ROLLBACK").catch(() => undefined);
      const code = sqlState(err);
      if (code === SERIALIZATION_FAILURE) serializationFailures++;
      else if (code === DEADLOCK) deadlocks++;
      else throw err;
      if (attempt > RETRIES) {
        return {
          status: "aborted",
          retryable: true,
          error: { code: String(code), message: (err as Error).message },
          attempts: attempt,
          serializationFailures,
          deadlocks,
        };
      }
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
      const code = sqlState(err);
      if ((code !== SERIALIZATION_FAILURE && code !== DEADLOCK) || attempt > RETRIES) throw err;
    }
    await new Promise((r) => setTimeout(r, backoffMs(attempt)));
  }
}

async function main(): Promise<void> {
  const pool = new pg.Pool({
    connectionString: arg("url"),
    max: Number(arg("pool")),
    options: "-c default_transaction_isolation=serializable",
  });
  const app = Fastify({ logger: false });
  const readSql = `SELECT balance, ${FIELD_COLUMNS.join(", ")} FROM accounts WHERE key = $1`;
  const updateSql = FIELD_COLUMNS.map((c) => `UPDATE accounts SET ${c} = $2 WHERE key = $1`);

  app.get("/healthz", () => ({ status: "ok" }));

  app.post<{ Params: { key: string } }>("/object/ycsbt-account/:key/read", async (req, reply) => {
    const r = await statement<Record<string, string>>(pool, readSql, [req.params.key]);
    const row = r.rows[0];
    if (row === undefined)
      return reply.code(422).send({ error: { code: "NO_ACCOUNT", message: req.params.key } });
    return { balance: Number(row["balance"]), fields: FIELD_COLUMNS.map((c) => row[c]) };
  });

  app.post<{ Params: { key: string } }>("/object/ycsbt-account/:key/update", async (req, reply) => {
    const input = req.body as { field?: unknown; value?: unknown } | null;
    const f = input?.field;
    const sql = typeof f === "number" ? updateSql[f] : undefined;
    if (sql === undefined || typeof input?.value !== "string")
      return reply.code(422).send({ error: { code: "BAD_FIELD", message: "field, value" } });
    const r = await statement(pool, sql, [req.params.key, input.value]);
    if (r.rowCount !== 1)
      return reply.code(422).send({ error: { code: "NO_ACCOUNT", message: req.params.key } });
    return null;
  });

  app.post("/workflow/ycsbt-transfer", async (req) => {
    const t = req.body as { from: string; to: string; amount: number };
    return transfer(pool, t.from, t.to, t.amount);
  });

  const address = await app.listen({ host: "127.0.0.1", port: Number(arg("port")) });
  process.stdout.write(`ycsbt-postgres listening at ${address}\n`);
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
