import { describe, expect, test } from "vitest";
import { InvalidArgumentError as CliArgumentError } from "commander";
import { CliFailure, describeCliError } from "../src/cli/errors.js";
import { FunctionLoadError, InvocationError } from "../src/runtime/errors.js";
import { InvalidArgumentError } from "../src/index.js";
import { runBoki } from "./helpers/dev-process.js";
import { tempDir } from "./helpers/tmp.js";

describe("CLI errors", () => {
  test("each kind of mistake is described in one line, with what to do where that helps", () => {
    expect(describeCliError(new CliFailure("bad", "do this"))).toEqual({
      message: "bad",
      hint: "do this",
    });
    expect(describeCliError(new FunctionLoadError("no modules")).hint).toMatch(/--functions/);
    expect(describeCliError(new InvalidArgumentError("x out of range")).message).toBe(
      "error INVALID_ARGUMENT: x out of range",
    );
    expect(describeCliError(new InvocationError("TIMEOUT", "slow")).message).toBe(
      "error TIMEOUT: slow",
    );
    expect(describeCliError(new CliArgumentError("--id is needed")).message).toBe("--id is needed");
    const inUse = Object.assign(
      new Error("listen EADDRINUSE: address already in use 127.0.0.1:8080"),
      {
        code: "EADDRINUSE",
      },
    );
    expect(describeCliError(inUse).hint).toMatch(/--port/);
    expect(describeCliError(new TypeError("boom"))).toEqual({
      message: "unexpected error: boom",
      hint: "Run the command again with --verbose to see where it came from.",
    });
  });

  test("boki dev without a functions folder prints two plain lines and exits with 1; --verbose adds the stack", async () => {
    const t = tempDir("boki-cli-");
    try {
      const missing = `${t.dir}/functions`;
      const plain = await runBoki(["dev", "--functions", missing, "--port", "0"]);
      expect(plain.code).toBe(1);
      expect(plain.stderr.trimEnd().split("\n")).toEqual([
        `boki: no function module or directory at ${missing}`,
        expect.stringMatching(/boki init/),
      ]);
      const verbose = await runBoki(["dev", "--functions", missing, "--port", "0", "--verbose"]);
      expect(verbose.code).toBe(1);
      expect(verbose.stderr).toMatch(/\n\s+at /);
    } finally {
      t.remove();
    }
  });

  test("a missing cluster config is one line and exit status 1", async () => {
    const r = await runBoki(["start", "--config", "/nonexistent/cluster.json"]);
    expect(r.code).toBe(1);
    expect(r.stderr.trimEnd().split("\n")).toEqual([
      expect.stringMatching(
        /^boki: error INVALID_ARGUMENT: cannot read cluster config \/nonexistent\/cluster.json/,
      ),
    ]);
  });
});
