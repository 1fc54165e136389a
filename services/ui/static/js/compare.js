// Compare two or more runs side by side: the first is the baseline; differences of
// 5% or more are marked better (green) or worse (red).
"use strict";
(function () {
  const {h} = Surge, S = Surge;
  const ids = (new URLSearchParams(location.search).get("runs") || "").split(",").filter(Boolean);
  const THRESHOLD = 0.05;
  // [label, getter, formatter, direction]: +1 higher is better, -1 lower is better, 0 neutral
  const METRICS = [
    ["verdict", (r) => r.verdict, (v) => S.badge(v), 0],
    ["target req/s", (r) => r.target_rps, S.rps, 0],
    ["achieved req/s", (r) => r.totals.achieved_rps, S.rps, +1],
    ["requests", (r) => r.totals.requests, (v) => S.num(v), 0],
    ["error rate", (r) => r.totals.error_rate, (v) => S.pct(v), -1],
    ["late", (r) => r.totals.late, (v) => S.num(v), -1],
    ["dropped", (r) => r.totals.dropped, (v) => S.num(v), -1],
    ["mean", (r) => (r.totals.latency_ms || {}).mean, S.ms, -1],
    ["p50", (r) => (r.totals.latency_ms || {}).p50, S.ms, -1],
    ["p90", (r) => (r.totals.latency_ms || {}).p90, S.ms, -1],
    ["p95", (r) => (r.totals.latency_ms || {}).p95, S.ms, -1],
    ["p99", (r) => (r.totals.latency_ms || {}).p99, S.ms, -1],
    ["p99.9", (r) => (r.totals.latency_ms || {}).p999, S.ms, -1],
    ["max", (r) => (r.totals.latency_ms || {}).max, S.ms, -1],
  ];
  function cell(base, v, fmt, dir) {
    const td = h("td", {class: "n"}, fmt(v));
    if (base == null || v == null || typeof v !== "number" || typeof base !== "number") {
      if (dir === 0 && base !== v && base != null) td.classList.add("diff");
      return td;
    }
    const d = base === 0 ? (v === 0 ? 0 : Infinity) : (v - base) / Math.abs(base);
    if (Math.abs(d) < THRESHOLD) { td.append(h("span", {class: "delta same", text: "≈"})); return td; }
    const cls = dir === 0 ? "same" : (d > 0) === (dir > 0) ? "better" : "worse";
    td.classList.add("diff"); td.dataset.delta = cls;
    td.append(h("span", {class: "delta " + cls, text: isFinite(d) ? `${d > 0 ? "+" : ""}${S.num(d * 100, 1)}%` : "new"}));
    return td;
  }
  function render(c) {
    const runs = c.runs, base = runs[0];
    const head = [{label: "metric"}, ...runs.map((r, i) => ({label: (i === 0 ? "baseline · " : "") + r.run_id, n: 1}))];
    const rows = METRICS.map(([label, get, fmt, dir]) => h("tr", {}, S.td(label), ...runs.map((r, i) => i === 0 ? h("td", {class: "n"}, fmt(get(r))) : cell(get(base), get(r), fmt, dir))));
    const names = [...new Set(runs.flatMap((r) => Object.keys(r.requests)))].sort();
    const reqRows = names.flatMap((n) => ["p50", "p99"].map((p) => h("tr", {}, S.td(`${n} · ${p}`),
      ...runs.map((r, i) => { const get = (x) => ((x.requests[n] || {}).latency_ms || {})[p]; return i === 0 ? h("td", {class: "n"}, S.ms(get(r))) : cell(get(base), get(r), S.ms, -1); }))));
    // the machines: each host's CPU and each generator's peak, and who set the rate
    const hostNames = [...new Set(runs.flatMap((r) => r.hosts ? r.hosts.hosts.filter((x) => x.monitored).map((x) => x.host) : []))].sort();
    const genNames = [...new Set(runs.flatMap((r) => r.hosts ? r.hosts.generators.map((g) => g.generator_id) : []))].sort();
    const hostOf = (r, n) => r.hosts ? r.hosts.hosts.find((x) => x.host === n) || {} : {};
    const genOf = (r, n) => r.hosts ? r.hosts.generators.find((g) => g.generator_id === n) || {} : {};
    const pctFmt = (v) => v == null ? "–" : S.num(v, 1) + "%";
    const row = (label, get, fmt, dir) => h("tr", {}, S.td(label), ...runs.map((r, i) => i === 0 ? h("td", {class: "n"}, fmt(get(r))) : cell(get(base), get(r), fmt, dir)));
    const hostRows = [
      h("tr", {}, S.td("the limit"), ...runs.map((r) => h("td", {class: "n" + (r.hosts && r.hosts.limited_by.length ? " bad" : "")}, r.hosts ? (r.hosts.limited_by.length ? r.hosts.limited_by.join(", ") : "target") : "–"))),
      ...hostNames.flatMap((n) => [row(`${n} · cpu mean`, (r) => hostOf(r, n).cpu_mean, pctFmt, -1), row(`${n} · cpu peak`, (r) => hostOf(r, n).cpu_max, pctFmt, -1),
        row(`${n} · iowait peak`, (r) => hostOf(r, n).iowait_max, pctFmt, -1), row(`${n} · steal peak`, (r) => hostOf(r, n).steal_max, pctFmt, -1),
        row(`${n} · mem peak`, (r) => hostOf(r, n).mem_max, pctFmt, -1), row(`${n} · retrans/s peak`, (r) => hostOf(r, n).retrans_max_ps, (v) => v == null ? "–" : S.num(v, 1), -1)]),
      ...genNames.map((n) => row(`${n} · cpu peak (of its cores)`, (r) => genOf(r, n).peak_pct, pctFmt, -1)),
    ];
    const thrNames = [...new Set(runs.flatMap((r) => r.thresholds.map(S.thrLabel)))];
    const thrRows = thrNames.map((n) => h("tr", {}, S.td(n, "mono"), ...runs.map((r) => { const t = r.thresholds.find((x) => S.thrLabel(x) === n); return h("td", {class: "n"}, t ? h("span", {}, S.num(t.value, 3), " ", S.badge(t.ok ? "pass" : "fail")) : "–"); })));
    S.mount(
      h("div", {class: "head"}, h("h1", {text: "Compare"}), h("span", {class: "sub", text: `${c.plan_names.join(", ")} · ${runs.length} runs · baseline ${base.run_id}`})),
      c.same_plan ? null : h("div", {class: "banner warn", id: "plan-warning", text: `These runs come from different plans (${c.plan_names.join(", ")}): differences may not mean much.`}),
      h("div", {class: "grid g2"},
        h("div", {class: "panel"}, h("h2", {text: "Totals (latency from intended time)"}), S.table(head, rows, {id: "compare-table"})),
        h("div", {class: "panel"}, h("div", {class: "chart", id: "chart-dist"}))),
      h("div", {class: "grid g2", style: "margin-top:14px"},
        h("div", {class: "panel"}, h("h2", {text: "Per request"}), S.table(head, reqRows),
          h("h2", {text: "Hosts", style: "margin-top:12px"}), S.table(head, hostRows, {id: "compare-hosts"})),
        h("div", {class: "panel"}, h("h2", {text: "Thresholds"}), thrRows.length ? S.table(head, thrRows, {id: "compare-thresholds"}) : h("div", {class: "muted", text: "no thresholds"}),
          h("h2", {text: "Runs", style: "margin-top:12px"}), S.table([{label: "run"}, {label: "state"}, {label: "started"}, {label: "duration", n: 1}],
            runs.map((r) => h("tr", {}, S.td(h("a", {href: `/runs/${r.run_id}/report`, class: "mono", text: r.run_id})), S.td(S.badge(r.state)), S.td(S.time(r.started_at), "muted"), S.td(S.dur(r.duration_s), "n")))))));
    S.distChart(document.getElementById("chart-dist"), runs.map((r) => r.distribution), runs.map((r) => r.run_id));
  }
  document.addEventListener("DOMContentLoaded", async () => {
    S.live.start();
    try { render(await S.api("GET", "/api/compare?runs=" + encodeURIComponent(ids.join(",")))); }
    catch (e) { S.mount(h("div", {class: "head"}, h("h1", {text: "Compare"})), S.errorBanner(e), h("a", {href: "/", text: "← pick runs on the Runs page"})); }
  });
})();
