/**
 * The controller: one active instance, elected through the coordination store, keeps the
 * published view (`/boki/view`), watches membership, and on a node failure or an operator
 * request plans the next view. It publishes that view only after the `sealer` hook has
 * sealed the current term; until sealing exists the default sealer refuses, so failures are
 * detected, logged and exposed, and the view stays as it is.
 *
 * The decisions are a pure function of state (`decide`), so they can run under a simulator;
 * this class only does the I/O around them. Every wait and every retry is bounded.
 */
import { systemClock, type Clock } from "../clock/clock.js";
import { viewOf, type ClusterConfig } from "../cluster/config.js";
import { BokiError } from "../log/errors.js";
import { placementOf, type TermPlacement, type ViewConfig } from "../log/view.js";
import type { NodeId } from "../transport/transport.js";
import { silentLogger, type Logger } from "../util/logger.js";
import {
  valueText,
  type CoordStore,
  type Leadership,
  type Revision,
  type Watch,
} from "../coord/store.js";
import { MembershipWatcher, type MemberRecord } from "./membership.js";
import { nodesOfView, planNextView, PlanRefusedError, type Plan } from "./planner.js";
import { decodeViewRecord, encodeViewRecord, VIEW_KEY } from "./view-record.js";
import { SEAL_REQUEST_KEY } from "../cluster/view-follower.js";

/**
 * Operators' requests (`boki reconfigure`, `boki drain`): one key each under this prefix,
 * `{ "kind": "reconfigure" }` or `{ "kind": "drain", "node": "<id>" }`. The leading
 * controller acts on each and deletes it.
 */
export const REQUESTS_PREFIX = "/boki/requests/";

/** The election controllers campaign in. */
export const CONTROLLER_ELECTION = "/boki/controller";
/** TTL of the controller's leadership lease: a dead leader is replaced within about this. */
export const CONTROLLER_LEASE_TTL_MS = 3_000;
/** Longest one campaign waits; a standby then campaigns again. */
export const CONTROLLER_CAMPAIGN_MS = 30_000;
/** Attempts to seal and publish one planned view before waiting for the next trigger. */
export const SEAL_ATTEMPTS_MAX = 3;
/** Pause between sealing attempts; it doubles with each further attempt. */
export const SEAL_RETRY_MS = 500;
/** Pause after a failed store operation of the controller loop before it tries again. */
export const CONTROLLER_RETRY_MS = 1_000;

/**
 * Seals term `oldView.term` so that `newView` can be published. Resolves with where the
 * sealed term ended in each physical log's metalog (the next term's `starts`); rejects when
 * it cannot seal.
 */
export type Sealer = (
  oldView: ViewConfig,
  newView: ViewConfig,
) => Promise<{ readonly starts: readonly number[] } | void>;

/** The sealer used until sealing exists: it refuses, and the view stays. */
export class SealingNotImplementedError extends BokiError {
  constructor() {
    super("INTERNAL", "sealing is not implemented yet; the view stays as it is");
  }
}

export const refuseSealing: Sealer = () => Promise.reject(new SealingNotImplementedError());

// ---------------------------------------------------------------------------------------
// The decisions, I/O-free
// ---------------------------------------------------------------------------------------

export interface ControllerState {
  readonly view: ViewConfig | null;
  /** Live members. */
  readonly live: ReadonlyMap<NodeId, MemberRecord>;
  /** Nodes of the view that were seen alive and then lost their lease. */
  readonly failed: ReadonlySet<NodeId>;
  /** Nodes an operator asked to take out. */
  readonly drain: ReadonlySet<NodeId>;
  /** Nodes taken out by a drain that still run: no plan places them until they register anew. */
  readonly drained?: ReadonlySet<NodeId>;
  /** An operator asked for a new term even without a failure. */
  readonly forced: boolean;
  /** Targets from the cluster configuration, when it is known. */
  readonly sequencersPerLog?: number;
  readonly indexReplicas?: number;
}

