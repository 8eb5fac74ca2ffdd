// ESLint (flat config): typescript-eslint's recommended rules and the React hooks rules over src/. `make lint` runs it
// with --max-warnings=0 next to `tsc --noEmit`.
import js from "@eslint/js";
import reactHooks from "eslint-plugin-react-hooks";
import globals from "globals";
import tseslint from "typescript-eslint";

export default tseslint.config(
  { ignores: ["dist/", "node_modules/", "src/api/schema.gen.ts"] },
  {
    files: ["**/*.{ts,tsx}"],
    extends: [js.configs.recommended, ...tseslint.configs.recommended, reactHooks.configs.flat.recommended],
    languageOptions: { ecmaVersion: 2022, globals: globals.browser },
    rules: {
      // The code base's convention: a leading underscore marks a deliberately unused argument or destructured rest.
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      // React Compiler readiness rules (eslint-plugin-react-hooks 6+). The app does not use the compiler; its effects
      // reset local state when a socket or a route changes, and the wizard reads refs during render on purpose
      // (NewTrainingPage). rules-of-hooks and exhaustive-deps, the correctness rules, stay on.
      "react-hooks/set-state-in-effect": "off",
      "react-hooks/refs": "off",
    },
  },
);
