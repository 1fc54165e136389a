// Generators: the live registry (heartbeats), with load and heartbeat age.
"use strict";
(function () {
  const {h} = Surge, S = Surge;
  const gens = new Map();
  function age(g) { return Date.now() / 1000 - g.sent_at; }
  function render() {
    const list = [...gens.values()].filter((g) => age(g) < 60).sort((a, b) => a.id.localeCompare(b.id));
    const running = list.filter((g) => g.state === "running").length;
    const cores = list.reduce((a, g) => a + g.cores, 0);
    const rows = list.map((g) => {
      const a = age(g), stale = a > 3;
      const load = g.target_rps ? g.achieved_rps / g.target_rps : null;
      return h("tr", {"data-gen": g.id},
        S.td(g.id, "mono"), S.td(g.host), S.td(stale ? S.badge("stale") : S.badge(g.state, g.state === "running" ? "running" : "")),
        S.td(g.run_id ? h("a", {href: `/runs/${g.run_id}`, class: "mono", text: g.run_id}) : "–"),
        S.td(S.num(g.cores), "n"), S.td(S.num(g.workers), "n"), S.td(S.num(g.cpu_percent, 0) + "%", "n" + (g.cpu_percent > 90 ? " bad" : "")),
        S.td(S.rps(g.target_rps), "n"), S.td(S.rps(g.achieved_rps), "n" + (load != null && load < 0.95 ? " warn" : "")),
        S.td(S.num(g.in_flight), "n"), S.td(S.rps(g.capacity_rps), "n"),
        S.td(a < 1.5 ? "just now" : `${S.num(a, 1)}s ago`, "n" + (stale ? " bad" : " muted")), S.td(g.version, "muted"), S.td(S.ago(g.started_at), "muted"));
    });
    const cols = ["Generator", "Host", "State", "Run", "Cores", "Workers", "CPU", "Target/s", "Achieved/s", "In flight", "Capacity/s", "Heartbeat", "Version", "Up since"]
      .map((l, i) => ({label: l, n: i >= 4 && i <= 11}));
    S.mount(
      h("div", {class: "head"}, h("h1", {text: "Generators"}), h("span", {class: "sub", id: "gen-summary", text: `${list.length} registered · ${running} running · ${cores} cores`})),
      h("div", {class: "panel"}, list.length ? S.table(cols, rows, {id: "gen-table"}) : h("div", {class: "empty", text: "No generator is heart-beating. Start one: python -m services.generator"})));
  }
  S.live.on("generators", (m) => { gens.clear(); for (const [id, g] of Object.entries(m || {})) if (g) gens.set(id, g); render(); });
  S.live.on("generator", (g, id) => { if (g) gens.set(id, g); else gens.delete(id); });
  document.addEventListener("DOMContentLoaded", () => { S.live.sub("generators"); setInterval(render, 1000); });
})();
