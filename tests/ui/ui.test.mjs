// The Runwatch UI in Debian's chromium (headless), against a real `runwatch start`.
// Run: node --test tests/ui/   (needs target/debug/runwatch built with the UI: make ui, cargo build -p runwatch-cli)

import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { test } from "node:test";
import { aimRepo, screenshot, startDaemon, startFakeSlack, tempDir, waitUntil, withSetup } from "./harness.mjs";

const TEST_TIMEOUT = 120_000;

/** The titles of the notifications listed, sorted. */
async function titles(page) {
  const t = await page.locator(".nrow .ntitle").allTextContents();
  return t.map((s) => s.replace(/×\d+$/, "").trim()).sort();
}

/** Waits until the list shows exactly these titles. */
async function expectTitles(page, expected, what) {
  const want = [...expected].sort();
  let last = [];
  try {
    await waitUntil(async () => {
      last = await titles(page);
      return JSON.stringify(last) === JSON.stringify(want);
    }, what);
  } catch (e) {
    assert.deepEqual(last, want, `${what}: ${e.message}`);
  }
}

async function expectHeaderTotal(page, n) {
  await waitUntil(async () => (await page.getByTestId("unread-total").textContent())?.trim() === String(n), `the header to show ${n} unread`);
}

const levelChip = (page, name) => page.getByRole("group", { name: "Minimum level" }).getByRole("button", { name, exact: true });
const showButton = (page, name) => page.getByRole("group", { name: "Show" }).getByRole("button", { name, exact: true });

const SEED = [
  { run_id: "resnet-a1", level: "INFO", title: "Epoch 3 finished", message: "Epoch 3 finished: val_acc=0.912" },
  { run_id: "resnet-a1", level: "WARNING", title: "Loss plateaued", message: "Loss has not improved for 5 epochs" },
  {
    run_id: "bert-b2",
    level: "ERROR",
    title: "CUDA out of memory",
    message: 'RuntimeError: CUDA out of memory.\nconfig = {"batch": 64, "lr": {value}} and a stray } brace\n  at step {step}',
  },
  { run_id: "bert-b2", level: "CRITICAL", title: "Run crashed", message: "Process exited with signal 9 (SIGKILL)" },
  { run_id: null, level: "DEBUG", title: "Checkpoint saved", message: "Checkpoint saved to /ckpt/step-1200.pt" },
  { run_id: "vit-c3", level: "INFO", title: "Dataset loaded", message: "Dataset loaded: 1.2M images" },
];

test("notifications: filter by level and run, details, ack one, ack all", { timeout: TEST_TIMEOUT }, async () => {
  await withSetup({}, async ({ daemon, browser, page, api }) => {
    const ids = await api.events(SEED);
    const all = SEED.map((e) => e.title);

    await page.goto(daemon.url);
    await expectTitles(page, all, "every pending notification");
    // The token left the address bar, and was kept.
    assert.ok(!page.url().includes("token="), `token still in the URL: ${page.url()}`);
    assert.equal(await page.evaluate(() => localStorage.getItem("runwatch.token")), daemon.token);
    await expectHeaderTotal(page, 6);
    await page.getByTestId("unread-critical").filter({ hasText: "1 CRITICAL" }).waitFor();

    // Level chips: at or above.
    await levelChip(page, "ERROR").click();
    await expectTitles(page, ["CUDA out of memory", "Run crashed"], "ERROR and above");
    assert.equal(await levelChip(page, "ERROR").getAttribute("aria-pressed"), "true");
    await levelChip(page, "WARNING").click();
    await expectTitles(page, ["CUDA out of memory", "Run crashed", "Loss plateaued"], "WARNING and above");
    await levelChip(page, "CRITICAL").click();
    await expectTitles(page, ["Run crashed"], "CRITICAL only");
    await levelChip(page, "All").click();
    await expectTitles(page, all, "every level again");

    // Run filter.
    await page.getByLabel("Run", { exact: true }).selectOption("bert-b2");
    await expectTitles(page, ["CUDA out of memory", "Run crashed"], "run bert-b2");
    await page.getByLabel("Run", { exact: true }).selectOption("");
    await expectTitles(page, all, "every run again");

    // Details: the body keeps its braces and line breaks.
    await page.locator(".nrow-main", { hasText: "CUDA out of memory" }).click();
    const details = page.getByTestId("details");
    await details.getByRole("heading", { name: "CUDA out of memory" }).waitFor();
    assert.equal(await details.getByTestId("details-body").textContent(), SEED[2].message);
    assert.match(await details.locator(".meta").innerText(), /Level\s+ERROR/);
    assert.match(await details.locator(".meta").innerText(), /Run\s+bert-b2/);
    assert.match(page.url(), new RegExp(`#/notifications/${ids[2]}$`));
    // The default logger notifier delivers it: one delivery row, sent.
    await details.locator("tbody tr", { hasText: "logger" }).locator(".state-sent").waitFor();

    // Ack from the details pane: it leaves the pending list.
    await details.getByRole("button", { name: "Acknowledge", exact: true }).click();
    await details.locator(".ok-text", { hasText: "Acknowledged" }).waitFor();
    await expectTitles(page, all.filter((t) => t !== "CUDA out of memory"), "the acked one gone from Pending");
    assert.equal((await api.summary()).total, 5);
    await expectHeaderTotal(page, 5);

    // Ack from a row.
    await page.getByRole("button", { name: "Acknowledge “Loss plateaued”" }).click();
    await expectTitles(page, ["Epoch 3 finished", "Run crashed", "Checkpoint saved", "Dataset loaded"], "the row-acked one gone");
    await expectHeaderTotal(page, 4);
    const acked = await api.get(`/notifications/${ids[1]}`);
    assert.notEqual(acked.notification.acked_at, null);

    // All shows the acknowledged ones too, marked.
    await showButton(page, "All").click();
    await expectTitles(page, all, "All");
    assert.equal(await page.locator(".nrow.acked").count(), 2);
    await showButton(page, "Pending").click();
    await expectTitles(page, ["Epoch 3 finished", "Run crashed", "Checkpoint saved", "Dataset loaded"], "Pending again");

    // Acknowledge all: the summary goes to zero, over HTTP and in the header.
    await page.getByRole("button", { name: "Acknowledge all" }).click();
    await page.getByText("No pending notifications.").waitFor();
    await page.getByRole("status").filter({ hasText: "Acknowledged 4 notifications." }).waitFor();
    const summary = await api.summary();
    assert.equal(summary.total, 0);
    assert.equal(summary.highest, null);
    await expectHeaderTotal(page, 0);
    assert.ok(await page.getByRole("button", { name: "Acknowledge all" }).isDisabled());

    await showButton(page, "All").click();
    await expectTitles(page, all, "All after ack all");
    browser.assertNoProblems();
  });
});

