/**
 * The status page in a real browser: Debian's Chromium (scripts/chromium.sh), driven headless by
 * playwright-core, opens the demo's page and checks what a person sees there — the client's state
 * and host, the consumer, the moving rate charts, the publisher's figures — and that the page follows
 * a recovery live (no reload) after the demo's connection is closed on the broker. What it shows is
 * compared with /status.json.
 *
 * Screenshots go to .tmp/status-page-{before,after}.png; with WARREN_UPDATE_SCREENSHOT=1 the one
 * taken after the recovery also replaces docs/images/status-page.png.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { accessSync, constants, copyFileSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { type Browser, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { StatusSnapshot } from "../../src/status/types.js";
import { canUseRabbitmqctl, closeConnectionsNamed, uniqueName } from "../support/broker.js";
import { closedPort } from "../support/ports.js";
import { waitFor } from "../support/wait.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const CHROMIUM = process.env["CHROMIUM"] ?? "/usr/bin/chromium";
const QUEUE = "warren.demo.events";
/** Hang guard for each wait on the page (they normally hold within a second or two). */
const WAIT_MS = 20_000;

// The functions given to page.waitForFunction run in the page; the tests compile without the DOM
// types, so this is the little of `document` they use.
interface PageElement {
  textContent: string | null;
  dataset: Record<string, string | undefined>;
  parentElement: PageElement | null;
  closest(selector: string): PageElement | null;
  querySelector(selector: string): PageElement | null;
}
declare const document: {
  querySelector(selector: string): PageElement | null;
  querySelectorAll(selector: string): Iterable<PageElement> & { length: number };
};

/** Waits until `check` (run in the page) holds; the timeout only guards against a hang. */
async function holds(page: Page, check: (arg: never) => boolean, arg: unknown, what: string): Promise<void> {
  try {
    await page.waitForFunction(check as (arg: unknown) => boolean, arg, { timeout: WAIT_MS });
  } catch (e) {
    throw new Error(`the page did not show ${what} within ${WAIT_MS} ms: ${(e as Error).message}`);
  }
}

function chromiumMissing(): string | undefined {
  try {
    accessSync(CHROMIUM, constants.X_OK);
    return undefined;
  } catch {
    return `${CHROMIUM} not found (run scripts/chromium.sh)`;
  }
}

const missing = chromiumMissing();
const ctlUsable = await canUseRabbitmqctl();
const skipReason = missing ?? (ctlUsable ? undefined : "rabbitmqctl cannot reach the broker");
if (skipReason) console.warn(`status page test skipped: ${skipReason}`);

