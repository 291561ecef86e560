/**
 * `npm run sim`: runs the deterministic simulator.
 *
 *   npm run sim -- --seed 42          one seed, with its whole trace
 *   npm run sim -- --seeds 100        100 seeds (from a random first one, printed), a line each
 *   npm run sim -- --seeds 20 --from 1000 --fault-ms 60000
 *
 * Exits with 1 when a seed fails; the failing seeds are listed at the end, and each one
 * replays exactly with `--seed`.
 */
import { Command, InvalidArgumentError as CliArgumentError } from "commander";
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { randomInt } from "node:crypto";
import { flaws, type FlawName } from "../log/flaws.js";
import { checkSeed, SEED_MAX } from "./random.js";
import type { Durability } from "../storage/storage-node.js";
import { SIM_TOPOLOGY } from "./cluster.js";
import { ALL_FAULTS } from "./faults.js";
import { RUN_DEFAULTS, runSimulation, type RunResult } from "./run.js";

function count(value: string): number {
  if (!/^[1-9][0-9]{0,6}$/.test(value)) throw new CliArgumentError("must be a positive integer");
  return Number(value);
}

function seedArg(value: string): number {
  if (!/^[0-9]{1,10}$/.test(value))
    throw new CliArgumentError(`must be an integer in [0, ${SEED_MAX}]`);
  try {
    return checkSeed(Number(value));
  } catch (e) {
    throw new CliArgumentError((e as Error).message);
  }
}

function ms(value: string): number {
  if (!/^[0-9]{1,8}$/.test(value)) throw new CliArgumentError("must be a whole number of ms");
  return Number(value);
}

function durabilityArg(value: string): Durability {
  if (value !== "disk" && value !== "memory")
    throw new CliArgumentError('must be "disk" or "memory"');
  return value;
}

function flawArg(value: string): FlawName {
  if (!(value in flaws))
    throw new CliArgumentError(`known flaws: ${Object.keys(flaws).join(", ")}`);
  return value as FlawName;
}

function summary(r: RunResult, realMs: number): string {
  const s = r.stats;
  const f = s.faults;
  return [
    `seed ${String(r.seed).padStart(10)}`,
    r.ok ? "ok  " : "FAIL",
    `${(r.simMs / 1000).toFixed(1)} s simulated`,
    `${s.appendsAcked} appends acked (${s.appendsUnknown} unknown)`,
    `${s.terms} terms`,
    `faults ${f.crashes}c/${f.partitions}p/${f.network}n/${f.slowDisks}d/${f.storeCuts}s/${f.diskErrors}e`,
    `${(realMs / 1000).toFixed(1)} s`,
    `trace ${r.fingerprint}`,
  ].join("  ");
}

interface Options {
  seed?: number;
  seeds?: number;
  from?: number;
  faultMs: number;
  quietMs: number;
  sessions: number;
  flaw?: FlawName;
  durability?: Durability;
  maxDown?: number;
  faultGapMs?: number;
  traceTail?: number;
  json?: string;
}

async function main(o: Options): Promise<number> {
  const base = {
    faultMs: o.faultMs,
    quietMs: o.quietMs,
    sessions: o.sessions,
    ...(o.maxDown === undefined && o.faultGapMs === undefined
      ? {}
      : {
          faults: {
            ...ALL_FAULTS,
            ...(o.maxDown === undefined ? {} : { maxDownPerRole: o.maxDown }),
            ...(o.faultGapMs === undefined ? {} : { meanGapMs: o.faultGapMs }),
          },
        }),
    ...(o.durability === undefined
      ? {}
      : { topology: { ...SIM_TOPOLOGY, durability: o.durability } }),
    ...(o.flaw === undefined ? {} : { flaw: o.flaw }),
  };
  if (o.seed !== undefined) {
    const started = Date.now();
    const echo = o.traceTail === undefined ? (line: string) => console.log(line) : undefined;
    const r = await runSimulation({
      seed: o.seed,
      ...base,
      ...(echo === undefined ? {} : { echo }),
    });
    if (o.traceTail !== undefined)
      for (const line of r.trace.slice(-o.traceTail)) console.log(line);
    console.log(summary(r, Date.now() - started));
    for (const v of r.violations)
      console.log(`  violated: ${v.invariant} at ${(v.atMs / 1000).toFixed(4)} s: ${v.message}`);
    return r.ok ? 0 : 1;
  }
  const n = o.seeds ?? 1;
  const from = o.from ?? randomInt(0, SEED_MAX - n);
  console.log(
    `running ${n} seeds from ${from} (fault phase ${o.faultMs} ms, quiet phase ${o.quietMs} ms${o.flaw === undefined ? "" : `, flaw ${o.flaw}`})`,
  );
  const failed: RunResult[] = [];
  let simMs = 0;
  const started = Date.now();
  for (let seed = from; seed < from + n; seed++) {
    const t = Date.now();
    const r = await runSimulation({ seed, ...base });
    simMs += r.simMs;
    console.log(summary(r, Date.now() - t));
    if (!r.ok) {
      failed.push(r);
      for (const v of r.violations.slice(0, 3))
        console.log(`  violated: ${v.invariant}: ${v.message.split("\n")[0]}`);
    }
  }
  const realMs = Date.now() - started;
  console.log(
    `${n - failed.length}/${n} seeds passed; ${(simMs / 3_600_000).toFixed(3)} simulated hours in ${(realMs / 1000).toFixed(0)} s`,
  );
  if (failed.length > 0)
    console.log(`failing seeds: ${failed.map((r) => r.seed).join(" ")} (replay one with --seed)`);
  if (o.json !== undefined) {
    mkdirSync(dirname(o.json), { recursive: true });
    writeFileSync(
      o.json,
      `${JSON.stringify({ from, seeds: n, failed: failed.map((r) => ({ seed: r.seed, violations: r.violations })), simulatedMs: simMs, realMs, options: base }, null, 2)}\n`,
    );
  }
  return failed.length === 0 ? 0 : 1;
}

const program = new Command()
  .name("sim")
  .description(
    "Deterministic simulation of a whole Boki cluster: one seed decides every delay and fault.",
  )
  .option("--seed <n>", "run one seed and print its trace", seedArg)
  .option("--seeds <count>", "run this many seeds, one after another", count)
  .option("--from <n>", "first seed of --seeds (default: random, printed)", seedArg)
  .option("--fault-ms <ms>", "simulated length of the fault phase", ms, RUN_DEFAULTS.faultMs)
  .option(
    "--quiet-ms <ms>",
    "simulated length of the quiet phase after it",
    ms,
    RUN_DEFAULTS.quietMs,
  )
  .option("--sessions <n>", "client sessions", count, RUN_DEFAULTS.sessions)
  .option("--durability <mode>", "the storage's durability: disk or memory", durabilityArg)
  .option("--max-down <n>", "most nodes of one role down at once (default 1)", count)
  .option("--fault-gap-ms <ms>", "mean time between faults (default 1500)", ms)
  .option(
    "--flaw <name>",
    "switch a deliberate protocol flaw on (to see the checks catch it)",
    flawArg,
  )
  .option("--trace-tail <lines>", "with --seed: print only the trace's last lines", count)
  .option("--json <file>", "with --seeds: write the outcome as JSON")
  .action(async (o: Options) => {
    if (
      o.seed !== undefined &&
      (o.seeds !== undefined || o.from !== undefined || o.json !== undefined)
    )
      program.error("error: --seed runs one seed; --seeds, --from and --json go with --seeds");
    process.exitCode = await main(o);
  });

await program.parseAsync();
