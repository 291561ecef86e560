#!/usr/bin/env node
// Starts the CLI through tsx so that users' TypeScript modules load without a build step.
import { register } from "tsx/esm/api";
register();
await import("../src/cli/main.ts");
