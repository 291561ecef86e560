/**
 * Retwis on the store, for `npm run bench -- store`: the example application's safe variant
 * (examples/apps/retwis/functions/retwis.ts, a serializable transaction per post and
 * read-only transactions for login and timeline), served from this folder by the benchmark.
 */
export * from "../../../examples/apps/retwis/functions/retwis.js";
