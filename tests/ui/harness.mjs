// What the UI tests share: a real `runwatch start` on a temp data dir, a small API client, a
// fake Slack (any JSON webhook) that records requests, Debian's chromium driven by
// playwright-core, and polling with deadlines instead of sleeps.
//
// Everything listens on 127.0.0.1; nothing is downloaded.

import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const ARTIFACTS = path.join(ROOT, "target", "artifacts");
const TARGET = process.env.CARGO_TARGET_DIR ? path.resolve(ROOT, process.env.CARGO_TARGET_DIR) : path.join(ROOT, "target");
export const RUNWATCH = process.env.RUNWATCH_BIN ?? path.join(TARGET, "debug", "runwatch");
export const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";

/** Every child process and temp dir still alive, so an interrupted run cleans up anyway. */
const children = new Set();
const tempDirs = new Set();
process.on("exit", () => {
  for (const c of children) {
    try {
      c.kill("SIGKILL");
    } catch {
      // already gone
    }
  }
  for (const d of tempDirs) rmSync(d, { recursive: true, force: true });
});

export function tempDir(prefix) {
  const d = mkdtempSync(path.join(os.tmpdir(), `runwatch-ui-${prefix}-`));
  tempDirs.add(d);
  return d;
}

function removeDir(d) {
  rmSync(d, { recursive: true, force: true });
  tempDirs.delete(d);
}

/** Polls `check` until it returns a truthy value (returned), or fails after `timeout` ms. */
export async function waitUntil(check, what, { timeout = 10_000, interval = 50 } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      const v = await check();
      if (v) return v;
      last = v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) {
      const detail = last instanceof Error ? last.message : JSON.stringify(last);
      throw new Error(`timed out after ${timeout} ms waiting for ${what} (last: ${detail})`);
    }
    await new Promise((r) => setTimeout(r, interval));
  }
}

// ---- the daemon ----

/**
 * Starts `runwatch start --http 127.0.0.1:0` and waits for the URL it prints. `repo`: an Aim
 * repository to watch; `dataDir`: a data dir to use (and keep), instead of a fresh one.
 */
export async function startDaemon({ repo, dataDir: given } = {}) {
  const dataDir = given ?? tempDir("data");
  const cwd = tempDir("cwd"); // no ./.aim here, so nothing is watched unless asked
  const args = ["--data-dir", dataDir, ...(repo ? ["--repo", repo] : []), "start", "--http", "127.0.0.1:0"];
  const child = spawn(RUNWATCH, args, {
    cwd,
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, NO_COLOR: "1", RUST_BACKTRACE: "1" },
  });
  children.add(child);
  let out = "";
  let err = "";
  child.stdout.setEncoding("utf8");
  child.stderr.setEncoding("utf8");
  const exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));

  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`runwatch start printed no URL within 20 s\nstdout:\n${out}\nstderr:\n${err}`)), 20_000);
    child.stdout.on("data", (s) => {
      out += s;
      const m = out.match(/Serving the UI at (http:\/\/\S+)/);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    child.stderr.on("data", (s) => (err += s));
    child.once("error", (e) => {
      clearTimeout(timer);
      reject(new Error(`cannot run ${RUNWATCH}: ${e.message} (build it with 'cargo build -p runwatch-cli')`));
    });
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`runwatch start exited (${code ?? signal}) before serving\nstdout:\n${out}\nstderr:\n${err}`));
    });
  });

  const u = new URL(url);
  const token = new URLSearchParams(u.hash.slice(1)).get("token");
  if (!token) throw new Error(`no token in the printed URL ${url}`);
  const base = u.origin;

  return {
    url,
    base,
    token,
    dataDir,
    output: () => ({ stdout: out, stderr: err }),
    api: apiClient(base, token),
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGINT"); // what Ctrl+C does
        const killer = setTimeout(() => child.kill("SIGKILL"), 5_000);
        await exited;
        clearTimeout(killer);
      }
      children.delete(child);
      if (!given) removeDir(dataDir);
      removeDir(cwd);
    },
  };
}

