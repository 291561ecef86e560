/** `boki-ts/client`: calling functions through the HTTP gateway from outside the runtime. */
export {
  BokiClient,
  CLIENT_REQUEST_TIMEOUT_MS_DEFAULT,
  CLIENT_WAIT_TIMEOUT_MS_DEFAULT,
  CLIENT_POLL_INTERVAL_MS,
  type BokiClientOptions,
  type InvokeOptions,
  type InvocationRecord,
  type InvocationStatus,
  type WorkflowOutcome,
  type WorkflowStartOptions,
} from "./client.js";
export { InvocationError, type InvocationErrorCode } from "../runtime/errors.js";
export type { JsonValue } from "../runtime/json.js";
