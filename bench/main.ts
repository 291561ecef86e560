/**
 * Benchmark dispatcher: `npm run bench -- <suite> [--quick] [--no-peers]`.
 * Runs one suite, prints its table on stdout (progress goes to stderr) and writes
 * bench/results/<suite>-latest.json plus a dated copy.
 */
import { Command } from "commander";
import { performance } from "node:perf_hooks";
import { relative } from "node:path";
import { SUITES } from "./suites/index.js";
import {
  isoSeconds,
  loadAverage1m,
  machineInfo,
  sourceFingerprint,
  writeResults,
} from "./lib/results.js";
import { formatTable } from "./lib/table.js";
import { progress } from "./lib/progress.js";

const suiteList = [...SUITES.values()]
  .map((s) => `  ${s.name.padEnd(10)} ${s.description}`)
  .join("\n");

const program: Command = new Command()
  .name("bench")
  .description("Run a Boki.ts benchmark suite.")
  .argument("<suite>", `suite to run: ${[...SUITES.keys()].join(", ")}`)
  .option("--quick", "short windows, one run each; the whole suite within 60 s", false)
  .option("--no-peers", "do not start peer systems for comparison")
  .option(
    "--cluster",
    "measure the local cluster (every node its own process) instead of the embedded system",
    false,
  )
  .addHelpText("after", `\nSuites:\n${suiteList}`)
  .showHelpAfterError()
  .action(async (name: string, opts: { quick: boolean; peers: boolean; cluster: boolean }) => {
    const suite = SUITES.get(name);
    if (suite === undefined) {
      program.error(
        `error: unknown suite '${name}'; available suites: ${[...SUITES.keys()].join(", ")}`,
      );
    }
    if (opts.cluster && suite.hasClusterMode !== true) {
      const with_ = [...SUITES.values()]
        .filter((s) => s.hasClusterMode === true)
        .map((s) => s.name);
      program.error(
        `error: suite '${name}' has no --cluster mode (suites with one: ${with_.join(", ") || "none"})`,
      );
    }
    const when = isoSeconds(new Date());
    const source = sourceFingerprint();
    const loadAtStart = loadAverage1m();
    const started = performance.now();
    const out = await suite.run({ quick: opts.quick, peers: opts.peers, cluster: opts.cluster });
    const { rows, skipped = [], extra = {}, notes = [] } = Array.isArray(out) ? { rows: out } : out;
    const wallSec = (performance.now() - started) / 1000;
    const base = {
      suite: suite.name,
      when,
      quick: opts.quick,
      machine: { ...machineInfo(), loadAvg1mAtStart: loadAtStart, loadAvg1mAtEnd: loadAverage1m() },
      source,
      rows,
      ...(skipped.length > 0 ? { skipped } : {}),
      ...(notes.length > 0 ? { notes } : {}),
      wallSec: Math.round(wallSec * 10) / 10,
    };
    // A suite's extra top-level fields come after the standard ones and cannot replace them.
    const paths = writeResults({
      ...base,
      ...Object.fromEntries(Object.entries(extra).filter(([k]) => !(k in base))),
    });
    process.stdout.write(formatTable(rows) + "\n");
    for (const s of skipped) {
      process.stdout.write(`skipped: ${s.system} ${s.mode}: ${s.reason}\n`);
    }
    for (const n of notes) process.stdout.write(`note: ${n}\n`);
    progress(
      `${suite.name}: done in ${wallSec.toFixed(1)} s; wrote ${relative(process.cwd(), paths.latest)} ` +
        `and ${relative(process.cwd(), paths.dated)}`,
    );
  });

try {
  await program.parseAsync(process.argv);
} catch (err) {
  process.stderr.write(
    `bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
  );
  process.exitCode = 1;
}