test("notifiers: validation, add Slack, send test, disable, remove", { timeout: TEST_TIMEOUT }, async () => {
  await withSetup({}, async ({ daemon, browser, page, api, defer }) => {
    const slack = await startFakeSlack();
    defer(() => slack.stop());
    const before = await api.get("/notifiers");
    assert.equal(before.length, 1, "start adds the logger when no notifier is configured");

    await page.goto(`${daemon.base}/#token=${daemon.token}&/notifiers`);
    const cards = page.locator("li.notifier");
    await waitUntil(async () => (await cards.count()) === 1, "the logger's card");
    assert.equal(await page.getByRole("tab", { name: "Notifiers" }).getAttribute("aria-selected"), "true");

    const form = page.locator("form", { has: page.getByRole("button", { name: "Add notifier" }) });
    await form.getByLabel("Type").selectOption("slack");
    const urlField = form.getByLabel("Webhook URL");

    // A bad URL: an inline error next to the field, and nothing is added.
    for (const bad of ["not a url", "ftp://example.com/hook", "https://"]) {
      await urlField.fill(bad);
      await form.getByRole("button", { name: "Add notifier" }).click();
      await form.getByText("must start with http:// or https:// and a host").waitFor();
      assert.equal(await urlField.getAttribute("aria-invalid"), "true");
      assert.ok(await urlField.evaluate((el) => el === document.activeElement), "focus moves to the invalid field");
    }
    assert.equal((await api.get("/notifiers")).length, 1, "a bad URL adds nothing");
    assert.equal(await cards.count(), 1);

    // An error only the server can find (an unknown placeholder) is shown inline too.
    const hook = `${slack.url}/services/T000/B000/XXXXSECRET`;
    await urlField.fill(hook);
    assert.equal(await urlField.getAttribute("aria-invalid"), null, "typing clears the field's error");
    await form.getByLabel(/Message template/).fill("Run {run.hsh} needs you");
    await form.getByRole("button", { name: "Add notifier" }).click();
    await form.getByTestId("form-error").filter({ hasText: "unknown placeholder '{run.hsh}'" }).waitFor();
    assert.equal((await api.get("/notifiers")).length, 1, "a server-side error adds nothing");

    // A good URL: it is added and listed, its secret masked.
    await form.getByLabel(/Message template/).fill("");
    await form.getByLabel("Minimum level").selectOption("WARNING");
    await form.getByRole("button", { name: "Add notifier" }).click();
    await form.getByRole("status").filter({ hasText: "Added the Slack notifier." }).waitFor();
    const card = cards.filter({ has: page.locator(".ntype", { hasText: "Slack" }) });
    await card.waitFor();
    const listed = await api.get("/notifiers");
    const added = listed.find((n) => n.type === "slack");
    assert.ok(added, `the Slack notifier over HTTP: ${JSON.stringify(listed)}`);
    assert.equal(added.min_level, "WARNING");
    assert.equal(added.status, "enabled");
    const cardText = await card.innerText();
    assert.ok(!cardText.includes("XXXXSECRET"), `the secret is shown: ${cardText}`);
    assert.ok(cardText.includes(`${slack.url}/****`), `masked URL missing: ${cardText}`);
    assert.equal(await urlField.inputValue(), "", "the form is cleared");

    // Send test: the fake Slack receives it and the UI says so.
    await card.getByRole("button", { name: "Send test" }).click();
    await card.getByTestId("test-result").filter({ hasText: "Test message sent." }).waitFor();
    assert.equal(slack.requests.length, 1);
    assert.equal(slack.requests[0].method, "POST");
    assert.equal(slack.requests[0].url, "/services/T000/B000/XXXXSECRET");
    assert.equal(typeof slack.requests[0].json?.text, "string", `Slack gets {"text": …}: ${slack.requests[0].body}`);

    // A failing test shows the error inline.
    slack.answer = { status: 404, body: "no_service" };
    await card.getByRole("button", { name: "Send test" }).click();
    await card.getByTestId("test-result").filter({ hasText: "Test failed" }).waitFor();
    assert.match(await card.getByTestId("test-result").innerText(), /404|no_service/);
    assert.equal(slack.requests.length, 2);
    slack.answer = { status: 200, body: "ok" };

    // Disable: the status shows it, over HTTP too.
    const toggle = card.getByRole("switch", { name: "Enabled" });
    assert.equal(await toggle.getAttribute("aria-checked"), "true");
    await toggle.click();
    await card.getByTestId("notifier-status").filter({ hasText: "disabled" }).waitFor();
    assert.equal(await toggle.getAttribute("aria-checked"), "false");
    assert.equal((await api.get(`/notifiers/${added.id}`)).status, "disabled");

    // Remove: Escape cancels the confirmation; confirming removes it.
    await card.getByRole("button", { name: "Remove" }).click();
    const dialog = page.getByRole("dialog", { name: "Remove this notifier?" });
    await dialog.waitFor();
    await page.keyboard.press("Escape");
    await dialog.waitFor({ state: "hidden" });
    assert.equal(await card.count(), 1, "Escape keeps it");
    await card.getByRole("button", { name: "Remove" }).click();
    await dialog.waitFor();
    await dialog.getByRole("button", { name: "Remove" }).click();
    await card.waitFor({ state: "detached" });
    assert.equal(await cards.count(), 1);
    assert.ok(!(await api.get("/notifiers")).some((n) => n.id === added.id), "removed over HTTP too");

    // Only the expected 400 of the server-side validation reached the console.
    browser.assertNoProblems([/status of 400 \(Bad Request\).*\/api\/v1\/notifiers/]);
  });
});

