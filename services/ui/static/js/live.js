// A run's live view: KPIs, charts (rate, latency, errors, per request, per generator),
// generator flags, events, and the controls (rate, stop).
"use strict";
(function () {
  const {h} = Surge, S = Surge;
  const runId = decodeURIComponent(location.pathname.split("/")[2]);
  const MAX_POINTS = 600, SLACK = 60; // trim in batches: one splice a minute, not a shift a second
  const COLS = ["target_rps", "rps", "p50_ms", "p90_ms", "p99_ms", "errors", "late", "dropped"];
  // The run's seconds as columns (the server sends the history this way, see history.py);
  // each live snapshot appends one value to every column, charts read the arrays as they are.
  let seqs = [], cols = {}, req = new Map(), gen = new Map();
  let lost = new Map(), gaps = new Set(), behindAt = new Set(), events = [];
  let record = null, last = null, charts = {}, keys = {req: "", gen: ""}, dirty = false, built = false, shownEvents = -1;
  COLS.forEach((c) => (cols[c] = []));

  function fromHistory(d) {
    seqs = d.seq || []; cols = {}; COLS.forEach((c) => (cols[c] = (d.cols || {})[c] || seqs.map(() => null)));
    req = new Map(Object.entries(d.req || {})); gen = new Map(Object.entries(d.gen || {}));
    lost = new Map(Object.entries(d.lost || {})); gaps = new Set(d.gaps || []);
    behindAt = new Set(Object.values(d.behind || {}).flat());
    events = (d.events || []).map(([t, e]) => ({t, e}));
    last = d.last || null; shownEvents = -1;
  }
  function column(map, key) {
    let c = map.get(key);
    if (!c) { c = seqs.map(() => null); map.set(key, c); } // aligned: null before it appeared
    return c;
  }
  function dropNewest() {
    seqs.pop(); COLS.forEach((c) => cols[c].pop());
    for (const c of req.values()) c.pop();
    for (const c of gen.values()) c.pop();
  }
  function take(s) {
    if (last && s.seq < last.seq && seqs.length) return;
    if (last && s.seq === last.seq && seqs.length && seqs[seqs.length - 1] === s.seq) dropNewest();
    for (const n of Object.keys(s.per_request || {})) column(req, n);
    for (const g of Object.keys(s.generators || {})) column(gen, g);
    seqs.push(s.seq);
    COLS.forEach((c) => cols[c].push(s[c] ?? null));
    for (const [n, c] of req) { const r = s.per_request[n]; c.push(r ? r.p99_ms : null); }
    for (const [id, c] of gen) {
      const g = s.generators[id];
      c.push(g && !g.lost ? g.rps : null);
      if (g && g.lost && !lost.has(id)) { lost.set(id, s.seq); gaps.add(s.seq); }
      if (g && g.behind && !g.lost) behindAt.add(s.seq);
    }
    for (const e of s.events || []) { events.push({t: s.seq, e}); if (/ lost/.test(e)) gaps.add(s.seq); }
    last = s;
    if (seqs.length > MAX_POINTS + SLACK) {
      const k = seqs.length - MAX_POINTS;
      for (const a of [seqs, ...Object.values(cols), ...req.values(), ...gen.values()]) a.splice(0, k);
    }
    if (events.length > 400) events.splice(0, events.length - 200);
  }

  // --- charts --------------------------------------------------------------------
  // red bands: seconds a generator was lost; amber ticks under the plot: seconds one was behind
  const marksPlugin = (withBehind) => ({hooks: {drawClear: (u) => {
    const ctx = u.ctx, {left, top, width, height} = u.bbox;
    const band = (t, y, hgt, color) => { const x = u.valToPos(t, "x", true), w = Math.max(u.valToPos(t + 1, "x", true) - x, 3);
      if (x >= left && x <= left + width) { ctx.fillStyle = color; ctx.fillRect(x, y, w, hgt); } };
    ctx.save();
    for (const t of gaps) band(t, top, height, "rgba(255,93,93,0.22)");
    if (withBehind) for (const t of behindAt) band(t, top + height - 4 * devicePixelRatio, 4 * devicePixelRatio, "rgba(245,183,59,0.9)");
    ctx.restore(); }}});
  // 1-px lines (Grafana's default): a canvas without GPU draws them as hairlines, and a
  // wider line cost 300+ ms a second to rasterise with 50 generators (bench/ui_scale.py)
  const series = (label, i, extra) => Object.assign({label, stroke: S.color(i), width: 1, spanGaps: false}, extra || {});
  function defs() {
    return {reqNames: [...req.keys()].sort(), gens: [...gen.keys()].sort()};
  }
  function data(which, d) {
    const x = seqs;
    switch (which) {
      case "rate": return [x, cols.target_rps, cols.rps];
      case "lat": return [x, cols.p50_ms, cols.p90_ms, cols.p99_ms];
      case "err": return [x, cols.errors, cols.late, cols.dropped];
      case "req": return [x, ...d.reqNames.map((n) => req.get(n))];
      case "gen": return [x, ...d.gens.map((g) => gen.get(g))];
    }
  }
  function opts(which, d) {
    const base = {plugins: [marksPlugin(which === "gen")], axes: S.axes(null, S.timeAxis), scales: {x: {time: false}}};
    const ms = {axes: S.axes((v) => v == null ? "" : S.ms(v).replace(" ms", "ms"), S.timeAxis)};
    switch (which) {
      case "rate": return Object.assign(base, {title: "Throughput (req/s)", series: [S.timeSeries, series("target", 2, {dash: [6, 4]}), series("achieved", 0, {fill: "rgba(76,141,255,0.10)"})]});
      case "lat": return Object.assign(base, ms, {title: "Latency from intended time", series: [S.timeSeries, series("p50", 1), series("p90", 2), series("p99", 3)]});
      case "err": return Object.assign(base, {title: "Errors · late · dropped (per s)", series: [S.timeSeries, series("errors", 3, {fill: "rgba(255,93,93,0.12)"}), series("late", 2), series("dropped", 4)]});
      case "req": return Object.assign(base, ms, {title: "p99 per request", series: [S.timeSeries, ...d.reqNames.map((n, i) => series(n, i))]});
      case "gen": return Object.assign(base, {title: `Achieved req/s per generator (${d.gens.length}) · red: lost · amber: behind`, legend: {show: d.gens.length <= 12},
        series: [S.timeSeries, ...d.gens.map((g, i) => series(lost.has(g) ? `${g} (lost)` : g, i, {dash: lost.has(g) ? [3, 3] : undefined}))]});
    }
  }
  function drawCharts() {
    if (!built || !window.uPlot || !seqs.length) return;
    const w = document.getElementById("waiting"); if (w) w.remove();
    const d = defs();
    const rk = d.reqNames.join(","), gk = d.gens.join(",") + "|" + [...lost.keys()].join(",");
    for (const which of ["rate", "lat", "err", "req", "gen"]) {
      const el = document.getElementById("chart-" + which);
      const rebuild = !charts[which] || (which === "req" && rk !== keys.req) || (which === "gen" && gk !== keys.gen);
      if (rebuild) { if (charts[which]) charts[which].destroy(); el.replaceChildren(); charts[which] = S.chart(el, opts(which, d), data(which, d)); }
      else S.setData(charts[which], data(which, d));
    }
    keys = {req: rk, gen: gk};
  }

  // --- numbers ---------------------------------------------------------------------
  // a closed-model plan (users, user_stages): its users are the load, its rate an outcome
  // that no control sets (the coordinator refuses a rate change and per-generator control)
  function closedPlan() { const p = record && record.plan; return !!(p && (p.users != null || p.user_stages)); }
  function usersAt(plan, t) {  // the run's users at t s (user_stages ramp linearly from 0), as profile.users_at
    if (plan.users != null) return plan.users;
    let start = 0, prev = 0;
    for (const st of plan.user_stages) {
      if (t < start + st.duration) return Math.floor(prev + (st.target - prev) * (t - start) / st.duration + 1e-9);
      start += st.duration; prev = st.target;
    }
    return prev;
  }
  function kpis() {
    const s = last; if (!s) return;
    const behind = Object.values(s.generators).filter((g) => g.behind && !g.lost).length;
    const lost = Object.values(s.generators).filter((g) => g.lost).length;
    S.setKpi("kpi-target", closedPlan() ? S.num(usersAt(record.plan, s.seq + 0.5)) : S.rps(s.target_rps));
    S.setKpi("kpi-rps", S.rps(s.rps), s.rps < 0.95 * s.target_rps && s.seq > 1 ? "warn" : "");
    S.setKpi("kpi-p50", S.ms(s.p50_ms)); S.setKpi("kpi-p90", S.ms(s.p90_ms)); S.setKpi("kpi-p99", S.ms(s.p99_ms));
    S.setKpi("kpi-err", S.pct(s.error_rate), s.error_rate > 0.01 ? "bad" : "");
    S.setKpi("kpi-total", S.num(s.total_requests));
    S.setKpi("kpi-gens", [`${Object.keys(s.generators).length - lost}`, behind ? `${behind} behind` : "", lost ? `${lost} lost` : ""].filter(Boolean).join(" · "), lost ? "bad" : behind ? "warn" : "");
    const st = document.getElementById("state"); st.replaceChildren(S.badge(s.final ? s.state : s.state, s.state + (s.final ? "" : " pulse")));
    document.getElementById("clock").textContent = `${S.dur(s.elapsed_s)} / ${S.dur(s.duration_s)}`;
    document.getElementById("bar").style.width = `${Math.min(100, 100 * s.elapsed_s / Math.max(s.duration_s, 1))}%`;
    if (s.final) ended();
  }
  function ended() {
    const c = document.getElementById("controls"); if (c) c.replaceChildren(h("a", {class: "btn", id: "report-link", href: `/runs/${runId}/report`}, "Open report →"));
  }
  function tables() {
    const s = last; if (!s) return;
    const reqRows = Object.entries(s.per_request).sort().map(([n, r]) => h("tr", {}, S.td(n), S.td(S.rps(r.rps), "n"), S.td(S.num(r.errors), "n" + (r.errors ? " bad" : "")), S.td(S.ms(r.p50_ms), "n"), S.td(S.ms(r.p90_ms), "n"), S.td(S.ms(r.p99_ms), "n")));
    document.getElementById("req-table").replaceChildren(S.table([{label: "Request"}, {label: "req/s", n: 1}, {label: "errors", n: 1}, {label: "p50", n: 1}, {label: "p90", n: 1}, {label: "p99", n: 1}], reqRows));
    const gens = Object.entries(s.generators).sort((a, b) => (b[1].lost - a[1].lost) || (b[1].behind - a[1].behind) || a[0].localeCompare(b[0]));
    const genRows = gens.map(([id, g]) => h("tr", {"data-gen": id}, S.td(id, "mono"),
      S.td(g.lost ? h("span", {}, S.badge("lost"), lost.has(id) ? h("span", {class: "muted", text: ` at +${S.dur(+lost.get(id))}`}) : null) : stopped.has(id) ? S.badge("stopped", "warn") : g.behind ? S.badge("behind") : S.badge("ok")),
      S.td(S.rps(g.target_rps), "n"), S.td(S.rps(g.rps), "n"), S.td(S.num(g.late), "n" + (g.late ? " warn" : "")), S.td(S.num(g.dropped), "n" + (g.dropped ? " bad" : "")), S.td(S.ms(g.p99_ms), "n")));
    document.getElementById("gen-table").replaceChildren(S.table([{label: "Generator"}, {label: "status"}, {label: "target/s", n: 1}, {label: "req/s", n: 1}, {label: "late", n: 1}, {label: "dropped", n: 1}, {label: "p99", n: 1}], genRows));
    if (shownEvents === events.length) return;
    shownEvents = events.length;
    const ev = document.getElementById("events");
    ev.replaceChildren(...(events.length ? events.slice(-50).reverse().map((e) => h("div", {}, h("span", {class: "muted", text: `+${S.dur(e.t)}  `}), e.e)) : [h("div", {class: "muted", text: "no events yet"})]));
  }
  function paint() { const t0 = performance.now(); dirty = false; kpis(); tables(); genControls(); drawCharts(); S.perf.add("live-paint", performance.now() - t0); }
  function schedule() { if (!dirty) { dirty = true; requestAnimationFrame(paint); } }

  // --- one generator's rate, stop and start (docs/fleet.md) ---------------------------
  // rebuilt only when the generators or the stopped ones change, so a rate being typed stays
  let stopped = new Set(), ctlKey = "", logs = null;
  function genMsg(cls, text) { const m = document.getElementById("gen-msg"); m.className = cls; m.textContent = text; }
  async function refreshStopped() {
    try { record = await S.api("GET", `/api/runs/${runId}`); stopped = new Set(Object.keys(record.paused || {})); ctlKey = ""; schedule(); } catch (e) { /* next action */ }
  }
  async function genRate(id, input) {
    const rate = Number(input.value);
    if (!input.value || !isFinite(rate) || rate < 0) { genMsg("bad", "rate must be a number ≥ 0"); return; }
    try { const r = await S.api("POST", `/api/runs/${runId}/rate`, {rate, generator: id}); genMsg("good", `${id} → ${S.rps(rate)}/s (epoch ${r.epoch})`); await refreshStopped(); }
    catch (e) { genMsg("bad", e.message); }
  }
  async function genAct(kind, id) {
    if (!id) { genMsg("bad", "name a generator"); return; }
    try { const r = await S.api("POST", `/api/runs/${runId}/${kind}`, {generator: id}); genMsg(kind === "stop" ? "warn" : "good", `${id} ${kind === "stop" ? "stopped" : "started"} (epoch ${r.epoch})`); await refreshStopped(); }
    catch (e) { genMsg("bad", e.message); }
  }
  function genControls() {
    const s = last, box = document.getElementById("gen-ctl");
    if ((!box && !closedPlan()) || !s) return;
    if (s.final) { if (ctlKey !== "ended" && box) { ctlKey = "ended"; box.replaceChildren(h("div", {class: "muted", text: "the run has ended"})); } return; }
    const ids = Object.keys(s.generators).filter((id) => !s.generators[id].lost).sort();
    const key = ids.join(",") + "|" + [...stopped].sort().join(",");
    if (key === ctlKey) return;
    ctlKey = key;
    if (logs) logs.generators(ids);
    if (closedPlan()) return;  // no generator control for a closed plan: the log panel's list only
    const rows = ids.map((id) => h("tr", {"data-gen": id}, S.td(id, "mono"),
      S.td(stopped.has(id) ? S.badge("stopped", "warn") : S.badge("sending", "running")),
      S.td(h("input", {type: "number", min: "0", step: "any", placeholder: "req/s", class: "gen-rate", onkeydown: (e) => { if (e.key === "Enter") genRate(id, e.target); }})),
      S.td(h("button", {class: "gen-rate-btn", onclick: (e) => genRate(id, e.target.closest("tr").querySelector(".gen-rate"))}, "Set rate")),
      S.td(stopped.has(id) ? h("button", {class: "gen-start", onclick: () => genAct("start", id)}, "Start")
        : h("button", {class: "gen-stop danger", onclick: () => genAct("stop", id)}, "Stop"))));
    const add = h("input", {id: "add-gen", placeholder: "idle generator id", onkeydown: (e) => { if (e.key === "Enter") genAct("start", add.value.trim()); }});
    box.replaceChildren(S.table([{label: "Generator"}, {label: "state"}, {label: "its rate"}, {label: ""}, {label: ""}], rows, {class: "gen-ctl", id: "gen-ctl-table"}),
      h("div", {class: "controls", style: "margin-top:8px"}, add, h("button", {id: "add-gen-btn", onclick: () => genAct("start", add.value.trim())}, "Add to run")));
  }

  // --- controls --------------------------------------------------------------------
  async function setRate() {
    const input = document.getElementById("rate-input"), msg = document.getElementById("ctl-msg");
    const rate = Number(input.value);
    if (!input.value || !isFinite(rate) || rate < 0) { msg.className = "bad"; msg.textContent = "rate must be a number ≥ 0"; return; }
    try { const r = await S.api("POST", `/api/runs/${runId}/rate`, {rate}); msg.className = "good"; msg.textContent = `rate → ${S.rps(rate)}/s (epoch ${r.epoch})`; }
    catch (e) { msg.className = "bad"; msg.textContent = e.message; }
  }
  async function stop() {
    const msg = document.getElementById("ctl-msg");
    try { await S.api("POST", `/api/runs/${runId}/stop`); msg.className = "warn"; msg.textContent = "stopping…"; }
    catch (e) { msg.className = "bad"; msg.textContent = e.message; }
  }

  function layout() {
    const plan = record ? record.plan : null, closed = closedPlan();
    stopped = new Set(Object.keys((record && record.paused) || {}));
    logs = S.logPanel(runId, {follow: true});
    S.mount(
      h("div", {class: "head"}, h("h1", {text: plan ? plan.name : "Run"}), h("span", {class: "sub mono", text: runId}), h("span", {id: "state"}),
        h("span", {class: "sub", id: "clock"}), h("div", {class: "spacer"}),
        h("div", {class: "controls", id: "controls"},
          ...(closed ? [] : [
            h("input", {id: "rate-input", type: "number", min: "0", step: "any", placeholder: "req/s", onkeydown: (e) => { if (e.key === "Enter") setRate(); }}),
            h("button", {id: "rate-btn", onclick: setRate}, "Set rate")]),
          h("button", {id: "stop-btn", class: "danger", onclick: stop}, "Stop")),
        h("span", {id: "ctl-msg", class: "muted"})),
      h("div", {class: "progress", style: "margin:-6px 0 14px"}, h("div", {id: "bar", style: "width:0"})),
      h("div", {class: "kpis"}, S.kpi("kpi-target", closed ? "Users" : "Target req/s", "–"), S.kpi("kpi-rps", "Achieved req/s", "–"), S.kpi("kpi-p50", "p50", "–"),
        S.kpi("kpi-p90", "p90", "–"), S.kpi("kpi-p99", "p99", "–"), S.kpi("kpi-err", "Error rate", "–"), S.kpi("kpi-total", "Requests", "–"), S.kpi("kpi-gens", "Generators", "–")),
      h("div", {class: "grid g2"},
        h("div", {class: "panel"}, h("div", {class: "chart", id: "chart-rate"})),
        h("div", {class: "panel"}, h("div", {class: "chart", id: "chart-lat"})),
        h("div", {class: "panel"}, h("div", {class: "chart", id: "chart-err"})),
        h("div", {class: "panel"}, h("div", {class: "chart", id: "chart-req"})),
        h("div", {class: "panel"}, h("div", {class: "chart", id: "chart-gen"})),
        h("div", {class: "panel"}, h("h2", {text: "Requests"}), h("div", {id: "req-table"}), h("h2", {text: "Events", style: "margin-top:12px"}), h("div", {class: "events", id: "events"}))),
      h("div", {class: "panel", style: "margin-top:14px"}, h("h2", {text: "Generators"}), h("div", {id: "gen-table"})),
      ...(closed ? [] : [h("div", {class: "panel", id: "gen-ctl-panel"}, h("h2", {text: "Generator control"}),
        h("div", {class: "muted", text: "one generator's rate (the run's total becomes the sum), stop it (its share is not moved), start it again, or add an idle one"}),
        h("div", {id: "gen-ctl"}), h("span", {id: "gen-msg", class: "muted"}))]),
      logs.el);
    built = true;
    if (record && ["finished", "stopped", "failed"].includes(record.state)) {
      ended(); document.getElementById("state").replaceChildren(S.badge(record.state));
    }
    if (!seqs.length) document.getElementById("chart-rate").append(h("div", {class: "empty", id: "waiting", text: "waiting for the first second of data…"}));
    schedule();
  }

  S.live.on("live-history", (d, k) => { if (k !== runId) return; fromHistory(d || {}); schedule(); });
  S.live.on("live", (s, k) => { if (k !== runId) return; take(s); schedule(); });
  document.addEventListener("DOMContentLoaded", async () => {
    try { record = await S.api("GET", `/api/runs/${runId}`); }
    catch (e) { if (e.status === 404) { S.mount(S.errorBanner(e)); return; } }
    layout();
    S.live.sub("live:" + runId);
  });
})();
