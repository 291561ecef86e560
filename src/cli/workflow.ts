/**
 * `boki workflow start|status|list|cancel`: workflows (boki-ts/flow) through a gateway,
 * with the gateway client. Output is JSON; a start whose workflow failed or was cancelled
 * exits with status 1.
 */
import { Command, InvalidArgumentError as CliArgumentError } from "commander";
import { BokiClient } from "../client/client.js";
import type { JsonValue } from "../runtime/json.js";
import { DEFAULT_URL } from "./invoke.js";

interface Common {
  url?: string;
  book?: number;
}

function clientOf(o: Common): BokiClient {
  return new BokiClient({ url: o.url ?? process.env["BOKI_URL"] ?? DEFAULT_URL });
}

function bookArg(value: string): number {
  const n = Number(value);
  if (!/^[0-9]+$/.test(value) || n > 0xffff_fffe) {
    throw new CliArgumentError("a book id is an integer in [0, 4294967294]");
  }
  return n;
}

function jsonArg(text: string | undefined): JsonValue {
  if (text === undefined) return null;
  try {
    return JSON.parse(text) as JsonValue;
  } catch (err) {
    throw new CliArgumentError(`the input is not JSON: ${(err as Error).message}`);
  }
}

function print(value: unknown): void {
  console.log(JSON.stringify(value, null, 2));
}

function withCommon(c: Command): Command {
  return c
    .option("--url <url>", `gateway URL (default: $BOKI_URL, else ${DEFAULT_URL})`)
    .option("--book <id>", "the book the instance lives in (X-Boki-Book)", bookArg);
}

export function workflowCommand(): Command {
  const wf = new Command("workflow").description(
    "start, inspect, list and cancel workflows (boki-ts/flow)",
  );
  withCommon(
    wf
      .command("start")
      .description("start a workflow and wait for its outcome (or --async: return once recorded)")
      .argument("<name>", "workflow name")
      .argument("[json]", "input as JSON text (default: null)")
      .option("--id <id>", "instance id (default: a new one); an existing instance's id joins it")
      .option("--async", "return as soon as the start is recorded", false),
  ).action(
    async (name: string, json: string | undefined, o: Common & { id?: string; async: boolean }) => {
      const out = await clientOf(o).startWorkflow(name, jsonArg(json), {
        wait: !o.async,
        ...(o.id === undefined ? {} : { id: o.id }),
        ...(o.book === undefined ? {} : { book: o.book }),
      });
      print(out);
      if (out.status === "failed" || out.status === "cancelled") process.exitCode = 1;
    },
  );
  withCommon(
    wf
      .command("status")
      .description("an instance's status, steps and outcome")
      .argument("<id>", "instance id"),
  ).action(async (id: string, o: Common) =>
    print(await clientOf(o).workflow(id, o.book === undefined ? {} : { book: o.book })),
  );
  withCommon(
    wf
      .command("list")
      .description("recent instances, newest first")
      .option("--status <status>", "running, sleeping, succeeded, failed or cancelled")
      .option("--workflow <name>", "only this workflow's")
      .option("--limit <n>", "at most this many (default 100)", (v) => {
        if (!/^[1-9][0-9]{0,3}$/.test(v))
          throw new CliArgumentError("must be an integer in [1, 1000]");
        return Number(v);
      }),
  ).action(async (o: Common & { status?: string; workflow?: string; limit?: number }) =>
    print(
      await clientOf(o).listWorkflows({
        ...(o.status === undefined ? {} : { status: o.status }),
        ...(o.workflow === undefined ? {} : { workflow: o.workflow }),
        ...(o.limit === undefined ? {} : { limit: o.limit }),
        ...(o.book === undefined ? {} : { book: o.book }),
      }),
    ),
  );
  withCommon(
    wf
      .command("cancel")
      .description("cancel an instance")
      .argument("<id>", "instance id")
      .option("--reason <text>", "why (kept in its log)"),
  ).action(async (id: string, o: Common & { reason?: string }) =>
    print(
      await clientOf(o).cancelWorkflow(id, {
        ...(o.reason === undefined ? {} : { reason: o.reason }),
        ...(o.book === undefined ? {} : { book: o.book }),
      }),
    ),
  );
  return wf;
}