test("a notification ingested over HTTP appears without a reload", { timeout: TEST_TIMEOUT }, async () => {
  await withSetup({}, async ({ daemon, browser, page, api }) => {
    await page.goto(daemon.url);
    await page.getByText("No pending notifications.").waitFor();
    await page.getByTestId("live").filter({ hasText: "Live" }).waitFor();
    await expectHeaderTotal(page, 0);
    let navigations = 0;
    page.on("framenavigated", (f) => {
      if (f === page.mainFrame()) navigations++;
    });
    await page.evaluate(() => (window.__marker = "same page"));

    const res = await fetch(`${daemon.base}/api/v1/events`, {
      method: "POST",
      headers: { Authorization: `Bearer ${daemon.token}`, "Content-Type": "application/json" },
      body: JSON.stringify({ run_id: "live-run", level: "ERROR", title: "Validation loss is NaN", message: "val_loss=nan at step 4200" }),
    });
    assert.equal(res.status, 200);
    const { id } = await res.json();

    await expectTitles(page, ["Validation loss is NaN"], "the new notification, live");
    await expectHeaderTotal(page, 1);
    await page.getByTestId("unread-error").filter({ hasText: "1 ERROR" }).waitFor();
    assert.equal(await page.evaluate(() => window.__marker), "same page", "the page was reloaded");

    // A change made elsewhere (an ack over HTTP) shows up too.
    await api.post(`/notifications/${id}/ack`);
    await page.getByText("No pending notifications.").waitFor();
    await expectHeaderTotal(page, 0);
    assert.equal(navigations, 0, "the page navigated");
    browser.assertNoProblems();
  });
});

test("deep link #/notifications/<id> opens that notification's details", { timeout: TEST_TIMEOUT }, async () => {
  await withSetup({}, async ({ daemon, browser, page, api }) => {
    const ids = await api.events(SEED);
    const details = page.getByTestId("details");

    // With the token in the same fragment (the token goes, the route stays).
    await page.goto(`${daemon.base}/#token=${daemon.token}&/notifications/${ids[3]}`);
    await details.getByRole("heading", { name: "Run crashed" }).waitFor();
    assert.equal(await details.getByTestId("details-body").textContent(), SEED[3].message);
    assert.equal(new URL(page.url()).hash, `#/notifications/${ids[3]}`);

    // With the token already stored: a plain deep link, as the desktop popup opens.
    const second = await browser.context.newPage();
    await second.goto(`${daemon.base}/#/notifications/${ids[2]}`);
    await second.getByTestId("details").getByRole("heading", { name: "CUDA out of memory" }).waitFor();
    await second.close();

    // Navigating the open page (a hash change) switches the details.
    await page.evaluate((id) => (location.hash = `#/notifications/${id}`), ids[0]);
    await details.getByRole("heading", { name: "Epoch 3 finished" }).waitFor();
    // Escape closes the details and the route follows.
    await page.keyboard.press("Escape");
    await details.waitFor({ state: "detached" });
    assert.equal(new URL(page.url()).hash, "#/notifications");

    // Tabs are deep-linkable too.
    await page.evaluate(() => (location.hash = "#/runs"));
    await page.getByRole("tab", { name: "Runs", selected: true }).waitFor();

    // An unknown id says so.
    await page.evaluate(() => (location.hash = "#/notifications/00000000-0000-0000-0000-000000000000"));
    await details.getByRole("heading", { name: "Notification not found" }).waitFor();
    await details.getByRole("alert").filter({ hasText: "no notification" }).waitFor();

    browser.assertNoProblems([/status of 404 \(Not Found\).*\/api\/v1\/notifications\/0000/]);
  });
});

