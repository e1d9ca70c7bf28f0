// Checks an exported dashboard against Grafana's own dashboard schema: the JSON is typed
// as @grafana/schema's `Dashboard` and compiled with TypeScript, so a missing required
// field, a wrong type or an unknown key fails with the compiler's message.
//
//   node tests/browser/grafana-check.mjs dashboard.json
import { readFileSync, writeFileSync, mkdtempSync } from "node:fs";
import { execFileSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const file = process.argv[2];
if (!file) {
  console.error("usage: node grafana-check.mjs DASHBOARD.json");
  process.exit(2);
}
const dashboard = JSON.parse(readFileSync(file, "utf8"));
const dir = mkdtempSync(join(here, ".check-"));
const source = join(dir, "dashboard.ts");
writeFileSync(
  source,
  `import type { Dashboard } from "@grafana/schema";\n` +
    `export const dashboard: Dashboard = ${JSON.stringify(dashboard, null, 2)};\n`,
);
try {
  execFileSync(
    process.execPath,
    [join(here, "node_modules/typescript/bin/tsc"), "--noEmit", "--strict", "--skipLibCheck",
      "--module", "nodenext", "--moduleResolution", "nodenext", "--target", "es2022", source],
    { stdio: "inherit", cwd: here },
  );
  console.log(`ok: ${file} is a valid Grafana dashboard (@grafana/schema Dashboard, ${dashboard.panels.length} panels)`);
} catch {
  console.error(`FAIL: ${file} does not match Grafana's dashboard schema (see above)`);
  process.exitCode = 1;
} finally {
  execFileSync("rm", ["-rf", dir]);
}
