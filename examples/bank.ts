/**
 * Bank accounts whose balances never go below zero, however many transfers run at once.
 *
 * Every deposit and transfer is a record tagged with the accounts it touches; a balance is
 * the replay of the account's records. A transfer is one record carrying both accounts'
 * tags, so the debit and the credit appear at one position in the log: no one ever sees
 * money half-moved.
 *
 * Concurrent transfers from one account are where it could go wrong: two of them could
 * both read a balance of 100 and both take 80. So a transfer is a conditional append: it
 * reads the source account's records (n of them, giving the balance) and appends only if
 * the source's sub-stream still has exactly n records, i.e. nothing touched the account
 * since it read. The log orders the racing appends, and exactly one of them lands at
 * position n; the others fail with COND_APPEND_FAILED, read the new balance and try again.
 *
 *   deposit   { "account": "alice", "amount": 100 }
 *   transfer  { "from": "alice", "to": "bob", "amount": 30 }
 *   balance   { "account": "alice" }
 */
import { defineFunction, tagOf, type FunctionContext } from "boki-ts";

type Entry =
  | { type: "deposit"; account: string; amount: number }
  | { type: "transfer"; from: string; to: string; amount: number };

/** How many times a transfer re-reads and retries after losing a race. */
const TRANSFER_ATTEMPTS_MAX = 50;

const accountTag = (account: string) => tagOf(`account:${account}`);

function checkAccount(value: unknown, what: string): string {
  if (typeof value !== "string" || value === "") throw new Error(`${what} must be an account name`);
  return value;
}

function checkAmount(value: unknown): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value <= 0) {
    throw new Error("amount must be a positive integer (e.g. cents)");
  }
  return value;
}

/** The account's balance and how many records its sub-stream holds. */
async function replay(
  ctx: FunctionContext,
  account: string,
): Promise<{ balance: number; records: number }> {
  const tag = accountTag(account);
  let balance = 0;
  let records = 0;
  for (
    let r = await ctx.log.readNext(tag, 0);
    r !== null;
    r = await ctx.log.readNext(tag, r.seqnum + 1)
  ) {
    records++;
    const e = JSON.parse(Buffer.from(r.data).toString("utf8")) as Entry;
    if (e.type === "deposit") balance += e.amount;
    else if (e.from === account) balance -= e.amount;
    else balance += e.amount;
  }
  return { balance, records };
}

export const deposit = defineFunction({
  name: "deposit",
  async handler(ctx, input: { account: string; amount: number }) {
    const account = checkAccount(input?.account, "account");
    const amount = checkAmount(input.amount);
    const entry: Entry = { type: "deposit", account, amount };
    // A deposit cannot overdraw anything, so it needs no condition.
    await ctx.log.append([accountTag(account)], JSON.stringify(entry));
    return { account, balance: (await replay(ctx, account)).balance };
  },
});

export const transfer = defineFunction({
  name: "transfer",
  async handler(ctx, input: { from: string; to: string; amount: number }) {
    const from = checkAccount(input?.from, "from");
    const to = checkAccount(input.to, "to");
    const amount = checkAmount(input.amount);
    if (from === to) throw new Error("from and to must be different accounts");
    const entry: Entry = { type: "transfer", from, to, amount };
    for (let attempt = 1; attempt <= TRANSFER_ATTEMPTS_MAX; attempt++) {
      const { balance, records } = await replay(ctx, from);
      if (balance < amount) return { ok: false, reason: "insufficient funds", balance };
      try {
        await ctx.log.condAppend(
          [accountTag(from), accountTag(to)],
          JSON.stringify(entry),
          accountTag(from),
          records,
        );
        return { ok: true, balance: balance - amount };
      } catch (err) {
        // Test the stable code rather than the class: it holds whichever copy of the
        // library threw the error.
        if ((err as { code?: unknown }).code !== "COND_APPEND_FAILED") throw err;
        // Someone else touched the account since we read it: read again and retry.
        await new Promise((r) => setTimeout(r, Math.random() * 2 * attempt));
      }
    }
    throw new Error(
      `transfer from ${from} lost ${TRANSFER_ATTEMPTS_MAX} races in a row; try again`,
    );
  },
});

export const balance = defineFunction({
  name: "balance",
  async handler(ctx, input: { account: string }) {
    const account = checkAccount(input?.account, "account");
    return { account, balance: (await replay(ctx, account)).balance };
  },
});
