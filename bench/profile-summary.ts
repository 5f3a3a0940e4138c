/**
 * Summarises a V8 .cpuprofile (from `bench/run.ts --cpu-prof` or `node --cpu-prof`):
 * where the time went by area, the top functions by self time, and the top functions
 * of this repository's src/ by inclusive time.
 *
 *   npx tsx bench/profile-summary.ts FILE.cpuprofile [--top N]
 */
import { readFileSync } from "node:fs";

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
  columnNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

const args = process.argv.slice(2);
const file = args.find((a) => !a.startsWith("--"));
const topIdx = args.indexOf("--top");
const TOP = topIdx >= 0 ? Number(args[topIdx + 1]) : 20;
if (!file) {
  console.error("usage: tsx bench/profile-summary.ts FILE.cpuprofile [--top N]");
  process.exit(2);
}

const p = JSON.parse(readFileSync(file, "utf8")) as Profile;
const byId = new Map<number, ProfileNode>();
const parent = new Map<number, number>();
for (const n of p.nodes) {
  byId.set(n.id, n);
  for (const c of n.children ?? []) parent.set(c, n.id);
}

/** Where a frame's code lives. */
function area(f: CallFrame): string {
  const u = f.url;
  if (!u) {
    if (f.functionName.startsWith("(")) return f.functionName; // (garbage collector), (idle), (program)
    return "(native/builtin)";
  }
  if (u.startsWith("node:")) return "node internals";
  const nm = u.lastIndexOf("/node_modules/");
  if (nm >= 0) {
    const rest = u.slice(nm + 14).split("/");
    return rest[0]!.startsWith("@") ? `${rest[0]}/${rest[1]}` : rest[0]!;
  }
  const src = u.indexOf("/src/");
  if (src >= 0)
    return `warren ${u
      .slice(src + 1)
      .split("/")
      .slice(0, 2)
      .join("/")}`;
  if (u.includes("/bench/")) return "bench harness";
  return u;
}

function key(f: CallFrame): string {
  const u = f.url.replace(/^file:\/\/.*?\/(src|bench|node_modules)\//, "$1/");
  return `${f.functionName || "(anonymous)"}  ${u}${u ? `:${f.lineNumber + 1}` : ""}`;
}

const self = new Map<string, number>();
/** Self time keyed by "nearest src/ frame → leaf": which of our functions the runtime's time is spent for. */
const bySrcCaller = new Map<string, number>();
const inclusive = new Map<string, number>();
const areas = new Map<string, number>();
let total = 0;
for (let i = 0; i < p.samples.length; i++) {
  const dt = p.timeDeltas[i] ?? 0;
  const id = p.samples[i]!;
  const leaf = byId.get(id)!;
  total += dt;
  self.set(key(leaf.callFrame), (self.get(key(leaf.callFrame)) ?? 0) + dt);
  areas.set(area(leaf.callFrame), (areas.get(area(leaf.callFrame)) ?? 0) + dt);
  if (!leaf.callFrame.url.includes("/src/")) {
    for (let n = parent.get(id); n !== undefined; n = parent.get(n)) {
      const f = byId.get(n)!.callFrame;
      if (f.url.includes("/src/")) {
        const k = `${key(f)} → ${leaf.callFrame.functionName || "(anonymous)"}`;
        bySrcCaller.set(k, (bySrcCaller.get(k) ?? 0) + dt);
        break;
      }
    }
  }
  const seen = new Set<string>();
  for (let n: number | undefined = id; n !== undefined; n = parent.get(n)) {
    const k = key(byId.get(n)!.callFrame);
    if (seen.has(k)) continue;
    seen.add(k);
    inclusive.set(k, (inclusive.get(k) ?? 0) + dt);
  }
}

const ms = (us: number) => (us / 1000).toFixed(1);
const pct = (us: number) => `${((100 * us) / total).toFixed(1)}%`;
const idle = areas.get("(idle)") ?? 0;

console.log(`## ${file}`);
console.log(
  `\n${ms(total)} ms sampled, of which ${ms(idle)} ms idle (${pct(idle)}); busy ${ms(total - idle)} ms.\n`,
);
console.log("| Area (self time) | ms | share |\n|---|---:|---:|");
for (const [a, t] of [...areas].sort((x, y) => y[1] - x[1]).slice(0, 14)) {
  console.log(`| ${a} | ${ms(t)} | ${pct(t)} |`);
}
console.log(`\n| Top ${TOP} functions by self time | ms | share |\n|---|---:|---:|`);
for (const [k, t] of [...self].sort((x, y) => y[1] - x[1]).slice(0, TOP)) {
  console.log(`| \`${k}\` | ${ms(t)} | ${pct(t)} |`);
}
const own = [...inclusive].filter(([k]) => k.includes(" src/"));
if (own.length) {
  console.log(`\n| Top ${TOP} src/ functions by inclusive time | ms | share |\n|---|---:|---:|`);
  for (const [k, t] of own.sort((x, y) => y[1] - x[1]).slice(0, TOP)) {
    console.log(`| \`${k}\` | ${ms(t)} | ${pct(t)} |`);
  }
}
if (bySrcCaller.size) {
  console.log(
    `\n| Top ${TOP} runtime/library self time by the nearest src/ caller | ms | share |\n|---|---:|---:|`,
  );
  for (const [k, t] of [...bySrcCaller].sort((x, y) => y[1] - x[1]).slice(0, TOP)) {
    console.log(`| \`${k}\` | ${ms(t)} | ${pct(t)} |`);
  }
}
