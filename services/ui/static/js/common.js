// Shared by every page: DOM building, the JSON API (with CSRF), the live socket,
// number formatting and uPlot chart helpers. No framework, no build step.
"use strict";
const S = (window.Surge = {});

S.h = function (tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const kid of kids.flat()) {
    if (kid == null || kid === false) continue;
    el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return el;
};
const h = S.h;
S.app = () => document.getElementById("app");
S.mount = (...kids) => { const a = S.app(); a.replaceChildren(...kids.flat().filter((k) => k != null && k !== false)); return a; };

// --- formatting --------------------------------------------------------------
S.num = (v, d = 0) => v == null || !isFinite(v) ? "–" : Number(v).toLocaleString("en-US", {minimumFractionDigits: d, maximumFractionDigits: d});
S.ms = (v) => v == null ? "–" : v >= 1000 ? S.num(v / 1000, 2) + " s" : v >= 100 ? S.num(v, 0) + " ms" : v >= 10 ? S.num(v, 1) + " ms" : S.num(v, 2) + " ms";
S.rps = (v) => v == null ? "–" : S.num(v, v < 100 ? 1 : 0);
S.pct = (v, d = 2) => v == null ? "–" : S.num(v * 100, d) + "%";
S.dur = (s) => { if (s == null) return "–"; s = Math.round(s); const m = Math.floor(s / 60), r = s % 60; return m ? `${m}m${String(r).padStart(2, "0")}s` : `${r}s`; };
S.ago = (t) => { if (!t) return "–"; const d = Date.now() / 1000 - t; return d < 2 ? "now" : d < 90 ? `${Math.round(d)}s ago` : d < 5400 ? `${Math.round(d / 60)}m ago` : d < 172800 ? `${Math.round(d / 3600)}h ago` : new Date(t * 1000).toISOString().slice(0, 16).replace("T", " "); };
S.time = (t) => t ? new Date(t * 1000).toLocaleString() : "–";
S.bytes = (v) => { if (v == null) return "–"; const u = ["B", "KB", "MB", "GB", "TB"]; let i = 0; while (v >= 1024 && i < 4) { v /= 1024; i++; } return S.num(v, i ? 1 : 0) + " " + u[i]; };
S.badge = (text, cls) => h("span", {class: `badge ${cls || text || ""}`, text: text || "–"});
S.kpi = (id, label, value, cls) => h("div", {class: "kpi " + (cls || ""), id: id}, h("div", {class: "l", text: label}), h("div", {class: "v", text: value}));
S.setKpi = (id, value, cls) => { const k = document.getElementById(id); if (!k) return; k.querySelector(".v").textContent = value; k.className = "kpi " + (cls || ""); };
// a threshold result's name: "p99_ms", or "login: p99_ms" for one request's
S.thrLabel = (t) => (t.request ? t.request + ": " : "") + t.name;
S.table = (cols, rows, attrs) => h("table", attrs || {},
  h("thead", {}, h("tr", {}, cols.map((c) => h("th", {class: c.n ? "n" : "", text: c.label})))),
  h("tbody", {}, rows));
S.td = (v, cls) => h("td", {class: cls || ""}, v);

// --- API -----------------------------------------------------------------------
function cookie(name) {
  const m = document.cookie.split("; ").find((c) => c.startsWith(name + "="));
  return m ? decodeURIComponent(m.slice(name.length + 1)) : "";
}
S.api = async function (method, path, body) {
  const opts = {method, headers: {Accept: "application/json"}, credentials: "same-origin"};
  if (method !== "GET") {
    opts.headers["Content-Type"] = "application/json";
    opts.headers["X-CSRF-Token"] = cookie("surge_csrf");
    if (body !== undefined) opts.body = JSON.stringify(body);
  }
  const res = await fetch(path, opts);
  let data = null;
  try { data = await res.json(); } catch (e) { data = null; }
  if (res.status === 401) { location.href = "/login"; }
  if (!res.ok) {
    const err = (data && data.error) || {code: "http_" + res.status, message: res.statusText};
    const e = new Error(err.message); e.status = res.status; e.error = err; throw e;
  }
  return data;
};
S.errorBanner = (e) => h("div", {class: "banner err", text: (e.error ? e.error.code + ": " : "") + e.message});

