#!/usr/bin/env node
/**
 * The `boki` command line. For now: `boki demo`, which opens the embedded log on a data
 * directory, appends a few records to a book and reads them back.
 */
import { Command, InvalidArgumentError as CliArgumentError } from "commander";
import { resolve } from "node:path";
import { EmbeddedLog, tagOf, BokiError } from "../index.js";

function bookArg(value: string): number {
  const n = Number(value);
  if (!/^[0-9]+$/.test(value) || n > 0xffff_ffff)
    throw new CliArgumentError("a book id is an integer in [0, 4294967295]");
  return n;
}

async function demo(options: { data: string; book: number }): Promise<void> {
  const dir = resolve(options.data);
  const log = await EmbeddedLog.open({ dir });
  try {
    const book = log.book(options.book);
    console.log(`Embedded log open at ${dir} (term ${log.term}), book ${book.book}`);
    const greetings = tagOf("greetings");
    for (const text of ["hello", "shared", "log"]) {
      const seqnum = await book.append([greetings], `${text} @ ${new Date().toISOString()}`);
      console.log(`  appended seqnum ${seqnum}: ${text}`);
    }
    console.log(`Every record of book ${book.book} tagged "greetings", oldest first:`);
    let count = 0;
    for (
      let r = await book.readNext(greetings, 0);
      r !== null;
      r = await book.readNext(greetings, r.seqnum + 1)
    ) {
      count++;
      console.log(`  ${String(r.seqnum).padStart(6)}  ${Buffer.from(r.data).toString("utf8")}`);
    }
    console.log(`${count} records; run it again and the earlier ones are still there.`);
  } finally {
    await log.close();
  }
}

const program = new Command()
  .name("boki")
  .description("Boki.ts: stateful serverless functions on a durable shared log")
  .showHelpAfterError();

program
  .command("demo")
  .description("open the embedded log, append a few records and read them back")
  .option("--data <dir>", "data directory", "data")
  .option("--book <id>", "book to use", bookArg, 1)
  .action(demo);

program.parseAsync(process.argv).catch((err: unknown) => {
  if (err instanceof BokiError) console.error(`error ${err.code}: ${err.message}`);
  else console.error(err);
  process.exitCode = 1;
});
