#!/usr/bin/env node
// Real-browser test of qgate's admin console. Run it through scripts/console-test, which starts
// the server and sets the environment:
//   QGATE_BASE / QGATE_ADMIN   http://host:port of the data and admin listeners
//   QGATE_ADMIN_TOKEN          an admin token
//   QGATE_AK / QGATE_SK        an MNS access key pair of tenant QGATE_TENANT
//   QGATE_BEARER               an infrai bearer key of the same tenant
//   QGATE_SLASH_TENANT / QGATE_SLASH_BEARER   a second tenant whose name contains "/"
//   QGATE_PY                   a python with the official MNS SDK (aliyun-mns 1.1.5)
//   CHROMIUM                   Debian's chromium (default /usr/bin/chromium)
// Queues are set up through the official MNS Python SDK and the infrai API; everything else is
// done by clicking in the console (Debian's Chromium driven by playwright-core). Prints one
// `PASS name` / `FAIL name: reason` line per check and exits 1 if any failed. Screenshots go to
// tests/console/artifacts/.
"use strict";
const { chromium } = require("playwright-core");
const { spawnSync } = require("child_process");
const fs = require("fs");
const path = require("path");

const env = (k, d) => {
  const v = process.env[k] || d;
  if (v === undefined) { console.log(`FAIL setup: ${k} is not set (run scripts/console-test)`); process.exit(1); }
  return v;
};
const BASE = env("QGATE_BASE").replace(/\/$/, "");
const ADMIN = env("QGATE_ADMIN").replace(/\/$/, "");
const TOKEN = env("QGATE_ADMIN_TOKEN");
const TENANT = env("QGATE_TENANT", "console");
const BEARER = env("QGATE_BEARER");
const SLASH_TENANT = env("QGATE_SLASH_TENANT");
const SLASH_BEARER = env("QGATE_SLASH_BEARER");
const PY = env("QGATE_PY");
const CHROMIUM = env("CHROMIUM", "/usr/bin/chromium");
const ARTIFACTS = path.join(__dirname, "artifacts");
const TOKEN_KEY = "qgate.console.token"; // app.js keeps the token under this sessionStorage key
// The console files as the binary embeds them (include_str!), and where they are served.
const CONSOLE_SRC = path.join(__dirname, "..", "..", "src", "admin", "console");
const ASSETS = [["/", "index.html"], ["/console/app.js", "app.js"], ["/console/style.css", "style.css"]];
// Development only: QGATE_CONSOLE_FROM_SRC=1 gives the browser the files of src/admin/console/
// (with the server's own headers) instead of the binary's, to try console changes without a
// rebuild. The check above still fails while the binary's files differ.
const FROM_SRC = process.env.QGATE_CONSOLE_FROM_SRC === "1";
const WAIT = 10000; // ms for any one thing to show up (the console polls every 2 s)

const BODIES = [
  "console message 1",
  'console message 2 {"k": "v", "n": 2}',
  '<img src=x onerror="window.__xss=1"><b>not bold</b> & "quotes"',
];

let passed = 0, failed = 0;
let page = null;
const pageErrors = [];
const dialogs = [];
let dialogAction = "dismiss";

const oneLine = (e) => String(e && e.message ? e.message : e).split("\n").filter(Boolean).slice(0, 3).join(" | ").slice(0, 500);
const slug = (s) => s.replace(/[^a-z0-9]+/gi, "-").replace(/^-|-$/g, "").toLowerCase().slice(0, 60);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function shot(name) {
  if (!page) return;
  try { await page.screenshot({ path: path.join(ARTIFACTS, name + ".png"), fullPage: true }); } catch (e) { /* page gone */ }
}

async function check(name, fn) {
  try {
    await fn();
    passed++;
    console.log("PASS " + name);
  } catch (e) {
    failed++;
    console.log("FAIL " + name + ": " + oneLine(e));
    await shot("fail-" + slug(name));
  }
}