export type Decision =
  | { readonly kind: "none" }
  | { readonly kind: "reconfigure"; readonly plan: Plan; readonly cause: string }
  | { readonly kind: "refused"; readonly error: PlanRefusedError; readonly cause: string };

/** What the controller should do in `state`. Pure. */
export function decide(state: ControllerState): Decision {
  if (state.view === null) return { kind: "none" };
  const inView = nodesOfView(state.view);
  const failed = [...state.failed].filter((id) => inView.has(id)).sort();
  const drain = [...state.drain].filter((id) => inView.has(id)).sort();
  // Live log nodes the view does not include (a failed node back, or a new one).
  const live = [...state.live.values()].filter((m) => state.drained?.has(m.id) !== true);
  const joined = live
    .filter((m) => m.role !== "gateway" && !inView.has(m.id) && !state.failed.has(m.id))
    .map((m) => m.id)
    .sort();
  if (failed.length === 0 && drain.length === 0 && !state.forced && joined.length === 0)
    return { kind: "none" };
  const cause = [
    ...(failed.length > 0 ? [`failed: ${failed.join(", ")}`] : []),
    ...(drain.length > 0 ? [`drained: ${drain.join(", ")}`] : []),
    ...(failed.length === 0 && drain.length === 0 ? ["operator request"] : []),
  ].join("; ");
  try {
    const planned = planNextView({
      current: state.view,
      live: live.filter((m) => !state.failed.has(m.id)).map((m) => ({ id: m.id, role: m.role })),
      drain,
      ...(state.sequencersPerLog === undefined ? {} : { sequencersPerLog: state.sequencersPerLog }),
      ...(state.indexReplicas === undefined ? {} : { indexReplicas: state.indexReplicas }),
    });
    const onlyJoins = failed.length === 0 && drain.length === 0 && !state.forced;
    // Joins alone reconfigure only when the plan gives a joining node a place.
    if (onlyJoins && !planned.added.some((id) => joined.includes(id))) return { kind: "none" };
    return {
      kind: "reconfigure",
      plan: planned,
      cause: onlyJoins ? `joined: ${joined.join(", ")}` : cause,
    };
  } catch (e) {
    if (e instanceof PlanRefusedError) return { kind: "refused", error: e, cause };
    throw e;
  }
}

// ---------------------------------------------------------------------------------------
// The process around them
// ---------------------------------------------------------------------------------------

export type ControllerEvent =
  | { readonly type: "leading"; readonly term: number }
  | { readonly type: "standby" }
  | { readonly type: "leadership-lost" }
  | { readonly type: "view-published"; readonly view: ViewConfig; readonly cause: string }
  | { readonly type: "node-failed"; readonly id: NodeId }
  | { readonly type: "plan-refused"; readonly error: PlanRefusedError }
  | { readonly type: "sealing-failed"; readonly plan: Plan; readonly error: unknown }
  | { readonly type: "publish-conflict"; readonly term: number };

export interface ControllerOptions {
  readonly store: CoordStore;
  /** Candidate id in the election, e.g. `controller@host:pid`. */
  readonly id: string;
  /** The static configuration: term 1 comes from it when no view is published yet. */
  readonly config?: ClusterConfig;
  readonly sealer?: Sealer;
  readonly clock?: Clock;
  readonly logger?: Logger;
  readonly leaseTtlMs?: number;
  readonly onEvent?: (e: ControllerEvent) => void;
}

export interface ControllerStatus {
  readonly id: string;
  readonly leading: boolean;
  readonly term: number | null;
  readonly live: readonly NodeId[];
  readonly failed: readonly NodeId[];
  /** The view planned but not published (sealing failed or is not built). */
  readonly pendingPlan: ViewConfig | null;
  readonly lastError: string | null;
}

