// Runs: every run the coordinator knows, live numbers for the running ones, compare.
"use strict";
(function () {
  const {h} = Surge, S = Surge;
  const rows = new Map(), live = new Map(), selected = new Set();
  let records = [];

  function achieved(r) {
    const l = live.get(r.run_id);
    if (l && !l.final) return l.rps;
    const end = r.ended_at || Date.now() / 1000, span = end - r.start_at;
    return span > 0 && r.requests ? r.requests / span : null;
  }
  function row(r) {
    const l = live.get(r.run_id), running = !["finished", "stopped", "failed"].includes(r.state);
    const state = l && !l.final ? l.state : r.state;
    const p99 = l && !l.final ? l.p99_ms : r.p99_ms;
    const errRate = l && !l.final ? l.error_rate : r.requests ? r.errors / r.requests : null;
    const target = l && !l.final ? l.target_rps : r.target_rps;
    const box = h("input", {type: "checkbox", class: "sel", "data-run": r.run_id, checked: selected.has(r.run_id),
      onchange: (e) => { e.target.checked ? selected.add(r.run_id) : selected.delete(r.run_id); updateCompare(); }});
    const link = running ? `/runs/${r.run_id}` : `/runs/${r.run_id}/report`;
    const progress = l && !l.final && l.duration_s ? h("div", {class: "progress"}, h("div", {style: `width:${Math.min(100, 100 * l.elapsed_s / l.duration_s)}%`})) : null;
    return h("tr", {"data-run": r.run_id},
      S.td(box),
      S.td(h("div", {}, h("a", {href: link, class: "mono", text: r.run_id}), progress)),
      S.td(r.plan.name),
      S.td(S.badge(state, state + (running ? " pulse" : ""))),
      S.td(r.verdict ? S.badge(r.verdict) : h("span", {class: "muted", text: running ? "…" : "–"})),
      S.td(S.ago(r.start_at), "muted"),
      S.td(S.dur((r.ended_at || r.end_at) - r.start_at), "n"),
      S.td(S.rps(target), "n"),
      S.td(S.rps(achieved(r)), "n"),
      S.td(S.ms(p99), "n"),
      S.td(S.pct(errRate), "n" + (errRate > 0.01 ? " bad" : "")),
      S.td(S.num(l && !l.final ? l.total_requests : r.requests), "n"),
      S.td(h("span", {}, running ? h("a", {href: `/runs/${r.run_id}`, text: "live"}) : h("a", {href: `/runs/${r.run_id}/report`, text: "report"}))));
  }
  const cols = [{label: ""}, {label: "Run"}, {label: "Plan"}, {label: "State"}, {label: "Verdict"}, {label: "Started"},
    {label: "Duration", n: 1}, {label: "Target /s", n: 1}, {label: "Achieved /s", n: 1}, {label: "p99", n: 1},
    {label: "Errors", n: 1}, {label: "Requests", n: 1}, {label: ""}];

  function updateCompare() {
    const b = document.getElementById("compare-btn");
    if (b) { b.disabled = selected.size < 2; b.textContent = selected.size >= 2 ? `Compare ${selected.size} runs` : "Compare (select 2+)"; }
  }
  function render() {
    const running = records.filter((r) => !["finished", "stopped", "failed"].includes(r.state)).length;
    const body = records.length ? S.table(cols, records.map(row), {id: "runs-table"})
      : h("div", {class: "empty"}, "No runs yet. ", h("a", {href: "/new", text: "Start one"}), " or `surge run plans/demo.yaml`.");
    S.mount(
      h("div", {class: "head"}, h("h1", {text: "Runs"}),
        h("span", {class: "sub", text: `${records.length} runs · ${running} running`}), h("div", {class: "spacer"}),
        h("button", {id: "compare-btn", disabled: true, onclick: () => { location.href = "/compare?runs=" + [...selected].join(","); }}, "Compare"),
        h("button", {class: "primary", onclick: () => { location.href = "/new"; }}, "New run")),
      h("div", {class: "panel"}, body));
    updateCompare();
  }
  let timer = null;
  async function load() {
    try { records = (await S.api("GET", "/api/runs?limit=200")).runs; render(); }
    catch (e) { S.mount(S.errorBanner(e)); }
  }
  const reload = () => { clearTimeout(timer); timer = setTimeout(load, 300); };

  S.live.on("runs", (list) => { (list || []).forEach((s) => live.set(s.run_id, s)); if (records.length) render(); });
  S.live.on("run", (s) => {
    const before = live.get(s.run_id); live.set(s.run_id, s);
    const r = records.find((x) => x.run_id === s.run_id);
    if (!r || s.final || (before && before.state !== s.state)) return reload();
    const old = document.querySelector(`tr[data-run="${s.run_id}"]`);
    if (old) old.replaceWith(row(r));
  });
  document.addEventListener("DOMContentLoaded", () => { load(); S.live.sub("runs"); setInterval(load, 15000); });
})();
