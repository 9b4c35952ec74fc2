// qgate operator console. Plain script, no build step, no dependencies.
// Talks only to the admin API of the server that served it (/api/v1/...), with the admin token
// kept in this tab's sessionStorage. Everything that comes from the server reaches the DOM as
// text (textContent / text nodes / attribute values), never as HTML.
(function () {
  "use strict";

  var TOKEN_KEY = "qgate.console.token";
  var SORT_KEY = "qgate.console.sort";
  var FILTER_KEY = "qgate.console.filter";
  var POLL_MS = 2000;
  var PEEK_DEFAULT = 20;
  var DEAD_LIMIT = 100;

  // ---------------------------------------------------------------- small helpers

  function $(id) { return document.getElementById(id); }

  // h("tr", {class: "x", dataset: {a: 1}, onclick: fn}, "text", node, [more]) — children are
  // nodes or text (strings become text nodes, so data is never parsed as HTML).
  function h(tag, props) {
    var el = document.createElement(tag);
    if (props) {
      Object.keys(props).forEach(function (k) {
        var v = props[k];
        if (v === null || v === undefined || v === false) return;
        if (k === "class") el.className = v;
        else if (k === "dataset") Object.keys(v).forEach(function (d) { el.dataset[d] = String(v[d]); });
        else if (k.slice(0, 2) === "on") el.addEventListener(k.slice(2), v);
        else if (k === "checked" || k === "disabled") el[k] = !!v;
        else el.setAttribute(k, v === true ? "" : String(v));
      });
    }
    for (var i = 2; i < arguments.length; i++) append(el, arguments[i]);
    return el;
  }
  function append(el, c) {
    if (c === null || c === undefined || c === false) return;
    if (Array.isArray(c)) { c.forEach(function (x) { append(el, x); }); return; }
    el.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  function clear(el) { while (el.firstChild) el.removeChild(el.firstChild); return el; }
  function setText(id, v) { var el = $(id); if (el.textContent !== String(v)) el.textContent = String(v); }
  function show(el, on) { (typeof el === "string" ? $(el) : el).hidden = !on; }

  function fmtInt(n) {
    if (n === null || n === undefined || typeof n !== "number" || !isFinite(n)) return "–";
    return n.toLocaleString("en-US");
  }
  function fmtRate(r) {
    if (r === null || r === undefined || !isFinite(r)) return "–";
    if (r === 0) return "0";
    if (r < 10) return r.toFixed(1);
    return Math.round(r).toLocaleString("en-US");
  }
  function fmtAge(s) {
    if (s === null || s === undefined || typeof s !== "number" || !isFinite(s)) return "–";
    s = Math.max(0, Math.floor(s));
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m " + (s % 60) + "s";
    if (s < 86400) return Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m";
    return Math.floor(s / 86400) + "d " + Math.floor((s % 86400) / 3600) + "h";
  }
  function fmtDuration(s) {
    if (s === null || s === undefined) return "–";
    if (typeof s !== "number" || s < 60) return String(s) + " s";
    return fmtAge(s) + " (" + fmtInt(s) + " s)";
  }
  function fmtBytes(n) {
    if (typeof n !== "number") return "–";
    if (n < 1024) return n + " B";
    if (n < 1048576) return (n / 1024).toFixed(n < 10240 ? 1 : 0) + " KiB";
    return (n / 1048576).toFixed(1) + " MiB";
  }
  function fmtTime(t) {
    if (!t) return "–";
    var d = new Date(t);
    if (isNaN(d.getTime())) return String(t);
    return d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
  }
  function timeCell(t) { return h("td", { class: "time", title: t ? String(t) : null }, fmtTime(t)); }
  function utf8Len(s) { try { return new TextEncoder().encode(s).length; } catch (e) { return s.length; } }
  function plural(n, one, many) { return fmtInt(n) + " " + (n === 1 ? one : (many || one + "s")); }

  function enc(s) { return encodeURIComponent(s); }
  function queueHash(t, n) { return "#/queues/" + enc(t) + "/" + enc(n); }
  function queueApi(t, n) { return "/api/v1/queues/" + enc(t) + "/" + enc(n); }
  function keyOf(t, n) { return t + "\u0000" + n; }

  // ---------------------------------------------------------------- API

  var token = null;
  try { token = sessionStorage.getItem(TOKEN_KEY); } catch (e) { token = null; }

  function ApiError(status, code, message) {
    this.status = status; this.code = code; this.message = message;
  }
  ApiError.prototype.toString = function () {
    return (this.status ? this.status + " " : "") + this.code + (this.message ? ": " + this.message : "");
  };

  function api(method, path, body) {
    var headers = { "Authorization": "Bearer " + (token || ""), "Accept": "application/json" };
    var init = { method: method, headers: headers, cache: "no-store", credentials: "omit" };
    if (body !== undefined) { headers["Content-Type"] = "application/json"; init.body = JSON.stringify(body); }
    return fetch(path, init).then(function (res) {
      return res.text().then(function (text) {
        var data = null;
        if (text) { try { data = JSON.parse(text); } catch (e) { data = null; } }
        var err = (data && data.error) || {};
        if (res.status === 401) {
          var e401 = new ApiError(401, err.code || "UNAUTHORIZED", err.message || "");
          unauthorized(e401);
          throw e401;
        }
        if (!res.ok) throw new ApiError(res.status, err.code || "HTTP_" + res.status, err.message || res.statusText || "");
        if (data === null) throw new ApiError(res.status, "BAD_RESPONSE", "the server's answer is not JSON");
        return data;
      });
    }, function (e) {
      throw new ApiError(0, "NETWORK", "the server did not answer (" + (e && e.message ? e.message : e) + ")");
    });
  }

  // A 401 anywhere: forget the token and go back to the login view with the reason.
  function unauthorized(err) {
    var had = !!token;
    setToken(null);
    stopPolling();
    showLogin(had
      ? "The server refused the admin token (" + err.toString() + "). Sign in again."
      : "The server refused the admin token (" + err.toString() + ").");
  }

  function setToken(t) {
    token = t;
    try { if (t) sessionStorage.setItem(TOKEN_KEY, t); else sessionStorage.removeItem(TOKEN_KEY); } catch (e) { /* storage off */ }
    show("btn-logout", !!t);
  }

  // ---------------------------------------------------------------- flash + status line

  var flashTimer = null;
  function flash(msg, kind) {
    var el = $("flash");
    el.textContent = msg;
    el.className = kind === "error" ? "error" : "ok";
    el.dataset.kind = kind === "error" ? "error" : "ok";
    el.hidden = false;
    clearTimeout(flashTimer);
    flashTimer = setTimeout(function () { el.hidden = true; }, kind === "error" ? 15000 : 6000);
  }
  function hideFlash() { clearTimeout(flashTimer); $("flash").hidden = true; }
  $("flash").addEventListener("click", hideFlash);

  function pollStatus(ok, msg) {
    var el = $("poll-status");
    el.className = ok ? "muted" : "error";
    el.textContent = msg;
  }

  // ---------------------------------------------------------------- polling

  var pollGen = 0;
  var pollTimer = null;
  var pollFn = null;

  // Runs fn(gen) now and then every POLL_MS after each run ends. A new start (route change, or
  // refreshNow after an action) bumps the generation so an older run's answer is dropped.
  function startPolling(fn) {
    stopPolling();
    pollFn = fn;
    var gen = pollGen;
    var tick = function () {
      if (gen !== pollGen) return;
      if (document.hidden) { pollTimer = setTimeout(tick, POLL_MS); return; }
      Promise.resolve().then(function () { return fn(gen); }).then(function () {
        if (gen === pollGen) pollStatus(true, "live · updated " + new Date().toLocaleTimeString("en-GB"));
      }, function (e) {
        if (gen === pollGen && !(e instanceof ApiError && e.status === 401)) {
          pollStatus(false, "update failed: " + String(e) + " (retrying)");
        }
      }).then(function () {
        if (gen === pollGen) pollTimer = setTimeout(tick, POLL_MS);
      });
    };
    tick();
  }
  function stopPolling() { pollGen++; clearTimeout(pollTimer); pollTimer = null; }
  function refreshNow() { if (pollFn) startPolling(pollFn); }
  document.addEventListener("visibilitychange", function () { if (!document.hidden && pollFn && token) refreshNow(); });

  // ---------------------------------------------------------------- rates from cumulative totals

  var samples = new Map(); // key -> {t, pub, ack, publish_rate, ack_rate}

  function rateFor(q, now) {
    var k = keyOf(q.tenant, q.name);
    var prev = samples.get(k);
    var pub = q.published_total, ack = q.acked_total;
    if (!prev) {
      samples.set(k, { t: now, pub: pub, ack: ack, publish_rate: null, ack_rate: null });
      return { publish_rate: null, ack_rate: null };
    }
    var dt = (now - prev.t) / 1000;
    if (dt < 0.5) return { publish_rate: prev.publish_rate, ack_rate: prev.ack_rate };
    var pr = (typeof pub === "number" && pub >= prev.pub) ? (pub - prev.pub) / dt : null;
    var ar = (typeof ack === "number" && ack >= prev.ack) ? (ack - prev.ack) / dt : null;
    samples.set(k, { t: now, pub: pub, ack: ack, publish_rate: pr, ack_rate: ar });
    return { publish_rate: pr, ack_rate: ar };
  }

  // ---------------------------------------------------------------- views + routing

  var views = ["login-view", "overview-view", "queue-view"];
  function showView(id) {
    views.forEach(function (v) { show(v, v === id); });
    document.body.dataset.view = id;
  }

  function showLogin(message) {
    stopPolling();
    pollFn = null;
    pollStatus(true, "");
    setText("server-info", "");
    showView("login-view");
    var err = $("login-error");
    err.textContent = message || "";
    err.hidden = !message;
    var input = $("login-token");
    input.value = "";
    input.focus();
  }

  function parseRoute() {
    var hash = location.hash.replace(/^#/, "");
    var parts = hash.split("/");
    if (parts.length === 4 && parts[0] === "" && parts[1] === "queues") {
      try {
        return { view: "queue", tenant: decodeURIComponent(parts[2]), name: decodeURIComponent(parts[3]) };
      } catch (e) { /* bad escape: fall through to the overview */ }
    }
    return { view: "overview" };
  }

  function route() {
    if (!token) { showLogin(""); return; }
    var r = parseRoute();
    if (r.view === "queue") openQueue(r.tenant, r.name);
    else openOverview();
  }
  window.addEventListener("hashchange", route);

  // ---------------------------------------------------------------- login

  $("login-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var t = $("login-token").value.trim();
    if (!t) return;
    var btn = $("login-submit");
    btn.disabled = true;
    $("login-error").hidden = true;
    setToken(t);
    api("GET", "/api/v1/overview").then(function () {
      btn.disabled = false;
      route();
    }, function (e) {
      btn.disabled = false;
      if (e.status !== 401) {
        // Not a verdict on the token; keep nothing and say what happened.
        setToken(null);
        var err = $("login-error");
        err.textContent = "Could not reach the admin API: " + String(e);
        err.hidden = false;
      }
    });
  });

  $("btn-logout").addEventListener("click", function () {
    setToken(null);
    hideFlash();
    showLogin("Signed out.");
  });

  function renderServerInfo(ov) {
    setText("server-info", "qgate " + (ov.version || "?") + " · up " + fmtAge(ov.uptime_secs));
  }

  // ---------------------------------------------------------------- overview

  var lastQueues = [];
  var sortState = loadJSON(SORT_KEY) || { key: "tenant", dir: 1 };

  function loadJSON(k) { try { return JSON.parse(sessionStorage.getItem(k)); } catch (e) { return null; } }
  function saveJSON(k, v) { try { sessionStorage.setItem(k, JSON.stringify(v)); } catch (e) { /* ignore */ } }

  (function initFilter() {
    var f = $("queue-filter");
    try { f.value = sessionStorage.getItem(FILTER_KEY) || ""; } catch (e) { /* ignore */ }
    f.addEventListener("input", function () {
      try { sessionStorage.setItem(FILTER_KEY, f.value); } catch (e) { /* ignore */ }
      renderQueueRows();
    });
  })();

  Array.prototype.forEach.call(document.querySelectorAll("#queue-table th[data-sort]"), function (th) {
    th.tabIndex = 0;
    var go = function () {
      var k = th.dataset.sort;
      if (sortState.key === k) sortState.dir = -sortState.dir;
      else sortState = { key: k, dir: 1 };
      saveJSON(SORT_KEY, sortState);
      renderQueueRows();
    };
    th.addEventListener("click", go);
    th.addEventListener("keydown", function (e) { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); go(); } });
  });

  document.addEventListener("keydown", function (e) {
    if (e.key === "/" && document.body.dataset.view === "overview-view" && document.activeElement.tagName !== "INPUT") {
      e.preventDefault();
      $("queue-filter").focus();
    }
  });

  function openOverview() {
    showView("overview-view");
    document.title = "qgate console · queues";
    renderQueueRows();
    startPolling(pollOverview);
  }

  function pollOverview(gen) {
    return Promise.all([api("GET", "/api/v1/overview"), api("GET", "/api/v1/queues")]).then(function (r) {
      if (gen !== pollGen) return;
      var ov = r[0], list = (r[1] && r[1].queues) || [];
      var now = Date.now();
      lastQueues = list.map(function (q) {
        var rt = rateFor(q, now);
        var o = Object.assign({}, q);
        o.publish_rate = rt.publish_rate;
        o.ack_rate = rt.ack_rate;
        return o;
      });
      renderServerInfo(ov);
      var m = ov.messages || {};
      setText("sum-tenants", fmtInt(ov.tenants));
      setText("sum-queues", fmtInt(ov.queues));
      setText("sum-ready", fmtInt(m.ready));
      setText("sum-in-flight", fmtInt(m.in_flight));
      setText("sum-delayed", fmtInt(m.delayed));
      setText("sum-dead", fmtInt(m.dead));
      $("overview-view").dataset.loaded = "true";
      renderQueueRows();
    });
  }

  function compare(a, b, key) {
    var x = a[key], y = b[key];
    var xn = x === null || x === undefined, yn = y === null || y === undefined;
    if (xn || yn) return xn && yn ? 0 : (xn ? 1 : -1) * sortState.dir; // empty last either way
    if (typeof x === "number" && typeof y === "number") return x - y;
    return String(x).localeCompare(String(y));
  }

  function renderQueueRows() {
    var terms = $("queue-filter").value.toLowerCase().split(/\s+/).filter(Boolean);
    var rows = lastQueues.filter(function (q) {
      var hay = (q.tenant + "/" + q.name).toLowerCase();
      return terms.every(function (t) { return hay.indexOf(t) >= 0; });
    });
    var key = sortState.key, dir = sortState.dir;
    rows.sort(function (a, b) {
      return compare(a, b, key) * dir || compare(a, b, "tenant") || compare(a, b, "name");
    });
    Array.prototype.forEach.call(document.querySelectorAll("#queue-table th[data-sort]"), function (th) {
      var on = th.dataset.sort === key;
      th.classList.toggle("sorted", on);
      th.setAttribute("aria-sort", on ? (dir > 0 ? "ascending" : "descending") : "none");
      th.dataset.arrow = on ? (dir > 0 ? "▲" : "▼") : "";
    });
    var tbody = clear($("queue-rows"));
    rows.forEach(function (q) {
      var href = queueHash(q.tenant, q.name);
      var num = function (col, v, f) { return h("td", { class: "num", dataset: { col: col } }, (f || fmtInt)(v)); };
      var tr = h("tr", {
        class: "clickable" + (q.dead > 0 ? " has-dead" : ""),
        dataset: { testid: "queue-row", tenant: q.tenant, name: q.name },
        onclick: function (e) { if (!e.target.closest("a")) location.hash = href; }
      },
        h("td", { dataset: { col: "tenant" } }, q.tenant),
        h("td", { dataset: { col: "name" } }, h("a", { href: href, dataset: { testid: "queue-link" } }, q.name)),
        h("td", { dataset: { col: "kind" } }, q.kind),
        num("ready", q.ready), num("in_flight", q.in_flight), num("delayed", q.delayed),
        num("dead", q.dead), num("groups", q.groups),
        num("publish_rate", q.publish_rate, fmtRate), num("ack_rate", q.ack_rate, fmtRate),
        num("oldest_ready_age_secs", q.oldest_ready_age_secs, fmtAge));
      tr.setAttribute("data-testid", "queue-row");
      tbody.appendChild(tr);
    });
    var total = lastQueues.length;
    setText("queue-count", terms.length ? rows.length + " of " + plural(total, "queue") : plural(total, "queue"));
    var empty = $("queue-empty");
    empty.textContent = total === 0 ? "No queues yet." : "No queue matches the filter.";
    empty.hidden = rows.length > 0 || $("overview-view").dataset.loaded !== "true";
  }

  // ---------------------------------------------------------------- one queue

  var cur = null; // {tenant, name}
  var selectedDead = new Set();
  var lastDead = [];

  function openQueue(tenant, name) {
    var same = cur && cur.tenant === tenant && cur.name === name;
    cur = { tenant: tenant, name: name };
    if (!same) {
      selectedDead = new Set();
      lastDead = [];
      ["q-ready", "q-in-flight", "q-delayed", "q-dead", "q-groups", "q-publish-rate", "q-ack-rate", "q-oldest"].forEach(function (id) { setText(id, "–"); });
      clear($("q-attributes").tBodies[0]);
      clear($("q-counters").tBodies[0]);
      clear($("group-rows")); clear($("peek-rows")); clear($("dl-rows"));
      ["group-empty", "peek-empty", "dl-empty"].forEach(function (id) { show(id, false); });
      setText("peek-status", ""); setText("dl-status", "");
      delete $("queue-view").dataset.loaded;
    }
    setText("q-tenant", tenant);
    setText("q-name", name);
    setText("q-kind", "");
    show("q-missing", false);
    show("q-body", true);
    document.title = "qgate console · " + tenant + "/" + name;
    showView("queue-view");
    startPolling(pollQueue);
  }

  function pollQueue(gen) {
    var q = cur, base = queueApi(q.tenant, q.name);
    var limit = parseInt($("peek-limit").value, 10) || PEEK_DEFAULT;
    return api("GET", base).then(function (d) {
      if (gen !== pollGen) return;
      renderQueue(d);
      // Peek and dead letters: a failure of one does not hide the other.
      return Promise.all([
        api("GET", base + "/messages?limit=" + limit).then(function (m) {
          if (gen === pollGen) renderPeek((m && m.messages) || [], limit);
        }, function (e) { if (gen === pollGen) { setText("peek-status", "peek failed: " + String(e)); } throw e; }),
        api("GET", base + "/deadletters?limit=" + DEAD_LIMIT).then(function (m) {
          if (gen === pollGen) renderDead((m && m.dead_letters) || [], !!(m && m.more));
        }, function (e) { if (gen === pollGen) { setText("dl-status", "listing failed: " + String(e)); } throw e; })
      ]).then(function () { if (gen === pollGen) $("queue-view").dataset.loaded = "true"; });
    }, function (e) {
      if (gen !== pollGen) throw e;
      if (e.status === 404) {
        var m = $("q-missing");
        m.textContent = "There is no queue named \u201c" + q.name + "\u201d in tenant \u201c" + q.tenant + "\u201d (it may have been deleted).";
        m.hidden = false;
        show("q-body", false);
        return; // keep polling: it may be created again
      }
      throw e;
    });
  }

  function kvRows(tbody, pairs) {
    clear(tbody);
    pairs.forEach(function (p) {
      tbody.appendChild(h("tr", { dataset: { key: p[2] || p[0] } }, h("th", { scope: "row" }, p[0]), h("td", null, p[1])));
    });
  }

  function renderQueue(d) {
    var q = d.queue || {};
    var cfg = q.config || {};
    show("q-missing", false);
    show("q-body", true);
    var rt = rateFor(q, Date.now());
    setText("q-kind", q.kind || "");
    setText("q-ready", fmtInt(q.ready));
    setText("q-in-flight", fmtInt(q.in_flight));
    setText("q-delayed", fmtInt(q.delayed));
    setText("q-dead", fmtInt(q.dead));
    setText("q-groups", fmtInt(q.groups));
    setText("q-publish-rate", fmtRate(rt.publish_rate));
    setText("q-ack-rate", fmtRate(rt.ack_rate));
    setText("q-oldest", fmtAge(q.oldest_ready_age_secs));
    var dl = cfg.dead_letter;
    var dlText = "none (failed messages are retried)";
    if (dl) {
      dlText = "after " + plural(dl.max_failures, "failure") + " \u2192 " +
        (dl.target === "own" ? "this queue's own dead-letter store" : "queue \u201c" + dl.target + "\u201d");
    }
    kvRows($("q-attributes").tBodies[0], [
      ["Id", q.id || "–", "id"],
      ["Kind", q.kind || "–", "kind"],
      ["Created", fmtTime(q.created_at), "created_at"],
      ["Visibility timeout", fmtDuration(cfg.visibility_timeout_secs), "visibility_timeout_secs"],
      ["Delivery delay", fmtDuration(cfg.delay_secs), "delay_secs"],
      ["Max message size", cfg.max_message_bytes == null ? "–" : fmtBytes(cfg.max_message_bytes) + " (" + fmtInt(cfg.max_message_bytes) + " bytes)", "max_message_bytes"],
      ["Retention", fmtDuration(cfg.retention_secs), "retention_secs"],
      ["Long-poll wait", fmtDuration(cfg.polling_wait_secs), "polling_wait_secs"],
      ["Dead letters", dlText, "dead_letter"],
      ["Priority", cfg.priority === undefined ? "–" : (cfg.priority ? "on" : "off (enqueue order)"), "priority"]
    ].concat(cfg.mode !== undefined ? [["Mode", String(cfg.mode), "mode"]] : []));
    kvRows($("q-counters").tBodies[0], [
      ["Published", fmtInt(q.published_total), "published_total"],
      ["Delivered", fmtInt(q.delivered_total), "delivered_total"],
      ["Acknowledged", fmtInt(q.acked_total), "acked_total"]
    ].concat(q.redelivered_total !== undefined ? [["Redelivered", fmtInt(q.redelivered_total), "redelivered_total"]] : [],
      q.dead_lettered_total !== undefined ? [["Dead-lettered", fmtInt(q.dead_lettered_total), "dead_lettered_total"]] : []));
    var groups = d.groups || [];
    var gb = clear($("group-rows"));
    groups.forEach(function (g) {
      var num = function (col, v) { return h("td", { class: "num", dataset: { col: col } }, fmtInt(v)); };
      var tr = h("tr", { dataset: { id: g.id } },
        h("td", { dataset: { col: "name" } }, g.name || "–"), h("td", { class: "mono", dataset: { col: "id" } }, g.id),
        num("backlog", g.backlog), num("ready", g.ready), num("in_flight", g.in_flight), num("delayed", g.delayed), num("dead", g.dead));
      tr.setAttribute("data-testid", "group-row");
      gb.appendChild(tr);
    });
    show("group-empty", groups.length === 0);
    show("group-table", groups.length > 0);
  }

  function bodyCell(preview, size) {
    var p = preview == null ? "" : String(preview);
    var td = h("td", { class: "body", dataset: { col: "body" } }, h("pre", { class: "preview" }, p));
    if (typeof size === "number" && size > utf8Len(p)) td.appendChild(h("span", { class: "muted small" }, "\u2026 first " + fmtInt(p.length) + " characters of " + fmtBytes(size)));
    return td;
  }

  function attrsCell(attrs) {
    var td = h("td", { class: "attrs", dataset: { col: "attributes" } });
    var keys = attrs && typeof attrs === "object" ? Object.keys(attrs) : [];
    if (!keys.length) { td.appendChild(h("span", { class: "muted" }, "–")); return td; }
    var dl = h("dl");
    keys.sort().forEach(function (k) {
      var v = attrs[k];
      dl.appendChild(h("dt", null, k));
      dl.appendChild(h("dd", null, typeof v === "string" ? v : JSON.stringify(v)));
    });
    td.appendChild(dl);
    return td;
  }

  function renderPeek(msgs, limit) {
    var tb = clear($("peek-rows"));
    msgs.forEach(function (m) {
      var tr = h("tr", { dataset: { id: m.id } },
        h("td", { class: "mono", dataset: { col: "id" } }, m.id),
        bodyCell(m.preview, m.size),
        h("td", { class: "num", dataset: { col: "size" } }, fmtBytes(m.size)),
        h("td", { class: "num", dataset: { col: "priority" } }, m.priority == null ? "–" : String(m.priority)),
        h("td", { class: "num", dataset: { col: "deliveries" } }, fmtInt(m.deliveries)),
        timeCell(m.enqueued_at),
        attrsCell(m.attributes));
      tr.setAttribute("data-testid", "peek-row");
      tb.appendChild(tr);
    });
    show("peek-empty", msgs.length === 0);
    show("peek-table", msgs.length > 0);
    setText("peek-status", msgs.length >= limit ? "showing the first " + limit + " ready messages" : plural(msgs.length, "message") + " shown");
  }

  function renderDead(list, more) {
    lastDead = list;
    var present = new Set(list.map(function (d) { return d.id; }));
    selectedDead.forEach(function (id) { if (!present.has(id)) selectedDead.delete(id); });
    var tb = clear($("dl-rows"));
    list.forEach(function (d) {
      var box = h("input", {
        type: "checkbox", class: "dl-select", "aria-label": "select dead letter " + d.id,
        checked: selectedDead.has(d.id), dataset: { id: d.id },
        onchange: function (e) { if (e.target.checked) selectedDead.add(d.id); else selectedDead.delete(d.id); syncDeadButtons(); }
      });
      box.setAttribute("data-testid", "dl-select");
      var tr = h("tr", { dataset: { id: d.id } },
        h("td", null, box),
        h("td", { class: "mono", dataset: { col: "id" } }, d.id),
        bodyCell(d.preview, d.size),
        h("td", { class: "num", dataset: { col: "size" } }, fmtBytes(d.size)),
        h("td", { dataset: { col: "reason" } }, d.reason || "–"),
        timeCell(d.died_at),
        h("td", { class: "num", dataset: { col: "deliveries" } }, fmtInt(d.deliveries)),
        h("td", { dataset: { col: "kept_in" } }, !d.kept_in ? "–" : d.kept_in === cur.name ? d.kept_in
          : h("a", { href: queueHash(cur.tenant, d.kept_in), title: "a dead-letter queue: these are its messages" }, d.kept_in)));
      tr.setAttribute("data-testid", "dl-row");
      tb.appendChild(tr);
    });
    show("dl-empty", list.length === 0);
    show("dl-table", list.length > 0);
    var elsewhere = keptElsewhere();
    setText("dl-status", (more || list.length >= DEAD_LIMIT ? "showing the first " + list.length + ". " : "") +
      (elsewhere.count ? plural(elsewhere.count, "dead letter") + " kept in " + elsewhere.queues.join(", ") +
        " (as that queue's messages; Purge dead letters does not remove those: purge that queue)." : ""));
    syncDeadButtons();
  }

  // Dead letters listed here but kept (as ordinary messages) in a dead-letter queue.
  function keptElsewhere() {
    var qs = [], n = 0;
    lastDead.forEach(function (d) {
      if (d.kept_in && cur && d.kept_in !== cur.name) { n++; if (qs.indexOf(d.kept_in) < 0) qs.push(d.kept_in); }
    });
    return { count: n, queues: qs.map(function (x) { return "\u201c" + x + "\u201d"; }) };
  }

  function syncDeadButtons() {
    var n = selectedDead.size;
    $("btn-dl-redrive-selected").disabled = busy || n === 0;
    $("btn-dl-redrive-selected").textContent = n ? "Redrive selected (" + n + ")" : "Redrive selected";
    $("btn-dl-redrive-all").disabled = busy || lastDead.length === 0;
    $("btn-dl-purge").disabled = busy || lastDead.length === 0;
    var all = $("dl-select-all");
    all.checked = lastDead.length > 0 && n === lastDead.length;
    all.indeterminate = n > 0 && n < lastDead.length;
  }

  $("dl-select-all").addEventListener("change", function (e) {
    selectedDead = new Set(e.target.checked ? lastDead.map(function (d) { return d.id; }) : []);
    Array.prototype.forEach.call(document.querySelectorAll("#dl-rows input.dl-select"), function (b) { b.checked = e.target.checked; });
    syncDeadButtons();
  });

  // ---------------------------------------------------------------- actions

  var busy = false;
  function action(btnIds, fn) {
    if (busy) return;
    busy = true;
    btnIds.forEach(function (id) { $(id).disabled = true; });
    var done = function () {
      busy = false;
      ["btn-purge", "btn-delete"].forEach(function (id) { $(id).disabled = false; });
      syncDeadButtons();
    };
    Promise.resolve().then(fn).then(done, function (e) {
      done();
      if (!(e instanceof ApiError && e.status === 401)) {
        flash("Failed: " + String(e), "error");
        refreshNow(); // the action may have done part of its work
      }
    });
  }
  var allActionButtons = ["btn-purge", "btn-delete", "btn-dl-redrive-selected", "btn-dl-redrive-all", "btn-dl-purge"];

  function qLabel(q) { return "\u201c" + q.name + "\u201d (tenant \u201c" + q.tenant + "\u201d)"; }

  $("btn-purge").addEventListener("click", function () {
    var q = cur;
    if (!window.confirm("Purge queue " + qLabel(q) + "?\n\nAll ready, delayed and in-flight messages are removed. Dead letters stay. This cannot be undone.")) return;
    action(allActionButtons, function () {
      return api("POST", queueApi(q.tenant, q.name) + "/purge").then(function (r) {
        flash("Purged " + plural(r.purged, "message") + " from " + qLabel(q) + ".");
        refreshNow();
      });
    });
  });

  $("btn-delete").addEventListener("click", function () {
    var q = cur;
    if (!window.confirm("Delete queue " + qLabel(q) + "?\n\nThe queue, its messages and its dead letters are removed. This cannot be undone.")) return;
    action(allActionButtons, function () {
      return api("DELETE", queueApi(q.tenant, q.name)).then(function () {
        flash("Deleted queue " + qLabel(q) + ".");
        samples.delete(keyOf(q.tenant, q.name));
        cur = null;
        location.hash = "#/";
      });
    });
  });

  $("btn-dl-redrive-selected").addEventListener("click", function () {
    var q = cur, ids = Array.from(selectedDead);
    if (!ids.length) return;
    action(allActionButtons, function () {
      return api("POST", queueApi(q.tenant, q.name) + "/deadletters/redrive", { ids: ids }).then(function (r) {
        selectedDead = new Set();
        flash("Redrove " + plural(r.redriven, "dead letter") + " back to " + qLabel(q) + ".");
        refreshNow();
      });
    });
  });

  $("btn-dl-redrive-all").addEventListener("click", function () {
    var q = cur;
    action(allActionButtons, function () {
      return api("POST", queueApi(q.tenant, q.name) + "/deadletters/redrive", { all: true }).then(function (r) {
        selectedDead = new Set();
        flash("Redrove " + plural(r.redriven, "dead letter") + " back to " + qLabel(q) + ".");
        refreshNow();
      });
    });
  });

  $("btn-dl-purge").addEventListener("click", function () {
    var q = cur;
    var elsewhere = keptElsewhere();
    var note = elsewhere.count ? "\n\n" + plural(elsewhere.count, "dead letter") + " listed here " + (elsewhere.count === 1 ? "is" : "are") +
      " kept in " + elsewhere.queues.join(", ") + " as that queue's messages and may stay: purge that queue to remove them." : "";
    if (!window.confirm("Purge the dead letters of queue " + qLabel(q) + "?\n\nThey are removed for good. This cannot be undone." + note)) return;
    action(allActionButtons, function () {
      return api("POST", queueApi(q.tenant, q.name) + "/deadletters/purge").then(function (r) {
        selectedDead = new Set();
        flash("Purged " + plural(r.purged, "dead letter") + " of " + qLabel(q) + "." +
          (elsewhere.count && r.purged < lastDead.length ? " Those kept in " + elsewhere.queues.join(", ") + " were not removed: purge that queue." : ""));
        refreshNow();
      });
    });
  });

  $("btn-peek-refresh").addEventListener("click", refreshNow);
  $("btn-dl-refresh").addEventListener("click", refreshNow);
  $("peek-limit").addEventListener("change", refreshNow);

  // ---------------------------------------------------------------- start

  show("btn-logout", !!token);
  route();
})();
