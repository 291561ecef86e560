/** Small HTTP helpers for gateway tests: every request has a bounded wait. */
export const HTTP_TIMEOUT_MS = 20_000;

export interface HttpReply {
  status: number;
  headers: Headers;
  text: string;
  /** The body parsed as JSON (undefined if it is not JSON). */
  json: unknown;
}

export async function http(
  base: string,
  method: string,
  path: string,
  options: { body?: string; headers?: Record<string, string>; timeoutMs?: number } = {},
): Promise<HttpReply> {
  const res = await fetch(base + path, {
    method,
    ...(options.body === undefined ? {} : { body: options.body }),
    headers: { "content-type": "application/json", ...options.headers },
    signal: AbortSignal.timeout(options.timeoutMs ?? HTTP_TIMEOUT_MS),
  });
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text, json };
}

/** POST /function/<name> with `input` as JSON. */
export function call(
  base: string,
  name: string,
  input: unknown,
  headers: Record<string, string> = {},
): Promise<HttpReply> {
  return http(base, "POST", `/function/${name}`, { body: JSON.stringify(input), headers });
}

/** The `{ error: { code } }` of a reply, or undefined. */
export function errorCode(r: HttpReply): string | undefined {
  return (r.json as { error?: { code?: string } } | undefined)?.error?.code;
}

/** Polls `GET /invocations/<id>` until its status is final or `timeoutMs` passes. */
export async function awaitInvocation(
  base: string,
  id: string,
  timeoutMs = 20_000,
): Promise<{ status: string; output?: unknown; error?: { code: string } }> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const r = await http(base, "GET", `/invocations/${id}`);
    const s = r.json as { status: string; output?: unknown; error?: { code: string } };
    if (r.status === 200 && (s.status === "succeeded" || s.status === "failed")) return s;
    if (Date.now() > until)
      throw new Error(`invocation ${id} not finished after ${timeoutMs} ms: ${r.text}`);
    await new Promise((res) => setTimeout(res, 50));
  }
}
