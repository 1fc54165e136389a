// Generators: the live registry (heartbeats), with load and heartbeat age.
"use strict";
(function () {
  const {h} = Surge, S = Surge;
  const gens = new Map();
  let filter = "";  // "room=a,zone=eu-1": only generators carrying every one of these labels
  const labelText = (g) => Object.entries(g.labels || {}).sort().map(([k, v]) => `${k}=${v}`).join(",");
  function matches(g) {
    const have = g.labels || {};
    return filter.split(",").map((p) => p.trim()).filter(Boolean).every((p) => { const [k, v = ""] = p.split("="); return have[k.trim()] === v.trim(); });
  }
  function age(g) { return Date.now() / 1000 - g.sent_at; }
  function render() {
    const all = [...gens.values()].filter((g) => age(g) < 60);
    const list = all.filter(matches).sort((a, b) => a.id.localeCompare(b.id));
    const running = list.filter((g) => g.state === "running").length;
    const cores = list.reduce((a, g) => a + g.cores, 0);
    const rows = list.map((g) => {
      const a = age(g), stale = a > 3;
      const load = g.target_rps ? g.achieved_rps / g.target_rps : null;
      return h("tr", {"data-gen": g.id},
        S.td(g.id, "mono"), S.td(g.host), S.td(labelText(g) || "–", "mono labels"), S.td(stale ? S.badge("stale") : S.badge(g.state, g.state === "running" ? "running" : "")),
        S.td(g.run_id ? h("a", {href: `/runs/${g.run_id}`, class: "mono", text: g.run_id}) : "–"),
        S.td(S.num(g.cores), "n"), S.td(S.num(g.workers), "n"), S.td(S.num(g.cpu_percent, 0) + "%", "n" + (g.cpu_percent > 90 ? " bad" : "")),
        S.td(S.rps(g.target_rps), "n"), S.td(S.rps(g.achieved_rps), "n" + (load != null && load < 0.95 ? " warn" : "")),
        S.td(S.num(g.in_flight), "n"), S.td(S.rps(g.capacity_rps), "n"),
        S.td(a < 1.5 ? "just now" : `${S.num(a, 1)}s ago`, "n" + (stale ? " bad" : " muted")), S.td(g.version, "muted"), S.td(S.ago(g.started_at), "muted"));
    });
    const cols = ["Generator", "Host", "Labels", "State", "Run", "Cores", "Workers", "CPU", "Target/s", "Achieved/s", "In flight", "Capacity/s", "Heartbeat", "Version", "Up since"]
      .map((l, i) => ({label: l, n: i >= 5 && i <= 12}));
    if (!document.getElementById("gen-panel")) {
      S.mount(h("div", {class: "head"}, h("h1", {text: "Generators"}), h("span", {class: "sub", id: "gen-summary"}), h("div", {class: "spacer"}), filterBox),
        h("div", {class: "panel", id: "gen-panel"}));
    }
    document.getElementById("gen-summary").textContent = `${list.length} registered · ${running} running · ${cores} cores` + (filter.trim() ? ` · ${all.length - list.length} filtered out` : "");
    document.getElementById("gen-panel").replaceChildren(list.length ? S.table(cols, rows, {id: "gen-table"})
      : h("div", {class: "empty", text: all.length ? `No generator carries ${filter.trim()}.` : "No generator is heart-beating. Start one: python -m services.generator"}));
  }
  // built once: re-rendering every second must not take the text being typed
  const filterBox = h("input", {id: "label-filter", placeholder: "filter: room=a,zone=eu-1", oninput: (e) => { filter = e.target.value; render(); }});
  S.live.on("generators", (m) => { gens.clear(); for (const [id, g] of Object.entries(m || {})) if (g) gens.set(id, g); render(); });
  S.live.on("generator", (g, id) => { if (g) gens.set(id, g); else gens.delete(id); });
  document.addEventListener("DOMContentLoaded", () => { S.live.sub("generators"); setInterval(render, 1000); });
})();