// --- live socket ------------------------------------------------------------------
S.live = (function () {
  const handlers = {}, topics = new Set();
  let ws = null, backoff = 500;
  const conn = () => document.getElementById("conn");
  function status(cls, text) { const c = conn(); if (c) { c.className = "conn " + cls; c.textContent = text; } }
  function open() {
    ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws");
    ws.onopen = () => { backoff = 500; status("up", "live"); if (topics.size) ws.send(JSON.stringify({sub: [...topics]})); };
    ws.onmessage = (ev) => {
      let m; try { m = JSON.parse(ev.data); } catch (e) { return; }
      (handlers[m.t] || []).forEach((fn) => { try { fn(m.d, m.k); } catch (e) { console.error(e); } });
    };
    ws.onclose = () => { status("down", "reconnecting"); setTimeout(open, backoff); backoff = Math.min(backoff * 2, 8000); };
  }
  return {
    on(kind, fn) { (handlers[kind] = handlers[kind] || []).push(fn); },
    sub(...ts) { ts.forEach((t) => topics.add(t)); if (ws && ws.readyState === 1) ws.send(JSON.stringify({sub: ts})); else if (!ws) open(); },
    start() { if (!ws) open(); },
  };
})();

// --- redraw cost: the last 200 durations (ms) per kind, for the scale bench and devtools ---
S.perf = {
  data: {},
  add(kind, ms) { const a = (this.data[kind] = this.data[kind] || []); a.push(ms); if (a.length > 200) a.shift(); },
  summary() {
    const out = {};
    for (const [k, a] of Object.entries(this.data)) {
      const s = [...a].sort((x, y) => x - y);
      out[k] = {n: s.length, p50: +s[Math.floor(s.length / 2)].toFixed(2), max: +s[s.length - 1].toFixed(2)};
    }
    return out;
  },
};

// --- charts ---------------------------------------------------------------------
S.colors = ["#4c8dff", "#3ecf8e", "#f5b73b", "#ff5d5d", "#b084f5", "#39c5cf", "#ff8fb1", "#a3be8c", "#e0a458", "#8fa1b3"];
S.color = (i) => S.colors[i % S.colors.length];
function css(v) { return getComputedStyle(document.documentElement).getPropertyValue(v).trim(); }
S.axes = (yfmt, xopts) => {
  const stroke = css("--muted"), grid = {stroke: css("--line"), width: 1}, ticks = {stroke: css("--line"), width: 1};
  return [Object.assign({stroke, grid, ticks, font: "11px system-ui"}, xopts || {}),
          {stroke, grid, ticks, font: "11px system-ui", size: 56, values: (u, vs) => vs.map(yfmt || ((v) => v == null ? "" : S.num(v, v < 10 ? 1 : 0)))}];
};
// A chart off screen is not redrawn: its newest data waits on the chart and is drawn
// when the chart scrolls near the viewport. Below the fold, 50 host charts or a chart
// of 50 generators' lines cost hundreds of ms a second otherwise (bench/ui_scale.py).
const onScreen = new IntersectionObserver((entries) => {
  for (const e of entries) {
    e.target.surgeVisible = e.isIntersecting;
    const u = e.target.surgeChart;
    if (e.isIntersecting && u && u.surgePending) { const d = u.surgePending; u.surgePending = null; u.setData(d); S.showLatest(u); }
  }
}, {rootMargin: "200px"});
S.onScreen = (el) => el.surgeVisible !== false;  // not yet observed counts as on screen
// A uPlot chart that follows its container's width.
S.chart = function (el, opts, data) {
  const width = () => Math.max(el.clientWidth - 4, 200);
  const hooks = Object.assign({}, opts.hooks || {});
  hooks.ready = (hooks.ready || []).concat([(u) => S.showLatest(u)]);
  hooks.setData = (hooks.setData || []).concat([(u) => S.showLatest(u)]);
  const u = new uPlot(Object.assign({width: width(), height: opts.height || 210, cursor: {points: {size: 5}}, legend: {live: true}}, opts, {hooks}), data, el);
  new ResizeObserver(() => { if (Math.abs(u.width - width()) > 2) u.setSize({width: width(), height: u.height}); }).observe(el);
  el.surgeChart = u; u.surgeEl = el;
  onScreen.observe(el);
  S.showLatest(u);
  return u;
};
// Without the cursor on the chart, the legend shows the latest values (not "--").
S.showLatest = (u) => { if (u.cursor.left > 0 || !u.data[0] || !u.data[0].length) return; try { u.setLegend({idx: u.data[0].length - 1}); } catch (e) { /* older uPlot */ } };
S.setData = (u, data) => {
  if (!S.onScreen(u.surgeEl)) { u.surgePending = data; return; }
  u.surgePending = null; u.setData(data); S.showLatest(u);
};
S.timeAxis = {values: (u, vs) => vs.map((v) => S.dur(v)), incrs: [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600]};
S.timeSeries = {label: "t", value: (u, v) => v == null ? "" : S.dur(v)};

