/**
 * `boki-ts/flow`: durable workflows that run to completion exactly once across crashes, on
 * the shared log (BokiFlow's step logging, with Halfmoon's conditional append). See
 * docs/flow.md.
 */
export { defineWorkflow, type Workflow, type WorkflowOptions } from "./workflow.js";
export type { WorkflowContext, StepContext, StepOptions, TableEntry } from "./context.js";
export { RETRY_POLICY_DEFAULT, type RetryPolicy } from "./retry.js";
export {
  FlowError,
  TerminalError,
  StepFailedError,
  CallFailedError,
  type FlowErrorCode,
} from "./errors.js";
export { readTable } from "./tables.js";
export {
  FLOW_FUNCTIONS,
  WORKFLOW_KIND,
  type FlowOutcome,
  type InstanceSummary,
  type InstanceStatusReport,
  type StepSummary,
} from "./protocol.js";
export * as flowLimits from "./limits.js";
