/**
 * YCSB-T accounts (after "Distributed Transactions on Serverless Stateful Functions", DEBS
 * 2021) on `boki-ts/objects`, for `npm run bench -- txn`.
 *
 *   ycsbt-account           an object per account: { balance, fields: 10 strings }
 *     load      (exclusive) sets the whole state (the dataset's load)
 *     read      (shared)    the account as it is committed
 *     update    (exclusive) { field, value }: one field of one account
 *     withdraw  (exclusive) { amount }: fails INSUFFICIENT_FUNDS below zero
 *     deposit   (exclusive) { amount }
 *   ycsbt-transfer          { from, to, amount } as a transaction (2PC over 2PL, wait-die)
 *   ycsbt-transfer-saga     the same as a saga (withdraw, then deposit; compensations undo)
 */
import { defineObject, defineSaga, defineTransaction, HandlerError } from "boki-ts/objects";

export const ACCOUNT_OBJECT = "ycsbt-account";
export const TRANSFER_TRANSACTION = "ycsbt-transfer";
export const TRANSFER_SAGA = "ycsbt-transfer-saga";
/** Fields of an account, besides its balance. */
export const FIELDS = 10;
/** A coordinator's time limit, ms: above the 5 s prepare deadline plus its retries. */
const COORDINATOR_TIMEOUT_MS = 30_000;

export interface Account {
  balance: number;
  fields: string[];
}

export interface Transfer {
  readonly from: string;
  readonly to: string;
  readonly amount: number;
}

function amountOf(input: { amount?: unknown } | null): number {
  const a = input?.amount;
  if (typeof a !== "number" || !Number.isInteger(a) || a < 0)
    throw new HandlerError("BAD_AMOUNT", "amount must be an integer ≥ 0");
  return a;
}

function accountOf(s: Account | undefined, key: string): Account {
  if (s === undefined) throw new HandlerError("NO_ACCOUNT", `account ${key} was never loaded`);
  return s;
}

export const account = defineObject<Account>({
  name: ACCOUNT_OBJECT,
  handlers: {
    load: (ctx, input: Account) => {
      if (
        typeof input?.balance !== "number" ||
        !Array.isArray(input.fields) ||
        input.fields.length !== FIELDS
      ) {
        throw new HandlerError(
          "BAD_ACCOUNT",
          `an account is { balance, fields: ${FIELDS} strings }`,
        );
      }
      ctx.state.set({ balance: input.balance, fields: input.fields });
      return input.balance;
    },
    read: { shared: true, handler: (ctx) => accountOf(ctx.state.get(), ctx.key) },
    update: (ctx, input: { field: number; value: string }) => {
      const s = accountOf(ctx.state.get(), ctx.key);
      const f = input?.field;
      if (typeof f !== "number" || !Number.isInteger(f) || f < 0 || f >= FIELDS)
        throw new HandlerError("BAD_FIELD", `field must be an integer in [0, ${FIELDS})`);
      if (typeof input.value !== "string")
        throw new HandlerError("BAD_FIELD", "value must be a string");
      s.fields[f] = input.value;
      ctx.state.set(s);
      return null;
    },
    withdraw: (ctx, input: { amount: number }) => {
      const s = accountOf(ctx.state.get(), ctx.key);
      const amount = amountOf(input);
      if (s.balance < amount)
        throw new HandlerError("INSUFFICIENT_FUNDS", `${ctx.key} has ${s.balance}, not ${amount}`);
      s.balance -= amount;
      ctx.state.set(s);
      return s.balance;
    },
    deposit: (ctx, input: { amount: number }) => {
      const s = accountOf(ctx.state.get(), ctx.key);
      s.balance += amountOf(input);
      ctx.state.set(s);
      return s.balance;
    },
  },
});

const withdraw = (key: string, amount: number) => ({
  object: ACCOUNT_OBJECT,
  key,
  handler: "withdraw",
  input: { amount },
});
const deposit = (key: string, amount: number) => ({
  object: ACCOUNT_OBJECT,
  key,
  handler: "deposit",
  input: { amount },
});

export const transfer = defineTransaction({
  name: TRANSFER_TRANSACTION,
  timeoutMs: COORDINATOR_TIMEOUT_MS,
  plan: (t: Transfer) => ({ calls: [withdraw(t.from, t.amount), deposit(t.to, t.amount)] }),
});

export const transferSaga = defineSaga({
  name: TRANSFER_SAGA,
  timeoutMs: COORDINATOR_TIMEOUT_MS,
  steps: (t: Transfer) => [
    { call: withdraw(t.from, t.amount), compensate: deposit(t.from, t.amount) },
    { call: deposit(t.to, t.amount), compensate: withdraw(t.to, t.amount) },
  ],
});
