/** A plain-text table of result rows for the terminal. */
import type { ResultRow } from "./results.js";

function fmtOps(n: number): string {
  return n >= 100 ? Math.round(n).toLocaleString("en-US") : n.toFixed(1);
}

/** Milliseconds with enough digits to see microseconds. */
export function fmtMs(n: unknown): string {
  if (typeof n !== "number" || !Number.isFinite(n)) return "-";
  if (n >= 100) return n.toFixed(0);
  if (n >= 10) return n.toFixed(1);
  if (n >= 1) return n.toFixed(2);
  return n.toFixed(3);
}

export function formatTable(rows: readonly ResultRow[]): string {
  const header = [
    "system",
    "mode",
    "workload",
    "conc",
    "bytes",
    "ops/s",
    "p50 ms",
    "p99 ms",
    "p99.9 ms",
    "max ms",
  ];
  const body = rows.map((r) => [
    r.system,
    r.mode,
    r.workload,
    String(r.concurrency),
    String(r.payloadBytes),
    fmtOps(r.opsPerSec),
    fmtMs(r.p50Ms),
    fmtMs(r.p99Ms),
    fmtMs(r["p999Ms"]),
    fmtMs(r["maxMs"]),
  ]);
  // Rows compared with a peer (extras `peer`, `opsRatioToPeer`, `p99RatioToPeer`) get
  // "ratio to peer" columns: this row's ops/s and p99 divided by the peer's.
  if (rows.some((r) => typeof r["peer"] === "string")) {
    header.push("vs peer", "ops/s ratio", "p99 ratio");
    const ratio = (x: unknown): string => (typeof x === "number" ? `${x.toFixed(2)}x` : "-");
    rows.forEach((r, i) => {
      const peer = r["peer"];
      if (typeof peer !== "string") body[i]!.push("-", "-", "-");
      else {
        const mode = peer
          .split(" ")
          .pop()!
          .replace(/^replicated-3-/, "");
        if (typeof r["opsRatioToPeer"] !== "number") body[i]!.push(mode, "no peer", "no peer");
        else body[i]!.push(mode, ratio(r["opsRatioToPeer"]), ratio(r["p99RatioToPeer"]));
      }
    });
  }
  const numeric = header.map((h, i) => i >= 3 && h !== "vs peer");
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((row) => row[i]!.length)));
  const line = (cells: readonly string[]): string =>
    cells
      .map((c, i) => (numeric[i] === true ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join("  ")
      .trimEnd();
  return [line(header), line(widths.map((w) => "-".repeat(w))), ...body.map(line)].join("\n");
}