// --- percentile distribution (report, compare) ---------------------------------
S.pctLabel = (p) => p >= 99.9999 ? "99.9999" : p >= 99 ? String(+p.toFixed(p >= 99.99 ? 3 : p >= 99.9 ? 2 : 1)) : String(Math.round(p));
  // percentile distribution: x = 1/(1-p) on a log axis, labelled in percent
S.distChart = function (el, dists, labels) {
  const xs = [...new Set(dists.flatMap((d) => d.map((p) => p[0])))].sort((a, b) => a - b);
  const x = xs.map((p) => 1 / (1 - Math.min(p, 99.9999) / 100));
  const ys = dists.map((d) => { const m = new Map(d.map((p) => [p[0], p[1]])); return xs.map((p) => m.has(p) ? m.get(p) : null); });
  const splits = (u) => [1, 10, 100, 1000, 10000, 100000].filter((v) => v <= u.scales.x.max * 1.001);
  const axes = S.axes((v) => v == null ? "" : S.ms(v).replace(" ms", "ms"), {splits, values: (u, vs) => vs.map((v) => S.pctLabel(100 * (1 - 1 / v)) + "%")});
  return S.chart(el, {title: "Latency by percentile", height: 260, scales: {x: {time: false, distr: 3}, y: {distr: 3}}, axes,
    series: [{label: "percentile", value: (u, v) => v == null ? "" : S.pctLabel(100 * (1 - 1 / v)) + "%"},
      ...labels.map((l, i) => ({label: l, stroke: S.color(i), width: 2, spanGaps: true, value: (u, v) => S.ms(v)}))]}, [x, ...ys]);
};
S.pctRow = (p) => p ? [p.p50, p.p90, p.p95, p.p99, p.p999, p.max] : [null, null, null, null, null, null];


// --- header: theme, alerts --------------------------------------------------------
(function header() {
  const root = document.documentElement;
  const saved = localStorage.getItem("surge-theme");
  if (saved) root.dataset.theme = saved;
  document.addEventListener("DOMContentLoaded", () => {
    const btn = document.getElementById("theme");
    if (btn) btn.onclick = () => { root.dataset.theme = root.dataset.theme === "light" ? "dark" : "light"; localStorage.setItem("surge-theme", root.dataset.theme); location.reload(); };
    // firing alerts: a badge in the header on every page, and a banner (but on /hosts,
    // which lists them) naming the newest
    const firing = new Map();
    const badge = document.getElementById("alerts-badge"), banner = document.getElementById("alert-banner");
    const onHosts = document.body.dataset.page === "hosts";
    const show = () => {
      const list = [...firing.values()].sort((a, b) => b.ts - a.ts);
      if (badge) { badge.hidden = !list.length; badge.textContent = `⚠ ${list.length} alert${list.length === 1 ? "" : "s"}`; badge.title = list.map((a) => `${a.host}: ${a.message}`).join("\n"); }
      if (banner) {
        banner.hidden = !list.length || onHosts;
        if (list.length) banner.replaceChildren(h("span", {}, h("b", {text: `⚠ ${list[0].host} · ${list[0].name}`}), ` ${list[0].message}`,
          list.length > 1 ? h("span", {class: "muted", text: ` · and ${list.length - 1} more`}) : null), h("a", {href: "/hosts", text: "Hosts →"}));
      }
    };
    const take = (a) => { const k = a.host + "/" + a.name; if (a.state === "firing") firing.set(k, a); else firing.delete(k); };
    S.live.on("alerts", (list) => { firing.clear(); (list || []).forEach(take); show(); });
    S.live.on("alert", (a) => { take(a); show(); });
    S.live.sub("alerts");
  });
})();
