
"use strict";
// Renders status.json every few seconds. Everything from the server is set as text
// (textContent, SVG attributes), never parsed as markup.
(() => {
  const REFRESH_MS = 2000;
  const SVG = "http://www.w3.org/2000/svg";
  const byId = (id) => document.getElementById(id);
  const shown = (value) => (value === null || value === undefined ? "–" : String(value));
  let refreshes = 0;

  function setText(id, value) {
    byId(id).textContent = shown(value);
  }

  function cell(row, value, className) {
    const td = document.createElement("td");
    td.textContent = shown(value);
    if (className) td.className = className;
    row.appendChild(td);
  }

  // Replaces a table's body with one row per item; `columns` are [value(item), class].
  function fill(id, items, columns) {
    const table = byId(id);
    const body = document.createElement("tbody");
    for (const item of items) {
      const row = document.createElement("tr");
      for (const [value, className] of columns) {
        cell(row, value(item), typeof className === "function" ? className(item) : className);
      }
      body.appendChild(row);
    }
    if (items.length === 0) {
      const row = document.createElement("tr");
      const td = document.createElement("td");
      td.colSpan = columns.length;
      td.className = "none";
      td.textContent = "none yet";
      row.appendChild(td);
      body.appendChild(row);
    }
    table.replaceChild(body, table.tBodies[0]);
  }

  const statusClass = (item) => "n status-" + String(item.status).charAt(0);
  const caller = (item) =>
    item.key_id ? "key " + item.key_id : item.subject ? "sub " + item.subject : "";
  const codeColumns = [
    [(c) => c.stage], [(c) => c.code, "code"], [(c) => c.status, statusClass], [(c) => c.count, "n"],
  ];
  // A validation refusal's field errors: pointer and message, never the value sent.
  const why = (item) =>
    (item.errors || []).map((e) => (e.pointer || e.location) + ": " + e.message).join("; ");
  const refusalColumns = [
    [(r) => r.time.slice(11, 23)], [(r) => r.request_id, "code"], [(r) => r.operation],
    [(r) => r.status, statusClass], [(r) => r.stage], [(r) => r.code, "code"], [caller],
    [why, "why"],
  ];

  function chart(timeline) {
    const svg = byId("chart");
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    const bars = timeline.requests.length;
    const most = Math.max(1, ...timeline.requests, ...timeline.shadowed);
    const width = 600 / bars;
    const bar = (i, value, className, label) => {
      if (value <= 0) return;
      const height = (value / most) * 116;
      const rect = document.createElementNS(SVG, "rect");
      rect.setAttribute("x", String(i * width + 0.5));
      rect.setAttribute("width", String(Math.max(width - 1, 1)));
      rect.setAttribute("y", String(120 - height));
      rect.setAttribute("height", String(height));
      rect.setAttribute("class", className);
      const title = document.createElementNS(SVG, "title");
      title.textContent = label + ": " + value;
      rect.appendChild(title);
      svg.appendChild(rect);
    };
    for (let i = 0; i < bars; i++) {
      const ago = (bars - 1 - i) * timeline.step_seconds;
      bar(i, timeline.requests[i], "req", "requests, " + ago + "–" + (ago + timeline.step_seconds) + " s ago");
      bar(i, timeline.refused[i], "ref", "refused");
      bar(i, timeline.shadowed[i], "sha", "shadow");
    }
  }

  function definition(list, term, value, className) {
    const dt = document.createElement("dt");
    dt.textContent = term;
    const dd = document.createElement("dd");
    if (Array.isArray(value)) {
      const ul = document.createElement("ul");
      for (const line of value) {
        const li = document.createElement("li");
        li.textContent = line;
        ul.appendChild(li);
      }
      dd.appendChild(ul);
    } else {
      dd.textContent = shown(value);
    }
    if (className) dd.className = className;
    list.append(dt, dd);
  }

  function snapshot(s) {
    const list = document.createElement("dl");
    list.id = "snapshot";
    definition(list, "generation", s.generation + " (serving since " + s.serving_since + ")");
    definition(list, "policy mode", s.mode);
    definition(list, "last reload", s.last_reload ? s.last_reload.result + " at " + s.last_reload.time : "none since start");
    if (s.last_failed_reload) {
      definition(list, "last failed reload", "at " + s.last_failed_reload.time + ", the previous configuration kept serving:", "failure");
      definition(list, "", s.last_failed_reload.problems, "failure");
    }
    if (s.spec) {
      const title = [s.spec.title, s.spec.version].filter(Boolean).join(" ");
      definition(list, "spec", (title || "untitled") + " (OpenAPI " + s.spec.openapi + ", " + s.spec.operations + " operations)");
    } else {
      definition(list, "spec", "none: every path is forwarded under policy.default");
    }
    for (const store of s.key_stores) {
      definition(list, "key store " + store.scheme, store.redis_version === undefined
        ? "digest " + store.digest + ", " + store.keys + " keys, read " + store.age_seconds + " s ago"
        : "redis version " + store.redis_version + ", " + store.keys + " keys, confirmed " + store.age_seconds + " s ago, last change applied in " + store.apply_lag_ms + " ms");
    }
    definition(list, "TLS", s.tls ? "certificate valid until " + s.tls.not_after + " (" + s.tls.days_left + " days)" : "off (plain HTTP)",
      s.tls && s.tls.days_left < 14 ? "failure" : "");
    byId("snapshot").replaceWith(list);
  }

  function render(status) {
    const totals = status.totals;
    setText("total-requests", totals.requests);
    setText("total-refused", totals.refused);
    setText("total-shadowed", totals.shadowed);
    const perSecond = status.operations.reduce((sum, op) => sum + op.last_minute.per_second, 0);
    setText("rate", perSecond.toFixed(2));
    setText("refused-share", totals.requests ? ((100 * totals.refused) / totals.requests).toFixed(1) + " %" : "–");

    const upstream = status.upstream;
    const state = byId("upstream-state");
    state.textContent = upstream.reachable ? "reachable" : "unreachable";
    state.dataset.reachable = String(upstream.reachable);
    setText("upstream-address", upstream.address);
    const minute = upstream.last_minute;
    setText("upstream-detail",
      "p50 " + shown(minute.p50_ms) + " ms · p99 " + shown(minute.p99_ms) + " ms · " +
      minute.errors + " errors in the last minute (" + upstream.errors + " since start)");

    fill("operations", status.operations, [
      [(op) => op.operation],
      [(op) => op.requests, "n"], [(op) => op.refused, "n"], [(op) => op.shadowed, "n"],
      [(op) => op.last_minute.per_second.toFixed(2), "n"],
      [(op) => op.last_minute.p50_ms, "n"], [(op) => op.last_minute.p99_ms, "n"],
    ]);
    fill("refusal-codes", status.refusals.by_code, codeColumns);
    fill("shadow-codes", status.shadow.by_code, codeColumns);
    fill("refusals", status.refusals.recent, refusalColumns);
    fill("shadow-refusals", status.shadow.recent, refusalColumns);
    chart(status.timeline);
    snapshot(status.snapshot);

    const spec = status.snapshot.spec;
    setText("spec", (spec && spec.title ? spec.title + " · " : "") + "moat " + status.moat.version +
      " · up " + Math.floor(status.moat.uptime_seconds / 60) + " min");
  }

  async function refresh() {
    const updated = byId("updated");
    try {
      const response = await fetch("status.json", { cache: "no-store" });
      if (!response.ok) throw new Error("HTTP " + response.status);
      render(await response.json());
      refreshes += 1;
      updated.dataset.refreshes = String(refreshes);
      updated.dataset.state = "fresh";
      updated.textContent = "updated " + new Date().toISOString().slice(11, 19) + " UTC";
    } catch (error) {
      updated.dataset.state = "stale";
      updated.textContent = "cannot read status.json (" + error.message + "); retrying";
    } finally {
      setTimeout(refresh, REFRESH_MS);
    }
  }

  refresh();
})();
