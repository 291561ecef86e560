// Runs before `npm test` (the "pretest" script). The coordination-store and failover tests
// start real etcd servers, so the etcd binary must be there: `$ETCD_BIN`, else `etcd` on the
// PATH. When it is missing, Debian's etcd-server package is installed if this user may do so
// (root, or sudo without a password); otherwise this stops at once with one line saying what
// to run. Idempotent: with etcd present it only checks its version.
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import process from "node:process";

/** Longest an apt-get step may take. */
const APT_TIMEOUT_MS = 10 * 60_000;
const PACKAGE = "etcd-server";
const etcdBin = process.env.ETCD_BIN ?? "etcd";

function etcdRuns() {
  const r = spawnSync(etcdBin, ["--version"], { encoding: "utf8", timeout: 10_000 });
  return r.status === 0;
}

function fail(line) {
  console.error(`npm test: ${line}`);
  process.exit(1);
}

if (!etcdRuns()) {
  if (process.env.ETCD_BIN !== undefined) {
    fail(
      `ETCD_BIN=${etcdBin} does not run ("${etcdBin} --version" failed); point it at an etcd binary.`,
    );
  }
  const hasApt = spawnSync("apt-get", ["--version"], { stdio: "ignore" }).status === 0;
  const isRoot = process.getuid?.() === 0;
  const sudoOk = !isRoot && spawnSync("sudo", ["-n", "true"], { stdio: "ignore" }).status === 0;
  if (!hasApt || (!isRoot && !sudoOk)) {
    fail(
      `the tests need the etcd server binary: run \`sudo apt-get install ${PACKAGE}\` ` +
        "(Debian/Ubuntu), or set ETCD_BIN to an etcd binary, then npm test again.",
    );
  }
  const run = (args) => {
    const [cmd, ...rest] = isRoot ? args : ["sudo", "-n", ...args];
    execFileSync(cmd, rest, {
      stdio: ["ignore", "inherit", "inherit"],
      timeout: APT_TIMEOUT_MS,
      env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
    });
  };
  console.error(`npm test: installing ${PACKAGE} (the etcd server the tests start)...`);
  const lists = "/var/lib/apt/lists";
  const haveLists = existsSync(lists) && readdirSync(lists).some((f) => f.endsWith("Packages"));
  try {
    if (!haveLists) run(["apt-get", "update"]);
    try {
      run(["apt-get", "install", "-y", "--no-install-recommends", PACKAGE]);
    } catch {
      run(["apt-get", "update"]);
      run(["apt-get", "install", "-y", "--no-install-recommends", PACKAGE]);
    }
    // The package enables an etcd service on the default ports; the tests start their own.
    if (existsSync("/run/systemd/system")) {
      spawnSync(
        isRoot ? "systemctl" : "sudo",
        [...(isRoot ? [] : ["-n", "systemctl"]), "disable", "--now", "etcd"],
        {
          stdio: "ignore",
        },
      );
    }
  } catch (err) {
    fail(
      `installing ${PACKAGE} failed (${err.message.split("\n")[0]}); install it by hand and run npm test again.`,
    );
  }
  if (!etcdRuns()) fail(`${PACKAGE} is installed but "etcd --version" still fails.`);
}
