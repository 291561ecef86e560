// @ts-check
import js from "@eslint/js";
import tseslint from "typescript-eslint";

export default tseslint.config(
  { ignores: ["node_modules/", "bench/results/", "coverage/", "data/", "dist/"] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      "@typescript-eslint/no-floating-promises": "error",
      "@typescript-eslint/no-misused-promises": "error",
      "@typescript-eslint/await-thenable": "error",
      "@typescript-eslint/no-unused-vars": [
        "error",
        { argsIgnorePattern: "^_", varsIgnorePattern: "^_" },
      ],
      "@typescript-eslint/consistent-type-imports": "error",
      "@typescript-eslint/restrict-template-expressions": [
        "error",
        { allowNumber: true, allowBoolean: true, allowNullish: true, allowNever: true },
      ],
      "no-constant-condition": ["error", { checkLoops: false }],
    },
  },
  {
    // The roles run under the deterministic simulator: time, timers and randomness come
    // from the injected Clock (and the simulator's seeded source), never from globals.
    files: [
      "src/log/**/*.ts",
      "src/engine/engine.ts",
      "src/sequencer/sequencer.ts",
      "src/storage/storage-node.ts",
      "src/sim/**/*.ts",
    ],
    ignores: ["src/sim/clock.ts", "src/sim/main.ts"],
    rules: {
      "no-restricted-globals": [
        "error",
        ...["setTimeout", "setInterval", "setImmediate", "queueMicrotask", "performance"].map(
          (name) => ({ name, message: "use the injected Clock (deterministic simulation)" }),
        ),
      ],
      "no-restricted-properties": [
        "error",
        { object: "Date", property: "now", message: "use the injected Clock" },
        { object: "Math", property: "random", message: "use the simulator's seeded source" },
      ],
    },
  },
  {
    files: ["bin/**/*.js", "**/*.mjs", "eslint.config.js"],
    ...tseslint.configs.disableTypeChecked,
  },
  {
    // Plain Node.js scripts.
    files: ["bin/**/*.js", "scripts/**/*.mjs"],
    languageOptions: { globals: { console: "readonly", process: "readonly" } },
  },
);