export class Controller {
  private readonly store: CoordStore;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly sealer: Sealer;
  private watcher: MembershipWatcher | null = null;
  private leadership: Leadership | null = null;
  private view: ViewConfig | null = null;
  private history: readonly TermPlacement[] = [];
  private viewRevision: Revision | null = null;
  private readonly failed = new Set<NodeId>();
  private readonly drain = new Set<NodeId>();
  private readonly drained = new Set<NodeId>();
  private forced = false;
  private pendingPlan: ViewConfig | null = null;
  private lastError: string | null = null;
  private closed = false;
  private abort = new AbortController();
  /** Reconfigurations run one at a time, in this chain. */
  private chain: Promise<void> = Promise.resolve();
  private running: Promise<void> | null = null;
  private resolveStopped!: () => void;
  /** Resolves on `close` or `abandon`: a leader stops waiting for the loss of leadership. */
  private readonly stopped = new Promise<void>((resolve) => (this.resolveStopped = resolve));

  constructor(private readonly options: ControllerOptions) {
    this.store = options.store;
    this.clock = options.clock ?? systemClock;
    this.logger = (options.logger ?? silentLogger).child({ controller: options.id });
    this.sealer = options.sealer ?? refuseSealing;
  }

  /** Starts watching membership and campaigning; resolves once the watch is in place. */
  async start(): Promise<void> {
    this.watcher = await MembershipWatcher.start(this.store, {
      clock: this.clock,
      logger: this.logger,
      onFailure: (m) => this.memberLost(m),
      onEvent: (e) => {
        if (e.type === "joined") {
          this.failed.delete(e.member.id);
          this.drained.delete(e.member.id);
          void this.evaluate();
        }
      },
    });
    this.requestWatch = await this.store.watch(REQUESTS_PREFIX, (ev) => {
      if (ev.type === "put" && this.isLeading()) void this.takeRequests();
    });
    this.running = this.campaignLoop();
  }

  private requestWatch: Watch | null = null;

  /** Acts on the operators' pending requests (leader only) and deletes them. */
  private async takeRequests(): Promise<void> {
    const list = await this.store.list(REQUESTS_PREFIX);
    for (const kv of list.entries) {
      if (!this.isLeading()) return;
      let req: { kind?: unknown; node?: unknown };
      try {
        req = JSON.parse(valueText(kv)) as { kind?: unknown; node?: unknown };
      } catch {
        req = {};
      }
      await this.store.delete(kv.key);
      if (req.kind === "reconfigure") {
        this.logger.warn({}, "an operator asked for a new term");
        void this.reconfigure();
      } else if (req.kind === "drain" && typeof req.node === "string") {
        this.logger.warn({ node: req.node }, "an operator asked to drain a node");
        void this.reconfigure([req.node]);
      } else {
        this.logger.error({ key: kv.key }, "ignored a malformed operator request");
      }
    }
  }

  status(): ControllerStatus {
    return {
      id: this.options.id,
      leading: this.isLeading(),
      term: this.view?.term ?? null,
      live: [...(this.watcher?.members().keys() ?? [])].sort(),
      failed: [...this.failed].sort(),
      pendingPlan: this.pendingPlan,
      lastError: this.lastError,
    };
  }

  get currentView(): ViewConfig | null {
    return this.view;
  }

  isLeading(): boolean {
    return this.leadership?.isLeader() === true && !this.closed;
  }

  /**
   * An operator's request: a new term without `drain` (or, with none, the same nodes). Runs
   * only on the leader; resolves when the attempt ended (see `status` for the outcome).
   */
  reconfigure(drain: readonly NodeId[] = []): Promise<void> {
    for (const id of drain) this.drain.add(id);
    if (drain.length === 0) this.forced = true;
    return this.evaluate();
  }

  private memberLost(m: MemberRecord): void {
    this.failed.add(m.id);
    this.logger.warn({ node: m.id, role: m.role }, "node failed: its membership lease ended");
    this.emit({ type: "node-failed", id: m.id });
    void this.evaluate();
  }