function assert(cond, msg) { if (!cond) throw new Error(msg); }
function eq(got, want, what) {
  if (JSON.stringify(got) !== JSON.stringify(want)) throw new Error(`${what}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
}

// ------------------------------------------------------------------------- HTTP helpers

async function http(url, { method = "GET", headers = {}, body } = {}) {
  const init = { method, headers: { ...headers } };
  if (body !== undefined) { init.headers["content-type"] = "application/json"; init.body = JSON.stringify(body); }
  const res = await fetch(url, init);
  const text = await res.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch (e) { json = null; }
  return { status: res.status, headers: res.headers, text, json };
}
const admin = (p, opts = {}) => http(ADMIN + p, { ...opts, headers: { authorization: "Bearer " + TOKEN, ...(opts.headers || {}) } });
const infrai = (p, body, bearer = BEARER, method = "POST") => http(BASE + p, { method, body, headers: { authorization: "Bearer " + bearer } });
const qpath = (t, n) => "/api/v1/queues/" + encodeURIComponent(t) + "/" + encodeURIComponent(n);

async function infraiOk(p, body, bearer) {
  const r = await infrai(p, body, bearer);
  if (r.status < 200 || r.status > 299) throw new Error(`infrai ${p} ${JSON.stringify(body)} -> ${r.status} ${r.text.slice(0, 200)}`);
  return r.json;
}
async function adminQueue(t, n) {
  const r = await admin(qpath(t, n));
  if (r.status !== 200) throw new Error(`admin GET ${qpath(t, n)} -> ${r.status} ${r.text.slice(0, 200)}`);
  return r.json.queue;
}
// Lease one message of `queue` and nack it without requeue: it becomes a dead letter at once.
async function deadLetterOne(queue) {
  const c = await infraiOk("/v1/queue/consume", { queue, max_messages: 1, visibility_timeout: 30 });
  assert(c.messages && c.messages.length === 1, `consume from ${queue} returned ${JSON.stringify(c)}`);
  const n = await infraiOk("/v1/queue/nack", { queue, message_id: c.messages[0].message_id, requeue: false });
  assert(n.requeued === false, `nack answered ${JSON.stringify(n)}`);
  return c.messages[0].message_id;
}

// ------------------------------------------------------------------------- page helpers

async function waitText(sel, want, timeout = WAIT) {
  try {
    await page.waitForFunction(([s, w]) => { const e = document.querySelector(s); return !!e && e.textContent.trim() === w; }, [sel, want], { timeout, polling: 100 });
  } catch (e) {
    const got = await page.$eval(sel, (e) => e.textContent.trim()).catch(() => "(no element)");
    throw new Error(`${sel} did not become ${JSON.stringify(want)} within ${timeout} ms (it is ${JSON.stringify(got)})`);
  }
}
async function waitVisible(sel, timeout = WAIT) { await page.waitForSelector(sel, { state: "visible", timeout }); }
async function waitCount(sel, n, timeout = WAIT) {
  try {
    await page.waitForFunction(([s, k]) => document.querySelectorAll(s).length === k, [sel, n], { timeout, polling: 100 });
  } catch (e) {
    const got = await page.$$eval(sel, (l) => l.length);
    throw new Error(`expected ${n} of ${sel} within ${timeout} ms, there are ${got}`);
  }
}
const queueRows = () => page.$$eval("#queue-rows tr", (rows) => rows.map((r) => {
  const o = { tenant: r.dataset.tenant, name: r.dataset.name };
  r.querySelectorAll("td[data-col]").forEach((td) => { o[td.dataset.col] = td.textContent.trim(); });
  return o;
}));
async function filterTo(text, wantRows) {
  await page.fill("#queue-filter", text);
  await waitCount("#queue-rows tr", wantRows);
}
async function openFromOverview(tenant, name) {
  await page.evaluate(() => { location.hash = "#/"; });
  await waitVisible("#overview-view");
  await filterTo(name, 1);
  await page.click(`#queue-rows tr[data-name="${name}"] a`);
  await waitVisible("#queue-view");
  await waitText("#q-name", name);
  await waitText("#q-tenant", tenant);
  await page.waitForSelector('#queue-view[data-loaded="true"]', { timeout: WAIT });
}
async function withDialog(action, fn) {
  const before = dialogs.length;
  dialogAction = action;
  try { await fn(); } finally { /* keep action until the dialog came */ }
  const t0 = Date.now();
  while (dialogs.length === before && Date.now() - t0 < 3000) await sleep(20);
  dialogAction = "dismiss";
  assert(dialogs.length > before, "no confirmation dialog was shown");
  return dialogs[dialogs.length - 1];
}

// ------------------------------------------------------------------------- the run

async function main() {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  for (const f of fs.readdirSync(ARTIFACTS)) if (f.endsWith(".png")) fs.unlinkSync(path.join(ARTIFACTS, f));

  // --- the admin API as the console relies on it
  await check("api: console assets are served (/, /console/app.js, /console/style.css)", async () => {
    for (const [p, type] of [["/", "text/html"], ["/console/app.js", "javascript"], ["/console/style.css", "text/css"]]) {
      const r = await http(ADMIN + p);
      eq(r.status, 200, "GET " + p);
      assert((r.headers.get("content-type") || "").includes(type), `GET ${p}: content-type ${r.headers.get("content-type")}`);
    }
  });
  await check("api: the binary serves this tree's console files (else rebuild it)", async () => {
    const stale = [];
    for (const [p, f] of ASSETS) {
      const r = await http(ADMIN + p);
      if (r.text !== fs.readFileSync(path.join(CONSOLE_SRC, f), "utf8")) stale.push(f);
    }
    assert(stale.length === 0, `the server's ${stale.join(", ")} differ from src/admin/console/: the binary was built from other files (cargo build --release)` +
      (FROM_SRC ? "; the browser gets the files from src/admin/console/ (QGATE_CONSOLE_FROM_SRC=1)" : ""));
  });
  await check("api: no token or a wrong token is 401 UNAUTHORIZED", async () => {
    for (const h of [{}, { authorization: "Bearer wrong-token" }]) {
      const r = await http(ADMIN + "/api/v1/overview", { headers: h });
      eq(r.status, 401, "status " + JSON.stringify(h));
      eq(r.json && r.json.error && r.json.error.code, "UNAUTHORIZED", "error.code");
    }
  });

  // --- set-up through the vendors' APIs
  await check("setup: official MNS Python SDK creates console-q and sends 3 messages", async () => {
    const code = [
      "import json, os, sys",
      "out = sys.stdout; sys.stdout = open(os.devnull, 'w')  # the SDK prints its secret",
      "from mns.account import Account",
      "from mns.queue import QueueMeta, Message",
      "acc = Account(os.environ['QGATE_BASE'], os.environ['QGATE_AK'], os.environ['QGATE_SK'])",
      "q = acc.get_queue('console-q')",
      "q.create(QueueMeta())",
      "ids = [q.send_message(Message(b)).message_id for b in json.loads(os.environ['BODIES'])]",
      "out.write(json.dumps(ids))",
    ].join("\n");
    const r = spawnSync(PY, ["-c", code], { env: { ...process.env, BODIES: JSON.stringify(BODIES) }, encoding: "utf8", timeout: 30000 });
    assert(r.status === 0, `python exited ${r.status}: ${(r.stderr || "").trim().split("\n").slice(-3).join(" | ")}`);
    const ids = JSON.parse(r.stdout);
    eq(ids.length, 3, "message ids");
    eq((await adminQueue(TENANT, "console-q")).ready, 3, "admin API ready of console-q");
  });
  await check("setup: infrai dead letter (console-dlq-src -> console-dlq, nack without requeue)", async () => {
    await infraiOk("/v1/queue/create", { name: "console-dlq" });
    await infraiOk("/v1/queue/create", { name: "console-dlq-src", dead_letter_queue: "console-dlq", max_retries: 1 });
    await infraiOk("/v1/queue/publish", { queue: "console-dlq-src", payload: { n: 1 } });
    await deadLetterOne("console-dlq-src");
    const q = await adminQueue(TENANT, "console-dlq-src");
    eq([q.ready, q.dead], [0, 1], "admin API [ready, dead] of console-dlq-src");
  });
  await check("setup: infrai queues console-rate and, in tenant " + SLASH_TENANT + ", slash-q", async () => {
    await infraiOk("/v1/queue/create", { name: "console-rate" });
    await infraiOk("/v1/queue/create", { name: "slash-q" }, SLASH_BEARER);
    await infraiOk("/v1/queue/publish", { queue: "slash-q", payload: "in a tenant with a slash" }, SLASH_BEARER);
  });
  await check("api: unknown queue is 404 NOT_FOUND, peek limit 0 or 101 is 400 INVALID_ARGUMENT", async () => {
    let r = await admin(qpath(TENANT, "no-such-queue"));
    eq([r.status, r.json && r.json.error && r.json.error.code], [404, "NOT_FOUND"], "unknown queue");
    for (const l of [0, 101]) {
      r = await admin(qpath(TENANT, "console-q") + "/messages?limit=" + l);
      eq([r.status, r.json && r.json.error && r.json.error.code], [400, "INVALID_ARGUMENT"], "limit=" + l);
    }
    r = await admin(qpath(SLASH_TENANT, "slash-q"));
    eq([r.status, r.json && r.json.queue && r.json.queue.tenant], [200, SLASH_TENANT], "a tenant with '/' (percent-encoded)");
  });

  // --- the browser
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  try {
    const ctx = await browser.newContext({ viewport: { width: 1360, height: 900 } });
    page = await ctx.newPage();
    page.setDefaultTimeout(WAIT);
    page.on("pageerror", (e) => pageErrors.push(oneLine(e)));
    page.on("dialog", (d) => { dialogs.push(d.message()); (dialogAction === "accept" ? d.accept() : d.dismiss()).catch(() => {}); });
    // Offline: the console may load nothing but its own server's files.
    const foreign = [];
    await page.route("**/*", (route) => {
      const u = route.request().url();
      if (u.startsWith(ADMIN + "/") || u === ADMIN) {
        const asset = FROM_SRC && ASSETS.find(([p]) => ADMIN + p === u.split("#")[0]);
        if (!asset) return route.continue();
        return route.fetch().then((res) => route.fulfill({ response: res, body: fs.readFileSync(path.join(CONSOLE_SRC, asset[1]), "utf8") }));
      }
      foreign.push(u);
      return route.abort();
    });

    await check("login: the console asks for the admin token", async () => {
      await page.goto(ADMIN + "/");
      await waitVisible("#login-form");
      assert(await page.isHidden("#overview-view"), "the overview is visible before login");
      await shot("01-login");
    });
    await check("login: a wrong token is refused with a message", async () => {
      await page.fill("#login-token", "wrong-token");
      await page.click("#login-submit");
      await waitVisible("#login-error");
      const msg = await page.textContent("#login-error");
      assert(/refused/i.test(msg) && /401/.test(msg), "login error says: " + msg);
      assert(await page.isHidden("#overview-view"), "the overview is visible");
      eq(await page.evaluate((k) => sessionStorage.getItem(k), TOKEN_KEY), null, "stored token");
      await shot("02-login-refused");
    });
    await check("login: the admin token opens the overview (kept in sessionStorage)", async () => {
      await page.fill("#login-token", TOKEN);
      await page.click("#login-submit");
      await waitVisible("#overview-view");
      await page.waitForSelector('#queue-rows tr[data-name="console-q"]');
      assert(await page.isHidden("#login-error"), "the login error is still shown");
      eq(await page.evaluate((k) => sessionStorage.getItem(k), TOKEN_KEY), TOKEN, "stored token");
    });
    await check("overview: every queue of every tenant, with depth by state", async () => {
      await page.fill("#queue-filter", "");
      await waitCount("#queue-rows tr", 5);
      const rows = await queueRows();
      const names = rows.map((r) => r.tenant + "|" + r.name).sort();
      eq(names, ["console|console-dlq", "console|console-dlq-src", "console|console-q", "console|console-rate", SLASH_TENANT + "|slash-q"], "rows");
      const cq = rows.find((r) => r.name === "console-q");
      eq([cq.ready, cq.in_flight, cq.delayed, cq.dead], ["3", "0", "0", "0"], "console-q ready/in flight/delayed/dead");
      const src = rows.find((r) => r.name === "console-dlq-src");
      eq([src.ready, src.dead], ["0", "1"], "console-dlq-src ready/dead");
      await waitText("#sum-tenants", "2");
      await waitText("#sum-queues", "5");
      await shot("03-overview");
    });
    await check("overview: sorting by clicking the headers", async () => {
      const col = async (c) => (await queueRows()).map((r) => r[c]);
      await page.click('#queue-table th[data-sort="name"]');
      let names = await col("name");
      eq(names, [...names].sort(), "ascending by name");
      await page.click('#queue-table th[data-sort="name"]');
      names = await col("name");
      eq(names, [...names].sort().reverse(), "descending by name");
      eq(await page.getAttribute('#queue-table th[data-sort="name"]', "aria-sort"), "descending", "aria-sort");
      await page.click('#queue-table th[data-sort="ready"]');
      await page.click('#queue-table th[data-sort="ready"]');
      const ready = (await col("ready")).map(Number);
      eq(ready, [...ready].sort((a, b) => b - a), "descending by ready");
      eq((await queueRows())[0].name, "console-q", "the deepest queue first");
    });
    await check("overview: the filter box narrows by tenant or name", async () => {
      await filterTo("team/", 1);
      eq((await queueRows())[0].name, "slash-q", "filter team/");
      await filterTo("console-q", 1);
      const [r] = await queueRows();
      eq([r.tenant, r.name, r.ready], [TENANT, "console-q", "3"], "filter console-q");
      await shot("04-overview-filtered");
    });
    await check("overview: live publish and ack rates (msg/s) from the totals", async () => {
      await filterTo("console-rate", 1);
      await page.waitForTimeout(2200); // a first sample of the totals
      await infraiOk("/v1/queue/publish_batch", { queue: "console-rate", messages: Array.from({ length: 10 }, (_, i) => ({ payload: { i } })) });
      const positive = async (c) => page.waitForFunction((col) => {
        const td = document.querySelector(`#queue-rows tr[data-name="console-rate"] td[data-col="${col}"]`);
        return td && parseFloat(td.textContent) > 0;
      }, c, { timeout: WAIT, polling: 100 });
      await positive("publish_rate");
      const c = await infraiOk("/v1/queue/consume", { queue: "console-rate", max_messages: 10, visibility_timeout: 30 });
      for (const m of c.messages) await infraiOk("/v1/queue/ack", { queue: "console-rate", message_id: m.message_id });
      await positive("ack_rate");
      await shot("05-overview-rates");
    });

    await check("queue page: clicking a queue opens it (#/queues/{tenant}/{name}) with depth 3", async () => {
      await openFromOverview(TENANT, "console-q");
      eq(await page.evaluate(() => location.hash), "#/queues/console/console-q", "hash");
      await waitText("#q-ready", "3");
      await waitText("#q-dead", "0");
      await waitText("#q-kind", "standard");
    });
    await check("queue page: attributes", async () => {
      const kv = await page.$$eval("#q-attributes tr", (rows) => Object.fromEntries(rows.map((r) => [r.dataset.key, r.querySelector("td").textContent])));
      const q = await adminQueue(TENANT, "console-q");
      eq(kv.id, q.id, "id");
      assert(kv.visibility_timeout_secs.includes(q.config.visibility_timeout_secs + " s"), "visibility timeout shows " + kv.visibility_timeout_secs);
      assert(kv.max_message_bytes.includes(q.config.max_message_bytes.toLocaleString("en-US") + " bytes"), "max message size shows " + kv.max_message_bytes);
      assert(/^none/.test(kv.dead_letter), "dead-letter policy shows " + kv.dead_letter);
    });
    await check("queue page: peek shows the bodies (as text), size and delivery count", async () => {
      await waitCount("#peek-rows tr", 3);
      const rows = await page.$$eval("#peek-rows tr", (rs) => rs.map((r) => ({
        body: r.querySelector("td[data-col=body] pre").textContent,
        deliveries: r.querySelector("td[data-col=deliveries]").textContent,
      })));
      eq(rows.map((r) => r.body).sort(), [...BODIES].sort(), "bodies");
      eq(rows.map((r) => r.deliveries), ["0", "0", "0"], "delivery counts");
      eq(await page.$$eval("#peek-rows img, #peek-rows b", (l) => l.length), 0, "elements made from a body");
      eq(await page.evaluate(() => window.__xss), undefined, "window.__xss set by a body");
      await shot("06-queue-peek");
    });
    await check("queue page: Purge asks first, and Cancel keeps the messages", async () => {
      const msg = await withDialog("dismiss", () => page.click("#btn-purge"));
      assert(/purge/i.test(msg) && msg.includes("console-q"), "confirmation says: " + msg);
      await sleep(300);
      eq((await adminQueue(TENANT, "console-q")).ready, 3, "ready after Cancel");
    });
    await check("queue page: Purge with confirmation empties the queue (depth 0)", async () => {
      await withDialog("accept", () => page.click("#btn-purge"));
      await waitText("#q-ready", "0");
      await waitVisible("#peek-empty");
      assert(/Purged 3 messages/.test(await page.textContent("#flash")), "flash: " + (await page.textContent("#flash")));
      await shot("07-queue-purged");
    });
    await check("queue page: live update (messages published elsewhere show up by themselves)", async () => {
      await infraiOk("/v1/queue/publish", { queue: "console-q", payload: { live: 1 } });
      await infraiOk("/v1/queue/publish", { queue: "console-q", payload: { live: 2 } });
      await waitText("#q-ready", "2");
      await waitCount("#peek-rows tr", 2);
    });
    await check("queue page: a tenant whose name has a '/'", async () => {
      await openFromOverview(SLASH_TENANT, "slash-q");
      eq(await page.evaluate(() => location.hash), "#/queues/team%2Fa/slash-q", "hash");
      await waitText("#q-ready", "1");
      await waitCount("#peek-rows tr", 1);
    });

    await check("dead letters: listed on their source queue (reason, kept in)", async () => {
      await openFromOverview(TENANT, "console-dlq-src");
      await waitText("#q-dead", "1");
      await waitText("#q-ready", "0");
      await waitCount("#dl-rows tr", 1);
      const row = await page.$eval("#dl-rows tr", (r) => ({
        reason: r.querySelector("td[data-col=reason]").textContent, kept: r.querySelector("td[data-col=kept_in]").textContent,
        body: r.querySelector("td[data-col=body] pre").textContent,
      }));
      eq(row.reason, "nacked", "reason");
      eq(row.kept, "console-dlq", "kept in");
      eq(JSON.parse(row.body), { n: 1 }, "body");
      await shot("08-dead-letters");
    });
    await check("dead letters: Redrive selected puts it back (1 ready again)", async () => {
      assert(await page.isDisabled("#btn-dl-redrive-selected"), "Redrive selected is enabled with nothing selected");
      await page.check("#dl-rows input.dl-select");
      await page.click("#btn-dl-redrive-selected");
      await waitText("#q-ready", "1");
      await waitText("#q-dead", "0");
      await waitVisible("#dl-empty");
      eq((await adminQueue(TENANT, "console-dlq")).ready, 0, "ready of console-dlq (where it was kept)");
      await shot("09-redriven");
    });
    await check("dead letters: Redrive all", async () => {
      await infraiOk("/v1/queue/publish", { queue: "console-dlq-src", payload: { n: 2 } });
      await deadLetterOne("console-dlq-src");
      await deadLetterOne("console-dlq-src");
      await waitCount("#dl-rows tr", 2);
      await waitText("#q-ready", "0");
      await page.click("#btn-dl-redrive-all");
      await waitText("#q-ready", "2");
      await waitText("#q-dead", "0");
      await waitVisible("#dl-empty");
    });
    await check("dead letters: Purge dead letters asks first and removes them", async () => {
      // A queue that keeps its dead letters in its own store (infrai: no dead_letter_queue).
      await infraiOk("/v1/queue/create", { name: "console-own", max_retries: 0 });
      await infraiOk("/v1/queue/publish_batch", { queue: "console-own", messages: [{ payload: "a" }, { payload: "b" }] });
      await deadLetterOne("console-own");
      await deadLetterOne("console-own");
      await openFromOverview(TENANT, "console-own");
      await waitCount("#dl-rows tr", 2);
      eq(await page.$$eval("#dl-rows td[data-col=kept_in]", (l) => l.map((td) => td.textContent)), ["console-own", "console-own"], "kept in");
      await withDialog("dismiss", () => page.click("#btn-dl-purge"));
      await sleep(300);
      eq((await adminQueue(TENANT, "console-own")).dead, 2, "dead after Cancel");
      const msg = await withDialog("accept", () => page.click("#btn-dl-purge"));
      assert(/dead letters/i.test(msg) && msg.includes("console-own"), "confirmation says: " + msg);
      await waitVisible("#dl-empty");
      await waitText("#q-dead", "0");
      await page.waitForFunction(() => /Purged 2 dead letters/.test(document.getElementById("flash").textContent), null, { timeout: WAIT })
        .catch(async () => { throw new Error("flash: " + (await page.textContent("#flash"))); });
      eq((await adminQueue(TENANT, "console-own")).dead, 0, "dead (admin API)");
      await shot("10-dead-letters-purged");
    });
    await check("dead letters kept in a dead-letter queue: Purge says what it did and what stays", async () => {
      // The two redriven messages of console-dlq-src die again and are kept in console-dlq.
      await deadLetterOne("console-dlq-src");
      await deadLetterOne("console-dlq-src");
      await openFromOverview(TENANT, "console-dlq-src");
      await waitCount("#dl-rows tr", 2);
      const msg = await withDialog("accept", () => page.click("#btn-dl-purge"));
      await page.waitForFunction(() => /Purged .* of \u201cconsole-dlq-src\u201d/.test(document.getElementById("flash").textContent), null, { timeout: WAIT });
      const flashText = await page.textContent("#flash");
      const q = await adminQueue(TENANT, "console-dlq-src");
      await waitText("#q-dead", String(q.dead));
      if (q.dead === 0) {
        // The server purges them wherever they are kept.
        await waitVisible("#dl-empty");
        eq((await adminQueue(TENANT, "console-dlq")).ready, 0, "ready of console-dlq");
      } else {
        // The server purges only the queue's own store: the console must not pretend otherwise.
        assert(msg.includes("\u201cconsole-dlq\u201d"), "the confirmation does not say they are kept in console-dlq: " + msg);
        assert(/not removed/.test(flashText) && flashText.includes("console-dlq"), "flash: " + flashText);
        assert((await page.textContent("#dl-status")).includes("console-dlq"), "dead-letter status: " + (await page.textContent("#dl-status")));
        await waitCount("#dl-rows tr", q.dead);
      }
      await shot("11-dead-letters-kept-elsewhere");
    });
    await check("queue page: Delete with confirmation removes the queue", async () => {
      await infraiOk("/v1/queue/create", { name: "console-tmp" });
      await openFromOverview(TENANT, "console-tmp");
      await withDialog("dismiss", () => page.click("#btn-delete"));
      await sleep(300);
      eq((await admin(qpath(TENANT, "console-tmp"))).status, 200, "status after Cancel");
      await withDialog("accept", () => page.click("#btn-delete"));
      await waitVisible("#overview-view");
      eq(await page.evaluate(() => location.hash), "#/", "hash");
      const r = await admin(qpath(TENANT, "console-tmp"));
      eq([r.status, r.json && r.json.error && r.json.error.code], [404, "NOT_FOUND"], "admin API after delete");
      await page.fill("#queue-filter", "console-tmp");
      await waitVisible("#queue-empty");
    });
    await check("queue page: an unknown queue says so", async () => {
      await page.evaluate(() => { location.hash = "#/queues/console/no-such-queue"; });
      await waitVisible("#q-missing");
      assert((await page.textContent("#q-missing")).includes("no-such-queue"), "message: " + (await page.textContent("#q-missing")));
    });
    await check("login: a 401 later returns to the login view with a message", async () => {
      await page.evaluate((k) => { location.hash = "#/"; sessionStorage.setItem(k, "revoked-token"); }, TOKEN_KEY);
      await page.reload();
      await waitVisible("#login-view");
      assert(/401/.test(await page.textContent("#login-error")), "login error: " + (await page.textContent("#login-error")));
      eq(await page.evaluate((k) => sessionStorage.getItem(k), TOKEN_KEY), null, "stored token");
      await shot("12-login-after-401");
    });
    await check("login: Log out forgets the token", async () => {
      await page.fill("#login-token", TOKEN);
      await page.click("#login-submit");
      await waitVisible("#overview-view");
      await page.click("#btn-logout");
      await waitVisible("#login-view");
      eq(await page.evaluate((k) => sessionStorage.getItem(k), TOKEN_KEY), null, "stored token");
    });
    await check("browser: no JavaScript errors, nothing loaded from elsewhere", async () => {
      eq(pageErrors, [], "page errors");
      eq(foreign, [], "requests to other origins");
    });
  } finally {
    await browser.close();
  }
}

const deadline = setTimeout(() => {
  console.log("FAIL console test: did not finish within 120 s");
  process.exit(1);
}, 120000);
main().catch((e) => { failed++; console.log("FAIL console test: " + oneLine(e)); }).finally(() => {
  clearTimeout(deadline);
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed === 0 && passed > 0 ? 0 : 1);
});
