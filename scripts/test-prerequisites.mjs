// Runs before `npm test` (the "pretest" script). The tests need two programs:
// - the etcd server (the coordination-store and failover tests start real etcd servers):
//   `$ETCD_BIN`, else `etcd` on the PATH; Debian's package etcd-server;
// - Chromium (the dashboard test loads the page in a headless browser): `$CHROMIUM_BIN`,
//   else `chromium` on the PATH; Debian's package chromium.
// When one is missing, its Debian package is installed if this user may do so (root, or sudo
// without a password); otherwise this stops at once with one line saying what to run.
// Idempotent: with both present it only checks their versions.
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import process from "node:process";

/** Longest an apt-get step may take. */
const APT_TIMEOUT_MS = 10 * 60_000;

const PROGRAMS = [
  {
    what: "the etcd server binary",
    pkg: "etcd-server",
    env: "ETCD_BIN",
    bin: process.env.ETCD_BIN ?? "etcd",
    // The package enables an etcd service on the default ports; the tests start their own.
    service: "etcd",
  },
  {
    what: "Chromium (for the dashboard test)",
    pkg: "chromium",
    env: "CHROMIUM_BIN",
    bin: process.env.CHROMIUM_BIN ?? "chromium",
    service: null,
  },
];

function runs(bin) {
  const r = spawnSync(bin, ["--version"], { encoding: "utf8", timeout: 20_000 });
  return r.status === 0;
}

function fail(line) {
  console.error(`npm test: ${line}`);
  process.exit(1);
}

const missing = PROGRAMS.filter((p) => !runs(p.bin));
for (const p of missing) {
  if (process.env[p.env] !== undefined) {
    fail(`${p.env}=${p.bin} does not run ("${p.bin} --version" failed); point it at ${p.what}.`);
  }
}

if (missing.length > 0) {
  const pkgs = missing.map((p) => p.pkg);
  const hasApt = spawnSync("apt-get", ["--version"], { stdio: "ignore" }).status === 0;
  const isRoot = process.getuid?.() === 0;
  const sudoOk = !isRoot && spawnSync("sudo", ["-n", "true"], { stdio: "ignore" }).status === 0;
  if (!hasApt || (!isRoot && !sudoOk)) {
    fail(
      `the tests need ${missing.map((p) => p.what).join(" and ")}: run \`sudo apt-get install ${pkgs.join(" ")}\` ` +
        `(Debian/Ubuntu), or set ${missing.map((p) => p.env).join(" / ")}, then npm test again.`,
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
  console.error(`npm test: installing ${pkgs.join(" and ")} (what the tests start)...`);
  const lists = "/var/lib/apt/lists";
  const haveLists = existsSync(lists) && readdirSync(lists).some((f) => f.endsWith("Packages"));
  try {
    if (!haveLists) run(["apt-get", "update"]);
    try {
      run(["apt-get", "install", "-y", "--no-install-recommends", ...pkgs]);
    } catch {
      run(["apt-get", "update"]);
      run(["apt-get", "install", "-y", "--no-install-recommends", ...pkgs]);
    }
    for (const p of missing) {
      if (p.service === null || !existsSync("/run/systemd/system")) continue;
      spawnSync(
        isRoot ? "systemctl" : "sudo",
        [...(isRoot ? [] : ["-n", "systemctl"]), "disable", "--now", p.service],
        { stdio: "ignore" },
      );
    }
  } catch (err) {
    fail(
      `installing ${pkgs.join(" ")} failed (${err.message.split("\n")[0]}); install it by hand and run npm test again.`,
    );
  }
  for (const p of missing)
    if (!runs(p.bin)) fail(`${p.pkg} is installed but "${p.bin} --version" still fails.`);
}