  private emit(e: ControllerEvent): void {
    this.options.onEvent?.(e);
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.clock.setTimer(ms, resolve));
  }

  private async campaignLoop(): Promise<void> {
    while (!this.closed) {
      let leadership: Leadership;
      try {
        this.emit({ type: "standby" });
        leadership = await this.store.campaign(CONTROLLER_ELECTION, this.options.id, {
          ttlMs: this.options.leaseTtlMs ?? CONTROLLER_LEASE_TTL_MS,
          timeoutMs: CONTROLLER_CAMPAIGN_MS,
          signal: this.abort.signal,
        });
      } catch (e) {
        if (this.closed) return;
        if (!(e instanceof BokiError && e.code === "TIMEOUT")) {
          this.logger.warn({ err: (e as Error).message }, "campaign failed");
          await this.sleep(CONTROLLER_RETRY_MS);
        }
        continue;
      }
      if (this.closed) {
        await leadership.resign();
        return;
      }
      this.leadership = leadership;
      try {
        await this.loadView();
        await this.takeOverSealedTerm();
        this.logger.info({ term: this.view?.term }, "leading");
        this.emit({ type: "leading", term: this.view?.term ?? 0 });
        void this.evaluate();
        void this.takeRequests().catch((err: unknown) =>
          this.logger.warn({ err }, "could not read the operators' requests"),
        );
        await Promise.race([leadership.lost, this.stopped]);
      } catch (e) {
        this.logger.warn({ err: (e as Error).message }, "could not take up leadership");
        await leadership.resign().catch(() => {});
        await this.sleep(CONTROLLER_RETRY_MS);
      }
      if (this.leadership === leadership) this.leadership = null;
      if (!this.closed) {
        this.logger.warn({}, "leadership lost; standing by");
        this.emit({ type: "leadership-lost" });
      }
    }
  }

  /**
   * A leader that died between sealing a term and publishing the next view left the term's
   * sequencers sealed: they order nothing until a later view comes. The new leader publishes
   * one even when nothing else calls for it.
   */
  private async takeOverSealedTerm(): Promise<void> {
    const kv = await this.store.get(SEAL_REQUEST_KEY);
    if (kv === null || this.view === null) return;
    let term: unknown;
    try {
      term = (JSON.parse(valueText(kv)) as { term?: unknown }).term;
    } catch {
      return;
    }
    if (term !== this.view.term) return;
    this.logger.warn(
      { term },
      "the term in force was sealed and no later view published; publishing the next",
    );
    this.forced = true;
  }

  /** Reads the published view, publishing term 1 from the configuration when there is none. */
  private async loadView(): Promise<void> {
    const kv = await this.store.get(VIEW_KEY);
    if (kv !== null) {
      const record = decodeViewRecord(valueText(kv));
      this.view = record.view;
      this.history = record.history;
      this.viewRevision = kv.revision;
      return;
    }
    if (this.options.config === undefined) {
      this.view = null;
      this.viewRevision = null;
      this.logger.warn({}, "no view is published and no cluster config was given");
      return;
    }
    const view = viewOf(this.options.config, 1).config;
    const text = encodeViewRecord({
      view,
      history: [],
      cause: "initial view from the cluster config",
      publishedAtMs: Date.now(),
    });
    if (!this.isLeading()) return;
    const rev = await this.store.putIf(VIEW_KEY, text, "absent");
    if (rev === null) {
      // Another controller published first: take its view.
      await this.loadView();
      return;
    }
    this.view = view;
    this.history = [];
    this.viewRevision = rev;
    this.logger.info({ term: 1 }, "published the initial view");
    this.emit({ type: "view-published", view, cause: "initial view" });
  }

  private evaluate(): Promise<void> {
    const next = this.chain.then(() => this.reconfigureOnce());
    this.chain = next.catch((e: unknown) => {
      this.lastError = e instanceof Error ? e.message : String(e);
      this.logger.error({ err: this.lastError }, "reconfiguration failed");
    });
    return this.chain;
  }

  private async reconfigureOnce(): Promise<void> {
    if (!this.isLeading() || this.view === null || this.viewRevision === null) return;
    const cfg = this.options.config;
    const decision = decide({
      view: this.view,
      live: this.watcher?.members() ?? new Map(),
      failed: this.failed,
      drain: this.drain,
      drained: this.drained,
      forced: this.forced,
      ...(cfg === undefined
        ? {}
        : { sequencersPerLog: cfg.sequencersPerLog, indexReplicas: cfg.indexReplicas }),
    });
    if (decision.kind === "none") return;
    if (decision.kind === "refused") {
      this.lastError = decision.error.message;
      this.logger.error({ cause: decision.cause, err: decision.error.message }, "plan refused");
      this.emit({ type: "plan-refused", error: decision.error });
      return;
    }
    const { cause } = decision;
    let { plan } = decision;
    const old = this.view;
    const oldRevision = this.viewRevision;
    this.pendingPlan = plan.view;
    this.logger.warn(
      { cause, term: plan.view.term, removed: plan.removed, added: plan.added },
      "planned the next view",
    );
    for (let attempt = 1; attempt <= SEAL_ATTEMPTS_MAX; attempt++) {
      try {
        const sealed = await this.sealer(old, plan.view);
        if (sealed !== undefined) plan = { ...plan, view: { ...plan.view, starts: sealed.starts } };
        break;
      } catch (e) {
        this.lastError = e instanceof Error ? e.message : String(e);
        this.logger.error({ attempt, err: this.lastError }, "sealing failed; the view stays");
        this.emit({ type: "sealing-failed", plan, error: e });
        if (e instanceof SealingNotImplementedError) return;
        if (attempt === SEAL_ATTEMPTS_MAX) {
          this.retryLater();
          return;
        }
        await this.sleep(SEAL_RETRY_MS * 2 ** (attempt - 1));
        if (!this.isLeading()) return;
      }
    }
    if (!this.isLeading()) {
      this.logger.warn({ term: plan.view.term }, "no longer leading; not publishing");
      return;
    }
    const history = [...this.history, placementOf(old)];
    const rev = await this.store.putIf(
      VIEW_KEY,
      encodeViewRecord({ view: plan.view, history, cause, publishedAtMs: Date.now() }),
      oldRevision,
    );
    if (rev === null) {
      this.logger.warn({ term: plan.view.term }, "the view changed meanwhile; not publishing");
      this.emit({ type: "publish-conflict", term: plan.view.term });
      await this.loadView();
      return;
    }
    this.view = plan.view;
    this.history = history;
    this.viewRevision = rev;
    this.pendingPlan = null;
    this.lastError = null;
    this.forced = false;
    for (const id of plan.removed) {
      this.failed.delete(id);
      if (this.drain.delete(id)) this.drained.add(id);
    }
    this.logger.warn({ term: plan.view.term, cause }, "published the next view");
    this.emit({ type: "view-published", view: plan.view, cause });
  }

  private retryTimer: ReturnType<Clock["setTimer"]> | null = null;

  /** Evaluates again after `CONTROLLER_RETRY_MS` × 5 (a failed seal may succeed once nodes settle). */
  private retryLater(): void {
    if (this.retryTimer !== null || this.closed) return;
    this.retryTimer = this.clock.setTimer(CONTROLLER_RETRY_MS * 5, () => {
      this.retryTimer = null;
      if (!this.closed) void this.evaluate();
    });
  }

  /**
   * Stops keep-alives of the leadership lease without resigning, as if this process had
   * died, and stops acting. For failure drills and tests.
   */
  abandon(): void {
    this.closed = true;
    this.requestWatch?.cancel();
    if (this.retryTimer !== null) this.clock.clearTimer(this.retryTimer);
    this.resolveStopped();
    this.abort.abort(new Error("controller abandoned"));
    this.leadership?.lease.stopKeepAlive();
    this.watcher?.close();
  }

  /** Resigns leadership and stops. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.requestWatch?.cancel();
    if (this.retryTimer !== null) this.clock.clearTimer(this.retryTimer);
    this.resolveStopped();
    this.abort.abort(new Error("controller closed"));
    this.watcher?.close();
    await this.leadership?.resign();
    await this.chain;
    await this.running?.catch(() => {});
  }
}