/** A small client for the API, for seeding and for checking what the UI did. */
export function apiClient(base, token) {
  async function call(method, p, body) {
    const res = await fetch(`${base}/api/v1${p}`, {
      method,
      headers: { Authorization: `Bearer ${token}`, ...(body === undefined ? {} : { "Content-Type": "application/json" }) },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(10_000),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`${method} ${p}: HTTP ${res.status} ${text}`);
    return text ? JSON.parse(text) : undefined;
  }
  return {
    get: (p) => call("GET", p),
    post: (p, body) => call("POST", p, body),
    patch: (p, body) => call("PATCH", p, body),
    /** Sends events; returns their ids in order. */
    async events(events) {
      const r = await call("POST", "/events/batch", { events });
      return r.map((x) => x.id);
    },
    summary: () => call("GET", "/notifications/summary"),
  };
}

// ---- a fake Slack ----

/** A local HTTP server that records every request and answers `status` (200 "ok" by default). */
export async function startFakeSlack() {
  const requests = [];
  const server = http.createServer((req, res) => {
    let body = "";
    req.setEncoding("utf8");
    req.on("data", (c) => (body += c));
    req.on("end", () => {
      let json = null;
      try {
        json = JSON.parse(body);
      } catch {
        // not JSON: keep the text
      }
      requests.push({ method: req.method, url: req.url, headers: req.headers, body, json });
      const status = fake.answer.status;
      res.writeHead(status, { "Content-Type": "text/plain" });
      res.end(fake.answer.body);
    });
  });
  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  const { port } = server.address();
  const fake = {
    url: `http://127.0.0.1:${port}`,
    requests,
    answer: { status: 200, body: "ok" },
    stop: () =>
      new Promise((resolve) => {
        server.closeAllConnections?.();
        server.close(() => resolve());
      }),
  };
  return fake;
}

// ---- an Aim repository with check-ins ----

/** Writes Aim check-in files (`{run}-{idx:016}-{flag}-{utc:011.2f}-{expect:05}`) into a new repo. */
export function aimRepo(checkins) {
  const root = tempDir("aim");
  const dir = path.join(root, ".aim", "check_ins");
  mkdirSync(dir, { recursive: true });
  const now = Date.now() / 1000;
  for (const c of checkins) {
    const name = `${c.run}-${String(c.idx).padStart(16, "0")}-${c.flag}-${now.toFixed(2).padStart(11, "0")}-${String(c.expect ?? 0).padStart(5, "0")}`;
    writeFileSync(path.join(dir, name), "");
  }
  return { root, remove: () => removeDir(root) };
}

// ---- the browser ----

const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/**
 * Launches Debian's chromium with a fresh profile and returns its context, plus a record of
 * console errors and page errors of every page opened in it.
 */
export async function launchBrowser({ colorScheme = "light" } = {}) {
  const profile = tempDir("profile");
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 1280, height: 800 },
    colorScheme,
    timeout: 30_000,
  });
  context.setDefaultTimeout(10_000);
  const problems = [];
  const watch = (page) => {
    page.on("console", (m) => {
      if (m.type() === "error" || m.type() === "warning") problems.push(`console.${m.type()}: ${m.text()} (${m.location().url})`);
    });
    page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  };
  context.pages().forEach(watch);
  context.on("page", watch);
  return {
    context,
    problems,
    async page() {
      const existing = context.pages().find((p) => p.url() === "about:blank");
      return existing ?? (await context.newPage());
    },
    /** Fails on any console error or warning not matched by one of `allowed`. */
    assertNoProblems(allowed = []) {
      const unexpected = problems.filter((p) => !allowed.some((re) => re.test(p)));
      if (unexpected.length) throw new Error(`the page reported problems:\n${unexpected.join("\n")}`);
    },
    async close() {
      await context.close().catch(() => {});
      removeDir(profile);
    },
  };
}

/**
 * Saves a screenshot to target/artifacts/ui-NAME.png, with the mouse parked in a corner and
 * nothing focused, so no hover or focus ring lands in the picture.
 */
export async function screenshot(page, name) {
  mkdirSync(ARTIFACTS, { recursive: true });
  await page.mouse.move(1279, 799);
  await page.evaluate(() => document.activeElement instanceof HTMLElement && document.activeElement.blur());
  const file = path.join(ARTIFACTS, `ui-${name}.png`);
  await page.screenshot({ path: file, fullPage: true, animations: "disabled", caret: "hide" });
  return file;
}

/**
 * Runs `body` with a fresh daemon and browser (and whatever `extra` starts), and stops them
 * all afterwards, even when the body fails.
 */
export async function withSetup(options, body) {
  const cleanups = [];
  try {
    const daemon = await startDaemon(options);
    cleanups.push(() => daemon.stop());
    const browser = await launchBrowser(options);
    cleanups.push(() => browser.close());
    const page = await browser.page();
    try {
      await body({ daemon, browser, page, api: daemon.api, defer: (f) => cleanups.push(f) });
    } catch (e) {
      const { stdout, stderr } = daemon.output();
      e.message += `\n--- runwatch stdout (tail) ---\n${stdout.slice(-2000)}\n--- runwatch stderr (tail) ---\n${stderr.slice(-2000)}`;
      if (browser.problems.length) e.message += `\n--- page problems ---\n${browser.problems.join("\n")}`;
      throw e;
    }
  } finally {
    // Browser first (its event stream would see the daemon go away), then the daemon.
    for (const f of cleanups.reverse()) await Promise.resolve().then(f).catch(() => {});
  }
}
