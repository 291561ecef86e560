/**
 * Sealing a term through the coordination store (the node side is in
 * `cluster/view-follower.ts`):
 *
 * 1. The controller puts `/boki/seal/request` = `{ "term": N }`.
 * 2. Every sequencer of term N seals its logs (the primary cuts no more; backups accept no
 *    more entries of term N) and answers with how many entries it holds durably.
 * 3. Once a majority of each log's sequencers has answered, the log's final metalog of term N
 *    ends at the longest answer: every committed entry is on a majority, and any two
 *    majorities meet, so no committed entry is left out; entries past it were never
 *    committed, and nodes holding them drop them. The next term begins there (`starts`).
 *    It never begins before term N did: entries earlier terms committed may be missing from
 *    term N's sequencers (a new primary had not yet copied them when it died), but they
 *    are on a majority of an earlier term's sequencers, and the next primary fetches them.
 *
 * Waits are bounded (`SEAL_TIMEOUT_MS`); a seal that cannot gather a majority fails, and the
 * controller tries again later.
 */
import { systemClock, type Clock } from "../clock/clock.js";
import { valueText, type CoordStore } from "../coord/store.js";
import { BokiError } from "../log/errors.js";
import type { ViewConfig } from "../log/view.js";
import type { Logger } from "../util/logger.js";
import { silentLogger } from "../util/logger.js";
import { SEAL_REPLIES_PREFIX, SEAL_REQUEST_KEY } from "../cluster/view-follower.js";
import type { Sealer } from "./controller.js";

/** Longest a seal waits for a majority of each log's sequencers to answer. */
export const SEAL_TIMEOUT_MS = 5_000;
/** How often the controller looks for answers while sealing. */
export const SEAL_POLL_MS = 20;

export interface StoreSealerOptions {
  readonly clock?: Clock;
  readonly logger?: Logger;
  readonly timeoutMs?: number;
}

export function storeSealer(store: CoordStore, o: StoreSealerOptions = {}): Sealer {
  const clock = o.clock ?? systemClock;
  const logger = o.logger ?? silentLogger;
  const timeoutMs = o.timeoutMs ?? SEAL_TIMEOUT_MS;
  return async (old: ViewConfig) => {
    const term = old.term;
    await store.put(SEAL_REQUEST_KEY, JSON.stringify({ term, requestedAtMs: Date.now() }));
    const deadline = clock.now() + timeoutMs;
    for (;;) {
      const answers = await store.list(`${SEAL_REPLIES_PREFIX}${term}/`);
      const lengths = new Map<number, Map<string, number>>();
      for (const kv of answers.entries) {
        const [, logText, node] = kv.key.slice(SEAL_REPLIES_PREFIX.length).split("/");
        const log = Number(logText);
        let length: unknown;
        try {
          length = (JSON.parse(valueText(kv)) as { length?: unknown }).length;
        } catch {
          continue;
        }
        if (!Number.isSafeInteger(log) || node === undefined || typeof length !== "number")
          continue;
        if (!old.sequencers[log]?.includes(node)) continue;
        let m = lengths.get(log);
        if (m === undefined) lengths.set(log, (m = new Map<string, number>()));
        m.set(node, length);
      }
      const starts: number[] = [];
      let missing: number | null = null;
      for (let log = 0; log < old.physicalLogs; log++) {
        const group = old.sequencers[log]!;
        const majority = Math.floor(group.length / 2) + 1;
        const got = lengths.get(log) ?? new Map<string, number>();
        if (got.size < majority) {
          missing = log;
          break;
        }
        // Never before the sealed term's own start: what earlier terms committed stays, even
        // when the term's sequencers had not yet copied it (the next primary fetches it from
        // the earlier terms' sequencers).
        starts.push(Math.max(old.starts?.[log] ?? 0, ...got.values()));
      }
      if (missing === null) {
        logger.info({ term, starts }, "sealed the term");
        return { starts };
      }
      if (clock.now() >= deadline) {
        throw new BokiError(
          "UNAVAILABLE",
          `sealing term ${term}: a majority of log ${missing}'s sequencers did not answer within ${timeoutMs} ms`,
          { retryable: true },
        );
      }
      await new Promise<void>((r) => clock.setTimer(SEAL_POLL_MS, r));
    }
  };
}
