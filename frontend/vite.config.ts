import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

// The production build is served by Django: the shell template reads
// static/frontend/.vite/manifest.json and includes the entry for "src/main.tsx"
// (its `file` as a module script and its `css` list as stylesheets).
const backend = "http://127.0.0.1:8000";

export default defineConfig(({ command }) => ({
  // Built assets live under /static/frontend/; the dev server serves from "/" so deep links work there too.
  base: command === "build" ? "/static/frontend/" : "/",
  plugins: [react()],
  build: {
    outDir: "../static/frontend",
    emptyOutDir: true,
    manifest: true,
    sourcemap: false,
    rolldownOptions: {
      input: "src/main.tsx",
    },
  },
  server: {
    port: 5173,
    proxy: {
      "/api": { target: backend, changeOrigin: false },
      "/ws": { target: backend, ws: true, changeOrigin: false },
    },
  },
}));
