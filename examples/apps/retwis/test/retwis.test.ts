import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { startDevServer, type TestServer } from "boki-ts/testing";
import {
  NOTIFIED_FOLLOWERS_MAX,
  POST_BODY_CHARS_MAX,
  type CheckReport,
  type RetwisUser,
} from "../lib/retwis.js";

const VARIANTS = {
  safe: fileURLToPath(new URL("../functions", import.meta.url)),
  unsafe: fileURLToPath(new URL("../unsafe", import.meta.url)),
};

// Six users: ada is followed by everyone else (more than a post notifies), bob by ada only,
// and fay by no one.
const NAMES = ["ada", "bob", "cy", "dee", "eve", "fay"];
const FOLLOWS: Record<string, string[]> = {
  ada: ["bob"],
  bob: ["ada"],
  cy: ["ada"],
  dee: ["ada"],
  eve: ["ada"],
  fay: ["ada"],
};
const users: RetwisUser[] = NAMES.map((n) => ({
  id: `id-${n}`,
  username: n,
  password: `pw-${n}`,
  auth: `auth-${n}`,
  followees: (FOLLOWS[n] ?? []).map((f) => `id-${f}`),
  followers: NAMES.filter((m) => FOLLOWS[m]?.includes(n)).map((m) => `id-${m}`),
  posts: [],
}));

describe.each(Object.entries(VARIANTS))("retwis (%s variant)", (_variant, functions) => {
  let dev: TestServer;
  beforeAll(async () => {
    dev = await startDevServer({ functions });
    await dev.client.invoke("retwis-load", { users, timeline: [] } as never);
  });
  afterAll(async () => {
    await dev?.close();
  });
  const call = <T>(fn: string, input: unknown): Promise<T> =>
    dev.client.invoke(fn, input as never) as Promise<T>;

  test("login answers the user's id and token for the right password only", async () => {
    expect(await call("retwis-login", { username: "ada", password: "pw-ada" })).toEqual({
      ok: true,
      userId: "id-ada",
      auth: "auth-ada",
    });
    expect(await call("retwis-login", { username: "ada", password: "nope" })).toEqual({
      ok: false,
      message: "wrong password",
    });
    expect(await call("retwis-login", { username: "zed", password: "x" })).toEqual({
      ok: false,
      message: "no such user",
    });
  });

  test("profile counts followers and followees", async () => {
    expect(await call("retwis-profile", { userId: "id-ada" })).toMatchObject({
      ok: true,
      username: "ada",
      numFollowers: 5,
      numFollowees: 1,
    });
    expect(await call("retwis-profile", { userId: "id-zed" })).toEqual({
      ok: false,
      message: "no user id-zed",
    });
  });

  test("a post reaches the global timeline and a few of its author's followers, no one else", async () => {
    const r = await call<{ ok: boolean; postId: string }>("retwis-post", {
      userId: "id-ada",
      body: "hello from ada",
    });
    expect(r.ok).toBe(true);
    const global = await call<{ posts: unknown[] }>("retwis-timeline", {});
    expect(global.posts[0]).toEqual({ body: "hello from ada", user: "ada" });
    let reached = 0;
    for (const n of NAMES) {
      const t = await call<{ posts: Array<{ body: string }> }>("retwis-timeline", {
        userId: `id-${n}`,
      });
      const has = t.posts.some((p) => p.body === "hello from ada");
      if (has) reached++;
      if (n === "ada") expect(has).toBe(false); // ada does not follow herself
    }
    expect(reached).toBe(NOTIFIED_FOLLOWERS_MAX);
    const report = await call<CheckReport>("retwis-check", {
      postIds: [r.postId],
      userIds: users.map((u) => u.id),
    });
    expect(report).toMatchObject({ made: 1, lost: 0, halfMade: 0, duplicated: 0 });
  });

  test("concurrent posts are each made whole", async () => {
    const before = await call<CheckReport>("retwis-check", { userIds: users.map((u) => u.id) });
    const posts = await Promise.all(
      Array.from({ length: 16 }, (_, i) =>
        call<{ ok: boolean; postId: string }>("retwis-post", {
          userId: users[i % users.length]!.id,
          body: `post ${i}`,
        }),
      ),
    );
    expect(posts.every((p) => p.ok)).toBe(true);
    const report = await call<CheckReport>("retwis-check", {
      postIds: posts.map((p) => p.postId),
      userIds: users.map((u) => u.id),
    });
    expect(report).toMatchObject({
      made: before.made + 16,
      lost: 0,
      halfMade: 0,
      overNotified: 0,
      duplicated: 0,
      agedOut: 0,
    });
  });

  test("bad input is refused with a 400 naming what is wrong", async () => {
    const cases: Array<[string, unknown, RegExp]> = [
      ["retwis-post", { userId: "id-ada", body: 7 }, /body must be a string/],
      [
        "retwis-post",
        { userId: "id-ada", body: "x".repeat(POST_BODY_CHARS_MAX + 1) },
        /at most 1024 characters/,
      ],
      ["retwis-profile", {}, /userId must be a string/],
      ["retwis-login", ["ada"], /retwis-login takes a JSON object/],
      ["retwis-load", { users: [{ id: "x" }] }, /users\[0\]\.username must be a string/],
    ];
    for (const [fn, input, why] of cases) {
      const err = await call(fn, input).then(
        () => undefined,
        (e: unknown) => e as { code?: string; message?: string },
      );
      expect(err?.code, `${fn} ${JSON.stringify(input)}`).toBe("INVALID_ARGUMENT");
      expect(err?.message).toMatch(new RegExp(`^function ${fn} refused its input: `));
      expect(err?.message).toMatch(why);
    }
  });

  test("the check finds a post half made and a list entry without its post", async () => {
    // Loaded by hand: a post by ada that none of her followers got, and a user whose list
    // names a post that does not exist.
    await call("retwis-load", {
      posts: [{ id: "lonely", userId: "id-ada", userName: "ada", body: "unseen" }],
      users: [
        {
          ...users[5]!,
          id: "id-gil",
          username: "gil",
          followers: [],
          followees: [],
          posts: ["ghost"],
        },
      ],
    });
    const report = await call<CheckReport>("retwis-check", {
      postIds: ["lonely"],
      userIds: ["id-gil"],
    });
    expect(report.halfMade).toBe(2);
    expect(report.bad).toEqual(
      expect.arrayContaining([
        "lonely: in 0 of the 4 followers' lists it notifies",
        "ghost: in a follower's list without its post",
      ]) as unknown,
    );
  });
});