test("Load more follows the cursor; live updates keep what was loaded", { timeout: TEST_TIMEOUT }, async () => {
  await withSetup({}, async ({ daemon, browser, page, api }) => {
    const events = Array.from({ length: 60 }, (_, i) => ({ run_id: "sweep-42", level: "INFO", title: `Trial ${i + 1} done`, message: `trial ${i + 1}` }));
    await api.events(events.slice(0, 30));
    await api.events(events.slice(30));
    await page.goto(daemon.url);
    const rows = page.locator(".nrow");
    await waitUntil(async () => (await rows.count()) === 50, "the first page of 50");
    await page.getByRole("button", { name: "Load more" }).click();
    await waitUntil(async () => (await rows.count()) === 60, "all 60 after Load more");
    await page.getByRole("button", { name: "Load more" }).waitFor({ state: "detached" });
    // No duplicates, nothing missing.
    const shown = new Set((await titles(page)));
    assert.equal(shown.size, 60);

    await api.events([{ run_id: "sweep-42", level: "WARNING", title: "Trial 61 diverged", message: "loss=inf" }]);
    await page.locator(".nrow").first().filter({ hasText: "Trial 61 diverged" }).waitFor();
    assert.equal(await rows.count(), 60, "a live refresh keeps as many rows as were loaded");
    await page.getByRole("button", { name: "Load more" }).waitFor();
    browser.assertNoProblems();
  });
});

test("the desktop app's injected API settings are used instead of the URL", { timeout: TEST_TIMEOUT }, async () => {
  await withSetup({}, async ({ daemon, browser, page, api }) => {
    const [id] = await api.events([{ run_id: "desk", level: "ERROR", title: "From the tray", message: "popup clicked" }]);
    await browser.context.addInitScript(
      ([base, token]) => {
        window.__RUNWATCH__ = { api: base, token };
      },
      [daemon.base, daemon.token],
    );
    // The page from another origin than the API, as in the app's webview (CORS, preflights).
    const port = new URL(daemon.base).port;
    await page.goto(`http://localhost:${port}/#/notifications/${id}`);
    await page.getByTestId("details").getByRole("heading", { name: "From the tray" }).waitFor();
    await page.getByTestId("live").filter({ hasText: "Live" }).waitFor();
    assert.equal(await page.evaluate(() => localStorage.getItem("runwatch.token")), null, "an injected token is not stored");
    // Writes work cross-origin too, and the stream brings the change back.
    await page.getByTestId("details").getByRole("button", { name: "Acknowledge", exact: true }).click();
    await expectHeaderTotal(page, 0);
    assert.equal((await api.summary()).total, 0);
    // The app's popup click sets the hash of the open window.
    const [id2] = await api.events([{ run_id: "desk", level: "CRITICAL", title: "Second popup", message: "clicked too" }]);
    await page.evaluate((x) => (location.hash = `#/notifications/${x}`), id2);
    await page.getByTestId("details").getByRole("heading", { name: "Second popup" }).waitFor();
    browser.assertNoProblems();
  });
});

test("without a token the page says how to open it", { timeout: TEST_TIMEOUT }, async () => {
  await withSetup({}, async ({ daemon, browser, page }) => {
    await page.goto(`${daemon.base}/#/notifications`);
    await page.getByText("use the link printed by").waitFor();
    await screenshot(page, "no-token");

    // A wrong token is refused with a clear message; pasting the right one connects.
    await page.goto(`${daemon.base}/#token=wrong-token`);
    await page.getByRole("alert").filter({ hasText: "was not accepted" }).waitFor();
    await page.getByLabel(/paste the token/).fill(daemon.url);
    await page.getByRole("button", { name: "Connect" }).click();
    await page.getByTestId("unread-total").waitFor();
    browser.assertNoProblems([/status of 401 \(Unauthorized\)/]);
  });
});

