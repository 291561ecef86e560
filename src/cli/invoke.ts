/** `boki invoke`: calls a function through a gateway over HTTP and prints what it returned. */
import { InvalidArgumentError as CliArgumentError } from "commander";
import { setTimeout as sleep } from "node:timers/promises";
import { CliFailure } from "./errors.js";

export const DEFAULT_URL = "http://127.0.0.1:8080";
/** Longest `boki invoke` waits for one HTTP answer (functions may run up to 15 minutes). */
const REQUEST_TIMEOUT_MS = 16 * 60_000;
/** How often `--async --wait` asks for the status, and for how long at most. */
const STATUS_POLL_MS = 200;
const STATUS_WAIT_MS_MAX = 16 * 60_000;

export interface InvokeOptions {
  url?: string;
  book?: number;
  async: boolean;
  wait: boolean;
  idempotencyKey?: string;
}

async function request(
  url: string,
  init: RequestInit,
): Promise<{ status: number; headers: Headers; body: string }> {
  let res: Response;
  try {
    res = await fetch(url, { ...init, signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
  } catch (err) {
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    throw new CliFailure(
      `cannot reach ${url}: ${cause?.code ?? cause?.message ?? (err as Error).message} (is \`boki dev\` running?)`,
    );
  }
  return { status: res.status, headers: res.headers, body: await res.text() };
}

function fail(status: number, body: string): never {
  try {
    const e = (JSON.parse(body) as { error?: { code?: string; message?: string } }).error;
    if (e?.code !== undefined)
      throw new CliFailure(`error ${e.code} (HTTP ${status}): ${e.message}`);
  } catch (err) {
    if (err instanceof CliFailure) throw err;
  }
  throw new CliFailure(`HTTP ${status}: ${body}`);
}

function pretty(json: string): string {
  try {
    return JSON.stringify(JSON.parse(json), null, 2);
  } catch {
    return json;
  }
}

export async function invokeCommand(
  name: string,
  json: string | undefined,
  o: InvokeOptions,
): Promise<void> {
  const base = (o.url ?? process.env["BOKI_URL"] ?? DEFAULT_URL).replace(/\/+$/, "");
  if (!/^https?:\/\//.test(base))
    throw new CliArgumentError(`--url must be an http(s) URL, got ${base}`);
  if (o.wait && !o.async) throw new CliArgumentError("--wait goes with --async");
  const input = json ?? "null";
  try {
    JSON.parse(input);
  } catch (err) {
    throw new CliArgumentError(`the input is not JSON: ${(err as Error).message}`);
  }
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (o.book !== undefined) headers["x-boki-book"] = String(o.book);
  if (o.idempotencyKey !== undefined) headers["idempotency-key"] = o.idempotencyKey;
  const path = `${o.async ? "/async" : ""}/function/${encodeURIComponent(name)}`;
  const res = await request(base + path, { method: "POST", headers, body: input });
  if (res.status >= 400) fail(res.status, res.body);
  if (!o.async) {
    console.log(pretty(res.body));
    return;
  }
  const { invocationId } = JSON.parse(res.body) as { invocationId: string };
  if (!o.wait) {
    console.log(invocationId);
    return;
  }
  const until = Date.now() + STATUS_WAIT_MS_MAX;
  while (Date.now() < until) {
    const s = await request(`${base}/invocations/${encodeURIComponent(invocationId)}`, {
      method: "GET",
    });
    if (s.status >= 400) fail(s.status, s.body);
    const status = JSON.parse(s.body) as {
      status: string;
      output?: unknown;
      error?: { code: string; message: string };
    };
    if (status.status === "succeeded") {
      console.log(JSON.stringify(status.output, null, 2));
      return;
    }
    if (status.status === "failed") {
      throw new CliFailure(
        `invocation ${invocationId} failed: ${status.error?.code}: ${status.error?.message}`,
      );
    }
    await sleep(STATUS_POLL_MS);
  }
  throw new CliFailure(
    `invocation ${invocationId} did not finish within ${STATUS_WAIT_MS_MAX / 1000} s`,
  );
}
