/**
 * Retwis (examples/apps/retwis/) for `npm run bench -- apps`: the Twitter clone of Boki's
 * store evaluation, the store benchmark's dataset and mix.
 *
 * Dataset: the store benchmark's (bench/suites/store.ts: 10,000 users each following 8
 * others, 5,000 posts spread over followers' lists and the global timeline), loaded through
 * `retwis-load` in batches; the same size in quick runs (it loads in a few seconds). The
 * mix: login 15 %, profile 30 %, timeline 50 % (a quarter of them the global one), post 5 %,
 * 64-byte bodies.
 *
 * The safe variant (functions/) runs login and timeline as read-only transactions and a post
 * as a serializable transaction; the unsafe one (unsafe/) the same with plain reads and
 * writes. check() asks `retwis-check` about the posts on the global timeline (in full: the
 * post, its followers' entries, the global entry) and the lists of a sample of users (every
 * entry names an existing post): none lost, none half made, none twice in a list.
 */
import { fileURLToPath } from "node:url";
import { postFunction } from "./app.js";
import type { AppRequest, AppTarget, BenchApp, InvariantReport, Variant } from "./app.js";
import { makeDataset } from "../suites/store.js";
import {
  CHECK_USERS_MAX,
  LOAD_POSTS_MAX,
  LOAD_USERS_MAX,
  type CheckReport,
} from "../../examples/apps/retwis/lib/retwis.js";

const APP = fileURLToPath(new URL("../../examples/apps/retwis/", import.meta.url));
/** Users of the store benchmark's dataset (makeDataset). */
const USERS = 10_000;
const BODY_BYTES = 64;
const MIX = { login: 15, profile: 30, timeline: 50, post: 5 } as const;
type Kind = keyof typeof MIX;
const KINDS = Object.keys(MIX) as Kind[];
/** Users per load request, and load requests in flight. */
const LOAD_BATCH_USERS = 250;
const LOAD_IN_FLIGHT = 4;
/** Every how many users one's list is examined by the check. */
const CHECK_SAMPLE_EVERY = 10;
/** Longest wait for one gateway request of the load or the check, ms. */
const ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/** The store benchmark's ids: the user's index in hex, 8 digits. */
const userId = (i: number): string => i.toString(16).padStart(8, "0");

async function seed(target: AppTarget): Promise<void> {
  const d = makeDataset();
  if (d.users.length !== USERS) throw new Error(`the dataset has ${d.users.length} users`);
  const batches = Math.ceil(d.users.length / LOAD_BATCH_USERS);
  const postsPer = Math.ceil(d.posts.length / batches);
  if (LOAD_BATCH_USERS > LOAD_USERS_MAX || postsPer > LOAD_POSTS_MAX) {
    throw new Error("a load batch exceeds retwis-load's limits");
  }
  const jobs: Array<() => Promise<unknown>> = [];
  for (let k = 0; k < batches; k++) {
    const users = d.users.slice(k * LOAD_BATCH_USERS, (k + 1) * LOAD_BATCH_USERS);
    const posts = d.posts.slice(k * postsPer, (k + 1) * postsPer);
    jobs.push(() => postFunction(target, "retwis-load", { users, posts }));
  }
  jobs.push(() => postFunction(target, "retwis-load", { timeline: d.timeline }));
  let next = 0;
  await Promise.all(
    Array.from({ length: LOAD_IN_FLIGHT }, async () => {
      while (next < jobs.length) await jobs[next++]!();
    }),
  );
}

function nextRequest(random: () => number): AppRequest {
  let x = random() * 100;
  let kind: Kind = "timeline";
  for (const k of KINDS) {
    x -= MIX[k];
    if (x < 0) {
      kind = k;
      break;
    }
  }
  const i = Math.floor(random() * USERS);
  let body: unknown;
  switch (kind) {
    case "login":
      body = { username: `testuser_${i}`, password: `password_${i}` };
      break;
    case "profile":
      body = { userId: userId(i) };
      break;
    case "timeline":
      body = random() < 0.25 ? {} : { userId: userId(i) };
      break;
    case "post": {
      let text = "";
      for (let k = 0; k < BODY_BYTES; k++) text += ALPHABET[Math.floor(random() * ALPHABET.length)];
      body = { userId: userId(i), body: text };
      break;
    }
  }
  return { kind, method: "POST", path: `/function/retwis-${kind}`, body };
}

async function check(target: AppTarget, _variant: Variant): Promise<InvariantReport> {
  const sample: string[] = [];
  for (let i = 0; i < USERS; i += CHECK_SAMPLE_EVERY) sample.push(userId(i));
  const reports: CheckReport[] = [];
  for (let k = 0; k < sample.length; k += CHECK_USERS_MAX) {
    reports.push(
      (await postFunction(target, "retwis-check", {
        userIds: sample.slice(k, k + CHECK_USERS_MAX),
      })) as CheckReport,
    );
  }
  const sum: Record<string, number> = {};
  const bad: string[] = [];
  for (const r of reports) {
    for (const [key, v] of Object.entries(r))
      if (typeof v === "number") sum[key] = (sum[key] ?? 0) + v;
    bad.push(...r.bad);
  }
  const broken =
    (sum["lost"] ?? 0) +
    (sum["halfMade"] ?? 0) +
    (sum["overNotified"] ?? 0) +
    (sum["duplicated"] ?? 0);
  return {
    ok: broken === 0,
    details: {
      ...sum,
      usersExamined: sample.length,
      ...(bad.length > 0 ? { bad: bad.slice(0, 20) } : {}),
    },
  };
}

export const retwisApp: BenchApp = {
  name: "retwis",
  description:
    "Retwis on boki-ts/store: login, profile, timeline and post over 10,000 users following 8 each",
  functions: { safe: `${APP}functions`, unsafe: `${APP}unsafe` },
  seed,
  nextRequest,
  check,
};