test("screenshots of every tab, the details pane and the dark theme", { timeout: TEST_TIMEOUT }, async () => {
  // No grace, set before the watcher starts, so a run that misses its 1 s check-in is stuck at once.
  const dataDir = tempDir("data-kept");
  const first = await startDaemon({ dataDir });
  try {
    await first.api.patch("/settings", { grace_secs: 0 });
  } finally {
    await first.stop();
  }
  const repo = aimRepo([
    { run: "4f2a9c1e8b7d4e0f9a6b3c21", idx: 7, flag: "check_in", expect: 600 },
    { run: "9b1c77aa02e64b5cb1f0d3e8", idx: 12, flag: "finished", expect: 0 },
    { run: "c0ffee12ab34cd56ef7890ab", idx: 3, flag: "check_in", expect: 120 },
    { run: "dead00beef11cafe22d00d33", idx: 5, flag: "check_in", expect: 1 },
  ]);
  try {
    await withSetup({ repo: repo.root, dataDir }, async ({ daemon, browser, page, api, defer }) => {
      const slack = await startFakeSlack();
      defer(() => slack.stop());
      await api.post("/notifiers", { type: "slack", config: { url: `${slack.url}/services/T0/B0/SECRET` }, min_level: "WARNING" });
      await api.post("/notifiers", {
        type: "webhook",
        config: { url: `${slack.url}/ntfy/runs`, headers: { Authorization: "Bearer abcdef123456" } },
        min_level: "ERROR",
      });
      const wp = await api.post("/notifiers", {
        type: "workplace",
        config: { group_id: "123456789", access_token: "EAAB-secret-token", base_url: slack.url, message: "⚠️ {run.hash}: {message}" },
        min_level: "CRITICAL",
      });
      await api.patch(`/notifiers/${wp.id}`, { status: "disabled" });
      await api.patch("/settings", { watched_repos: [repo.root, "/home/me/experiments/.aim"] });

      await api.events([
        ...SEED,
        { run_id: "vit-c3", level: "WARNING", title: "GPU temperature high", message: "GPU 2 at 87°C" },
        { run_id: "llama-ft-7b", level: "ERROR", title: "NaN in gradients", message: "grad_norm=nan at step 18400\n{'loss': nan}" },
        { run_id: "llama-ft-7b", level: "INFO", title: "Learning rate decayed", message: "lr 3e-4 -> 1.5e-4" },
      ]);
      await waitUntil(async () => (await api.get("/runs")).length === 8, "the repo's runs and the events' runs");
      await waitUntil(
        async () => (await api.get("/runs")).find((r) => r.id === "dead00beef11cafe22d00d33")?.state === "stuck",
        "the run that missed its check-in to be stuck",
      );

      await page.goto(daemon.url);
      await waitUntil(async () => (await page.locator(".nrow").count()) === 10, "ten notifications (nine sent, one stuck run)");
      await screenshot(page, "notifications");

      await page.locator(".nrow-main", { hasText: "NaN in gradients" }).click();
      const details = page.getByTestId("details");
      await details.getByRole("heading", { name: "NaN in gradients" }).waitFor();
      // Wait until every delivery has settled (sent), so the picture is stable.
      await waitUntil(async () => {
        const states = await details.locator("tbody .state").allTextContents();
        return states.length >= 2 && states.every((s) => s === "sent");
      }, "the deliveries of the ERROR notification to be sent", { timeout: 20_000 });
      await screenshot(page, "details");

      await page.getByTestId("theme").selectOption("dark");
      await waitUntil(() => page.evaluate(() => document.documentElement.dataset.theme === "dark"), "the dark theme");
      assert.equal(await page.evaluate(() => localStorage.getItem("runwatch.theme")), "dark");
      await screenshot(page, "details-dark");
      await page.keyboard.press("Escape");
      await details.waitFor({ state: "detached" });
      await screenshot(page, "notifications-dark");
      await page.getByTestId("theme").selectOption("light");

      // Tabs work from the keyboard: arrows move between them.
      await page.getByRole("tab", { name: /Notifications/ }).focus();
      await page.keyboard.press("ArrowRight");
      await page.getByRole("tab", { name: "Runs", selected: true }).waitFor();
      assert.ok(await page.getByRole("tab", { name: "Runs" }).evaluate((el) => el === document.activeElement));
      const table = page.getByTestId("runs-table");
      await table.waitFor();
      const running = table.locator("tr", { hasText: "4f2a9c1e8b7d4e0f9a6b3c21" });
      await running.locator(".state-running").waitFor();
      assert.match(await running.innerText(), /check_in\s*#7/);
      assert.match(await running.innerText(), /in \d+m( \d+s)?/);
      await table.locator("tr", { hasText: "9b1c77aa02e64b5cb1f0d3e8" }).locator(".state-finished").waitFor();
      const stuck = table.locator("tr", { hasText: "dead00beef11cafe22d00d33" });
      await stuck.locator(".state-stuck").waitFor();
      // A job on a cluster node that checked in over HTTP and failed: its host, labels and cause.
      await api.post("/check-ins", { run_id: "slurm-4242-3", expect_next_in: 600, host: "gpu-17", labels: { slurm_job_id: "4242", slurm_array_task_id: "3" } });
      await api.post("/check-ins", { run_id: "slurm-4242-3", failed: true, exit_code: 3, message: "RuntimeError: CUDA out of memory" });
      const remote = table.locator("tr", { hasText: "slurm-4242-3" });
      await remote.locator(".state-failed").waitFor();
      assert.equal(await remote.getByTestId("run-host").innerText(), "gpu-17");
      assert.match(await remote.innerText(), /slurm_job_id=4242/);
      assert.equal(await remote.getByTestId("run-cause").innerText(), "exit code 3");
      await screenshot(page, "runs");

      await page.getByRole("tab", { name: "Runs" }).focus();
      await page.keyboard.press("ArrowRight");
      await page.getByRole("tab", { name: "Notifiers", selected: true }).waitFor();
      await waitUntil(async () => (await page.locator("li.notifier").count()) === 4, "four notifiers");
      await screenshot(page, "notifiers");

      await page.getByRole("tab", { name: "Notifiers" }).focus();
      await page.keyboard.press("ArrowRight");
      await page.getByRole("tab", { name: "Silences", selected: true }).waitFor();
      await page.getByText("No silences.").waitFor();
      await page.getByRole("tab", { name: "Silences" }).focus();
      await page.keyboard.press("ArrowRight");
      await page.getByRole("tab", { name: "Settings", selected: true }).waitFor();
      const grace = page.getByLabel("Grace (seconds)");
      await waitUntil(async () => (await grace.inputValue()) === "0", "the settings form");
      assert.equal(await page.getByLabel(/Watched repositories/).inputValue(), `${repo.root}\n/home/me/experiments/.aim`);
      // A bad value is caught before saving; a good one is saved.
      await grace.fill("ten");
      await page.getByRole("button", { name: "Save" }).click();
      await page.getByText("Grace must be a whole number").waitFor();
      await grace.fill("300");
      // The server's bounds (from the generated client) and its path rule, before saving too.
      const rescan = page.getByLabel("Rescan (seconds)");
      assert.equal(await rescan.inputValue(), "300");
      await rescan.fill("0");
      await page.getByLabel(/Watched repositories/).fill(`${repo.root}\nexperiments/.aim`);
      await page.getByRole("button", { name: "Save" }).click();
      await page.getByText("Rescan must be a whole number of 1 or more").waitFor();
      await page.getByText('"experiments/.aim" is not an absolute path').waitFor();
      assert.equal((await api.get("/settings")).rescan_secs, 300, "nothing was sent");
      await rescan.fill("30");
      await page.getByLabel(/Watched repositories/).fill(`${repo.root}\n/home/me/experiments/.aim`);
      await page.getByLabel("Popup level").selectOption("WARNING");
      await page.getByRole("button", { name: "Save" }).click();
      await page.getByTestId("settings-result").filter({ hasText: "Settings saved." }).waitFor();
      const s = await api.get("/settings");
      assert.equal(s.grace_secs, 300);
      assert.equal(s.rescan_secs, 30);
      assert.equal(s.popup_level, "WARNING");
      await screenshot(page, "settings");

      browser.assertNoProblems();
    });
  } finally {
    repo.remove();
    rmSync(dataDir, { recursive: true, force: true });
  }
});

test("a followed server's notification shows its origin, filters by it, and an ack reaches the server", { timeout: TEST_TIMEOUT }, async () => {
  const server = await startDaemon();
  try {
    await withSetup({}, async ({ daemon, page, api, browser }) => {
      await api.post("/remotes", { name: "gpu-a", url: server.base, token: server.token });
      const [remoteId] = await server.api.events([{ level: "ERROR", title: "NCCL timeout on gpu-a", message: "rank 3 hung" }]);
      await api.events([{ level: "WARNING", title: "Laptop battery low", message: "12 %" }]);

      await page.goto(daemon.url);
      await expectTitles(page, ["gpu-a NCCL timeout on gpu-a", "Laptop battery low"], "the server's notification beside the local one");
      const row = page.locator(".nrow").filter({ hasText: "NCCL timeout" });
      assert.equal((await row.getByTestId("origin").textContent())?.trim(), "gpu-a");
      await screenshot(page, "notifications-origin");

      await page.getByLabel("Origin").selectOption("local");
      await expectTitles(page, ["Laptop battery low"], "this instance's own only");
      await page.getByLabel("Origin").selectOption("gpu-a");
      await expectTitles(page, ["gpu-a NCCL timeout on gpu-a"], "the server's only");

      await row.getByRole("button", { name: "Acknowledge “NCCL timeout on gpu-a”" }).click();
      await waitUntil(async () => (await server.api.get(`/notifications/${remoteId}`)).notification.acked_at !== null, "the ack on the server");
      browser.assertNoProblems();
    });
  } finally {
    await server.stop();
  }
});

test("Settings → Servers: follow a server, see it connected, disable and remove it", { timeout: TEST_TIMEOUT }, async () => {
  const server = await startDaemon();
  try {
    await withSetup({}, async ({ daemon, page, browser, api }) => {
      await page.goto(daemon.url);
      await page.getByRole("tab", { name: "Settings" }).click();
      const servers = page.getByTestId("servers");
      await servers.getByText("No servers are followed.").waitFor();

      // How long a server may be away before one warning says so: a setting like the others.
      const unreachable = page.getByLabel("Server unreachable warning (seconds)");
      await waitUntil(async () => (await unreachable.inputValue()) === "300", "the default of 5 minutes");
      await unreachable.fill("120");
      // Following Slurm jobs: a toggle and how long before a job's time limit to warn.
      const slurm = page.getByLabel("Follow my Slurm jobs");
      assert.equal(await slurm.isChecked(), false);
      await slurm.check();
      const nearLimit = page.getByLabel("Slurm time limit warning (seconds before)");
      assert.equal(await nearLimit.inputValue(), "600");
      await nearLimit.fill("soon");
      await page.getByRole("button", { name: "Save" }).click();
      await page.getByText("The time limit warning must be a whole number").waitFor();
      await nearLimit.fill("900");
      await page.getByRole("button", { name: "Save" }).click();
      await page.getByTestId("settings-result").filter({ hasText: "Settings saved." }).waitFor();
      const saved = await api.get("/settings");
      assert.equal(saved.unreachable_warn_secs, 120);
      assert.equal(saved.slurm_enabled, true);
      assert.equal(saved.slurm_near_limit_secs, 900);

      // A token in clear text over a network is refused, in words.
      await servers.getByLabel("Name").fill("gpu-a");
      await servers.getByLabel("URL").fill("http://gpu-a.lab:8747");
      await servers.getByLabel("Token").fill("x");
      await servers.getByRole("button", { name: "Follow" }).click();
      await servers.getByTestId("servers-result").filter({ hasText: "clear text" }).waitFor();

      await servers.getByLabel("URL").fill(server.base);
      await servers.getByLabel("Token").fill(server.token);
      await servers.getByRole("button", { name: "Follow" }).click();
      await servers.getByTestId("servers-result").filter({ hasText: "Following gpu-a." }).waitFor();
      const row = servers.locator('tr[data-name="gpu-a"]');
      await row.locator('[data-state="connected"]').waitFor();
      assert.ok(!(await servers.textContent()).includes(server.token), "the token is not shown");
      await screenshot(page, "settings-servers");

      await row.getByRole("button", { name: "Disable" }).click();
      await row.locator('[data-state="disabled"]').waitFor();
      await row.getByRole("button", { name: "Remove" }).click();
      await page.getByRole("dialog").getByRole("button", { name: "Remove" }).click();
      await servers.getByText("No servers are followed.").waitFor();
      // The refused one, on purpose.
      browser.assertNoProblems([/status of 400 \(Bad Request\) \(http:\/\/127\.0\.0\.1:\d+\/api\/v1\/remotes\)/]);
    });
  } finally {
    await server.stop();
  }
});

test("snooze and unsnooze from the list and the details", { timeout: TEST_TIMEOUT }, async () => {
  await withSetup({}, async ({ daemon, browser, page, api }) => {
    const [nan] = await api.events([
      { run_id: "resnet-a1", level: "ERROR", title: "Loss is NaN", message: "loss=nan at step 1200" },
      { run_id: "bert-b2", level: "WARNING", title: "Disk almost full", message: "92 % used" },
    ]);
    await page.goto(daemon.url);
    await expectTitles(page, ["Disk almost full", "Loss is NaN"], "both pending");
    await expectHeaderTotal(page, 2);

    await page.getByRole("button", { name: "Snooze “Loss is NaN” for 1 hour" }).click();
    await expectTitles(page, ["Disk almost full"], "the snoozed one out of the pending list");
    await expectHeaderTotal(page, 1);
    const snoozed = (await api.get("/notifications?state=snoozed")).items;
    assert.deepEqual(snoozed.map((n) => n.id), [nan]);
    assert.ok(snoozed[0].snoozed_until - Date.now() > 3_500_000, "for an hour");

    await showButton(page, "Snoozed").click();
    await expectTitles(page, ["Loss is NaN"], "the snoozed list");
    await page.getByTestId("snoozed").first().waitFor();
    await screenshot(page, "snoozed");
    await page.getByRole("button", { name: "Unsnooze “Loss is NaN”" }).click();
    await page.getByText("No snoozed notifications.").waitFor();
    await expectHeaderTotal(page, 2);
    await showButton(page, "Pending").click();
    await expectTitles(page, ["Disk almost full", "Loss is NaN"], "back in the pending list");

    // From the details pane: until the run changes state.
    await page.locator(".nrow", { hasText: "Loss is NaN" }).locator(".nrow-main").click();
    await page.getByTestId("details").getByRole("button", { name: "Snooze until the run changes" }).click();
    await page.getByTestId("details").getByText("Snoozed until its run changes state").waitFor();
    await expectHeaderTotal(page, 1);
    await page.getByTestId("details").getByRole("button", { name: "Unsnooze" }).click();
    await expectHeaderTotal(page, 2);
    // The whole run, for an hour: what it reports meanwhile is snoozed too.
    await page.getByTestId("details").getByRole("button", { name: "Snooze the run 1 h" }).click();
    await expectHeaderTotal(page, 1);
    await api.events([{ run_id: "resnet-a1", level: "ERROR", title: "Loss is NaN again", message: "loss=nan at step 1300" }]);
    assert.equal((await api.summary()).total, 1, "the run's new notification arrived snoozed");
    browser.assertNoProblems();
  });
});

test("silences: create one, see what it silenced, expire it", { timeout: TEST_TIMEOUT }, async () => {
  await withSetup({}, async ({ daemon, browser, page, api }) => {
    await page.goto(`${daemon.url}&/silences`);
    await page.getByText("No silences.").waitFor();
    // A bad matcher is refused with the server's one line.
    await page.getByLabel("Matchers (one a line; all must match)").fill("colour=red");
    await page.getByRole("button", { name: "Add silence" }).click();
    await page.getByTestId("silence-error").filter({ hasText: "unknown matcher field 'colour'" }).waitFor();

    await page.getByLabel("Matchers (one a line; all must match)").fill("run=resnet-a1\nlevel<=WARNING");
    await page.getByLabel("For (hours)").fill("2");
    await page.getByLabel("Comment").fill("known plateau");
    await page.getByRole("button", { name: "Add silence" }).click();
    const row = page.getByTestId("silences-table").locator("tbody tr");
    await row.filter({ hasText: "run=resnet-a1  level<=WARNING" }).filter({ hasText: "active" }).waitFor();
    await row.filter({ hasText: "known plateau" }).waitFor();
    await screenshot(page, "silences");

    await api.events([
      { run_id: "resnet-a1", level: "WARNING", title: "Loss plateaued", message: "no improvement for 5 epochs" },
      { run_id: "resnet-a1", level: "ERROR", title: "Loss is NaN", message: "loss=nan" },
    ]);
    const silenced = (await api.get("/notifications?state=silenced")).items.map((n) => n.title);
    assert.deepEqual(silenced, ["Loss plateaued"]);
    assert.equal((await api.summary()).total, 1, "the silenced one is not pending");
    await page.getByRole("tab", { name: "Notifications" }).click();
    await expectTitles(page, ["Loss is NaN"], "only the unsilenced one pending");
    await showButton(page, "Silenced").click();
    await expectTitles(page, ["Loss plateaued"], "the silenced list");
    await page.getByTestId("silenced").first().waitFor();

    await page.getByRole("tab", { name: "Silences" }).click();
    await page.getByRole("button", { name: "Expire the silence run=resnet-a1  level<=WARNING" }).click();
    await row.filter({ hasText: "expired" }).waitFor();
    await screenshot(page, "silence-expired");
    await api.events([{ run_id: "resnet-a1", level: "WARNING", title: "Loss plateaued again", message: "still" }]);
    assert.equal((await api.summary()).total, 2, "after the silence, news again");
    // The refused matcher's 400 is the only problem the page reported.
    browser.assertNoProblems([/status of 400/]);
  });
});

test("notifiers: delay and repeat from the Notifiers page", { timeout: TEST_TIMEOUT }, async () => {
  await withSetup({}, async ({ daemon, browser, page, api }) => {
    const n = await api.post("/notifiers", { type: "logger", config: {} });
    await page.goto(`${daemon.url}&/notifiers`);
    const card = page.locator(`li.notifier[data-id="${n.id}"]`);
    await card.getByTestId("notifier-rules").filter({ hasText: "at once" }).waitFor();
    await card.getByText("Delay and repeat").click();
    await card.getByLabel("Delay (minutes)").fill("15");
    await card.getByLabel("Repeat every (minutes)").fill("60");
    await card.getByRole("button", { name: "Save rules" }).click();
    await card.getByTestId("notifier-rules").filter({ hasText: "after 15 min if still unacknowledged · again every 1 h until acknowledged" }).waitFor();
    assert.deepEqual((await api.get(`/notifiers/${n.id}`)).rules, { delay_ms: 900_000, repeat_ms: 3_600_000 });
    await screenshot(page, "notifier-rules");
    await card.getByLabel("Delay (minutes)").fill("0");
    await card.getByRole("button", { name: "Save rules" }).click();
    await card.getByTestId("notifier-rules").filter({ hasText: /^Sends: again every 1 h until acknowledged$/ }).waitFor();
    assert.deepEqual((await api.get(`/notifiers/${n.id}`)).rules, { repeat_ms: 3_600_000 });
    browser.assertNoProblems();
  });
});

test("settings: the group window and the popups' quiet hours", { timeout: TEST_TIMEOUT }, async () => {
  await withSetup({}, async ({ daemon, browser, page, api }) => {
    await page.goto(`${daemon.url}&/settings`);
    const window = page.getByLabel("Group window (seconds)");
    await waitUntil(async () => (await window.inputValue()) === "30", "the default window");
    await window.fill("12");
    await page.getByLabel("Popup quiet hours").fill("22:00-7:00");
    await page.getByRole("button", { name: "Save" }).click();
    await page.getByText("Quiet hours are HH:MM-HH:MM").waitFor();
    await page.getByLabel("Popup quiet hours").fill("22:00-07:00");
    await page.getByLabel("Passes quiet hours").selectOption("ERROR");
    await page.getByRole("button", { name: "Save" }).click();
    await page.getByTestId("settings-result").filter({ hasText: "Settings saved." }).waitFor();
    let s = await api.get("/settings");
    assert.equal(s.group_window_secs, 12);
    assert.deepEqual(s.popup_quiet_hours, { start: "22:00", end: "07:00", days: [], pass: "ERROR" });
    await page.getByLabel("Popup quiet hours").fill("");
    await page.getByRole("button", { name: "Save" }).click();
    await waitUntil(async () => (await api.get("/settings")).popup_quiet_hours === null, "quiet hours off");
    browser.assertNoProblems();
  });
});