describe.skipIf(skipReason !== undefined)("the status page in Chromium", () => {
  const name = uniqueName("warren-demo-page");
  let demo: ChildProcess | undefined;
  let output = "";
  let exited = false;
  let browser: Browser | undefined;
  let base = "";

  function killDemo(): void {
    const pid = demo?.pid;
    if (pid === undefined || exited) return;
    try {
      // Its own process group: npx's and tsx's children go with it.
      process.kill(-pid, "SIGKILL");
    } catch {
      // already gone
    }
  }

  beforeAll(async () => {
    const port = await closedPort();
    demo = spawn(
      "npx",
      ["tsx", "examples/demo.ts", "--http-port", String(port), "--connection-name", name, "--rate", "500"],
      { cwd: ROOT, detached: true, stdio: ["ignore", "pipe", "pipe"] },
    );
    demo.stdout?.on("data", (b: Buffer) => {
      output += b.toString();
    });
    demo.stderr?.on("data", (b: Buffer) => {
      output += b.toString();
    });
    demo.on("exit", () => {
      exited = true;
    });
    process.once("exit", killDemo);
    await waitFor(
      () => exited || /status page at (http:\S+)\//.test(output),
      "the demo's status page line",
      60_000,
    );
    const m = /status page at (http:\S+)\//.exec(output);
    if (!m) throw new Error(`the demo exited before serving its page:\n${output.slice(-3000)}`);
    base = m[1]!;
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: process.getuid?.() === 0 ? ["--no-sandbox"] : [],
    });
  }, 90_000);

  afterAll(async () => {
    try {
      await browser?.close();
    } finally {
      killDemo();
      process.removeListener("exit", killDemo);
    }
  });

  async function status(): Promise<StatusSnapshot> {
    const r = await fetch(`${base}/status.json`);
    expect(r.status).toBe(200);
    return (await r.json()) as StatusSnapshot;
  }

  async function text(page: Page, testid: string): Promise<string> {
    return ((await page.getByTestId(testid).first().textContent()) ?? "").trim();
  }

  it("shows the client, its consumer and publisher, moving rates, and a recovery live", async () => {
    const page = await browser!.newPage({ viewport: { width: 1280, height: 900 } });
    const shots = join(ROOT, ".tmp");
    mkdirSync(shots, { recursive: true });
    try {
      await page.goto(`${base}/`);
      const wait = { timeout: WAIT_MS };

      // The client: running, on the local broker.
      const stateIs = (want: string) =>
        document.querySelector('[data-testid="client-state"]')?.textContent === want;
      await holds(page, stateIs, "running", "the state badge to say running");
      await holds(
        page,
        (host: string) =>
          (document.querySelector('[data-testid="client-host"]')?.textContent ?? "").includes(host),
        "127.0.0.1:5672",
        "the host to be 127.0.0.1:5672",
      );

      // The consumers table: the demo's queue, consuming.
      const consumerRow = page.getByTestId("consumers").locator("tbody tr", { hasText: QUEUE });
      await consumerRow.locator(".badge", { hasText: "consuming" }).waitFor(wait);

      // The tree: the consume connection → channel → the consumer, the channel being the one
      // /status.json names.
      const treeChannel = await page.evaluate(() => {
        const consumer = document.querySelector('[data-testid="tree-consumer"]')?.closest("li");
        const channel = consumer?.parentElement?.closest("li");
        const connection = channel?.parentElement?.closest("li");
        return {
          channel: channel?.querySelector(".node strong")?.textContent ?? null,
          connection: connection?.querySelector(".node strong")?.textContent ?? null,
        };
      });
      expect(treeChannel.connection).toBe("consume connection");
      expect(treeChannel.channel).toMatch(/^channel \d+$/);

      // The rate charts move once a rates event came: "published" is above 0.
      await holds(
        page,
        () => Number(document.querySelector('.chart[data-rate="published"] .now')?.textContent) > 0,
        undefined,
        "the published chart's figure to be above 0",
      );

      // The publishers table: published (5th column) above 0.
      await holds(
        page,
        () =>
          Number(document.querySelector('[data-testid="publishers"] tbody tr td:nth-child(5)')?.textContent) >
          0,
        undefined,
        "the publishers table to show published above 0",
      );

      // What the page shows agrees with /status.json.
      const before = await status();
      expect(before.client.state).toBe("running");
      expect(await text(page, "client-state")).toBe(before.client.state);
      expect(await text(page, "client-host")).toContain(before.client.host!);
      const pageQueues = await page
        .getByTestId("consumers")
        .locator("tbody tr td:first-child")
        .allTextContents();
      expect(pageQueues).toEqual(before.consumers.map((c) => c.queue));
      expect(pageQueues).toContain(QUEUE);
      expect(treeChannel.channel).toBe(`channel ${before.consumers.find((c) => c.queue === QUEUE)?.channel}`);
      await page.screenshot({ path: join(shots, "status-page-before.png"), fullPage: true });

      // Close the demo's connection on the broker; the page follows without a reload. The
      // recovering state may be too brief to catch on the badge: the timeline keeps it.
      const recovering = '[data-testid="timeline"] tbody tr[data-to="recovering"]';
      const recoveringRows = await page.locator(recovering).count();
      expect(await closeConnectionsNamed(`${name}:consume`, "closed by the status page test")).toBe(1);
      await holds(
        page,
        ([sel, n]: readonly [string, number]) => document.querySelectorAll(sel).length > n,
        [recovering, recoveringRows] as const,
        "a new running → recovering row in the timeline",
      );
      // Newest first: a "running" row above the newest "recovering" one.
      await holds(
        page,
        () => {
          const rows = [...document.querySelectorAll('[data-testid="timeline"] tbody tr')];
          const rec = rows.findIndex((r) => r.dataset["to"] === "recovering");
          return rec > 0 && rows.slice(0, rec).some((r) => r.dataset["to"] === "running");
        },
        undefined,
        "a → running row after the recovering one in the timeline",
      );
      await holds(page, stateIs, "running", "the state badge to say running again");
      await consumerRow.locator(".badge", { hasText: "consuming" }).waitFor(wait);

      const after = await status();
      expect(after.client.state).toBe("running");
      expect(after.transitions.some((t) => t.to === "recovering")).toBe(true);
      expect(await text(page, "client-state")).toBe(after.client.state);
      expect(await text(page, "client-host")).toContain(after.client.host!);
      expect(
        await page.getByTestId("consumers").locator("tbody tr td:first-child").allTextContents(),
      ).toEqual(after.consumers.map((c) => c.queue));
      // The flow-control line: running since the recovery, and some time spent recovering.
      await holds(
        page,
        () =>
          /^running since .*recovering \d+\.\d s/.test(
            document.querySelector('[data-testid="flow"]')?.textContent ?? "",
          ),
        undefined,
        "the flow line to say running since, and the time recovering",
      );
      expect(after.client.timeIn.recoveringMs).toBeGreaterThan(0);

      const shot = join(shots, "status-page-after.png");
      await page.screenshot({ path: shot, fullPage: true });
      if (process.env["WARREN_UPDATE_SCREENSHOT"] === "1") {
        copyFileSync(shot, join(ROOT, "docs", "images", "status-page.png"));
      }
    } finally {
      await page.close();
    }
  }, 120_000);
});
