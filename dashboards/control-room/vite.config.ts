import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

// Two pages built to dist/, served by `citygauge query` at / and /public.
// Vite 6 because it runs on Debian 12's Node.js 18 as well as on newer ones.
// Relative asset URLs so the pages also work behind a path prefix.
export default defineConfig({
  base: "./",
  build: {
    outDir: "dist",
    emptyOutDir: true,
    chunkSizeWarningLimit: 1024,
    rollupOptions: {
      input: {
        index: fileURLToPath(new URL("index.html", import.meta.url)),
        public: fileURLToPath(new URL("public.html", import.meta.url)),
      },
    },
  },
  server: {
    // `npm run dev` against a running query service (e.g. `citygauge dev`).
    proxy: { "/api": process.env.CITYGAUGE_QUERY_URL ?? "http://127.0.0.1:8080" },
  },
});
