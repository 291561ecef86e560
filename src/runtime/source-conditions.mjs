// A module resolution hook for running Boki.ts from its sources (a checkout whose build is
// missing or older than src/): imports of "boki-ts" and its subpaths resolve with the
// "boki-source" export condition, to the TypeScript sources (loaded through tsx), so function
// modules and the runtime share one fresh copy instead of the module importing a stale build.
// A boki-ts package without sources (an installed build) resolves as usual.
const SOURCE_CONDITION = "boki-source";

export async function resolve(specifier, context, nextResolve) {
  if (specifier !== "boki-ts" && !specifier.startsWith("boki-ts/")) {
    return nextResolve(specifier, context);
  }
  try {
    return await nextResolve(specifier, {
      ...context,
      conditions: [...context.conditions, SOURCE_CONDITION],
    });
  } catch {
    return nextResolve(specifier, context);
  }
}
