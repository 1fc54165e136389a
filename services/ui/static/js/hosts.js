// Hosts: the monitor's samples (CPU, memory, network, TCP states, Surge processes)
// with short history charts, and the alerts that are firing.
"use strict";
(function () {
  const {h} = Surge, S = Surge;
  const MAX = 120, hosts = new Map(), charts = new Map(), firing = new Map();
  let dirty = false;
  const netSum = (s) => Object.values(s.net || {}).reduce((a, n) => ({rx: a.rx + n.rx_bps, tx: a.tx + n.tx_bps}), {rx: 0, tx: 0});
  function take(s) { const l = hosts.get(s.host) || []; l.push(s); if (l.length > MAX) l.splice(0, l.length - MAX); hosts.set(s.host, l); }
  function card(name, list) {
    const s = list[list.length - 1], net = netSum(s);
    const tcp = Object.entries(s.tcp || {}).sort((a, b) => b[1] - a[1]);
    const procs = (s.processes || []).slice().sort((a, b) => b.cpu_pct - a.cpu_pct).slice(0, 8);
    const stale = Date.now() / 1000 - s.ts > 5;
    return h("div", {class: "panel hostcard", "data-host": name},
      h("div", {class: "head", style: "margin-bottom:4px"}, h("h3", {text: name}), stale ? S.badge("stale") : S.badge("ok"),
        h("span", {class: "sub", text: `${s.cores} cores · load ${S.num(s.load1, 2)} ${S.num(s.load5, 2)} ${S.num(s.load15, 2)} · ${S.ago(s.ts)}`})),
      h("div", {class: "minikpis"},
        h("div", {}, h("span", {text: "CPU"}), h("b", {class: s.cpu_pct > 90 ? "bad" : "", text: S.num(s.cpu_pct, 0) + "%"})),
        h("div", {}, h("span", {text: "Memory"}), h("b", {class: s.mem_pct > 90 ? "bad" : "", text: S.num(s.mem_pct, 0) + "%"}), h("span", {text: `${S.bytes(s.mem_used_bytes)} / ${S.bytes(s.mem_total_bytes)}`})),
        h("div", {}, h("span", {text: "Net rx / tx"}), h("b", {text: `${S.bytes(net.rx)}/s`}), h("span", {text: `tx ${S.bytes(net.tx)}/s`})),
        h("div", {}, h("span", {text: "iowait · swap · fds"}), h("b", {text: `${S.num(s.iowait_pct, 0)}% · ${S.num(s.swap_pct, 0)}%`}), h("span", {text: `${S.num(s.open_fds)} fds`}))),
      h("div", {class: "bars", title: "CPU per core"}, ...(s.cpu_per_core || []).map((c) => h("div", {style: `height:${Math.max(2, c)}%`, title: `${S.num(c, 0)}%`}))),
      h("div", {class: "chart", id: "hc-" + name}),
      h("div", {class: "cols"},
        h("div", {}, h("h2", {text: "TCP states"}), tcp.length ? S.table([{label: "state"}, {label: "conns", n: 1}], tcp.map(([k, v]) => h("tr", {}, S.td(k, "mono"), S.td(S.num(v), "n")))) : h("div", {class: "muted", text: "–"})),
        h("div", {}, h("h2", {text: "Surge processes"}), procs.length ? S.table([{label: "name"}, {label: "pid", n: 1}, {label: "cpu", n: 1}, {label: "rss", n: 1}],
          procs.map((p) => h("tr", {}, S.td(p.name), S.td(p.pid, "n"), S.td(S.num(p.cpu_pct, 0) + "%", "n"), S.td(S.bytes(p.rss_bytes), "n")))) : h("div", {class: "muted", text: "–"}))));
  }
  function chartData(list) {
    return [list.map((s) => s.ts), list.map((s) => s.cpu_pct), list.map((s) => s.mem_pct), list.map((s) => { const n = netSum(s); return (n.rx + n.tx) / 1048576; })];
  }
  function render() {
    dirty = false;
    const names = [...hosts.keys()].sort();
    const alerts = [...firing.values()];
    S.mount(
      h("div", {class: "head"}, h("h1", {text: "Hosts"}), h("span", {class: "sub", text: `${names.length} hosts reporting · ${alerts.length} alerts firing`})),
      alerts.length ? h("div", {class: "panel", id: "alerts"}, h("h2", {text: "Firing alerts"}), S.table([{label: "host"}, {label: "alert"}, {label: "value", n: 1}, {label: "threshold", n: 1}, {label: "since"}, {label: ""}],
        alerts.map((a) => h("tr", {}, S.td(a.host), S.td(h("span", {}, S.badge("firing"), " ", a.name)), S.td(S.num(a.value, 1), "n"), S.td(S.num(a.threshold, 1), "n"), S.td(S.ago(a.ts), "muted"), S.td(a.message))))) : null,
      names.length ? h("div", {class: "grid g2"}, ...names.map((n) => card(n, hosts.get(n))))
        : h("div", {class: "panel empty", text: "No host samples yet — is the monitor running? (python -m services.monitor)"}));
    charts.clear();
    for (const n of names) {
      const el = document.getElementById("hc-" + n);
      charts.set(n, S.chart(el, {height: 150, scales: {x: {time: true, range: (u, min, max) => [Math.min(min, max - 120), max]}, pct: {range: [0, 100]}},
        axes: [S.axes()[0], Object.assign(S.axes()[1], {scale: "pct", values: (u, vs) => vs.map((v) => v + "%")}), Object.assign(S.axes()[1], {scale: "mb", side: 1, grid: {show: false}, values: (u, vs) => vs.map((v) => S.num(v, 1) + "M")})],
        series: [{}, {label: "cpu %", stroke: S.color(0), scale: "pct", width: 1.5}, {label: "mem %", stroke: S.color(1), scale: "pct", width: 1.5}, {label: "net MB/s", stroke: S.color(2), scale: "mb", width: 1.2}]}, chartData(hosts.get(n))));
    }
  }
  const schedule = () => { if (!dirty) { dirty = true; setTimeout(() => requestAnimationFrame(render), 200); } };
  S.live.on("hosts", (m) => { hosts.clear(); for (const [n, l] of Object.entries(m || {})) l.forEach(take); schedule(); });
  S.live.on("host", (s) => { take(s); schedule(); });
  S.live.on("alerts", (l) => { (l || []).forEach((a) => a.state === "firing" ? firing.set(a.host + a.name, a) : firing.delete(a.host + a.name)); schedule(); });
  S.live.on("alert", (a) => { a.state === "firing" ? firing.set(a.host + a.name, a) : firing.delete(a.host + a.name); schedule(); });
  document.addEventListener("DOMContentLoaded", () => { S.live.sub("hosts"); schedule(); });
})();
