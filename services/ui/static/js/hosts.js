// Hosts: the monitor's samples (CPU, memory, network, TCP states, Surge processes)
// with short history charts, and its alerts (firing, and the recent ones resolved).
// Built once; a sample updates only its own host's card (no full redraw per sample).
"use strict";
(function () {
  const {h} = Surge, S = Surge;
  const MAX = 120, RECENT = 12;
  const hosts = new Map(), cards = new Map(), firing = new Map(), dirty = new Set();
  let recent = [], alertsDirty = true, scheduled = false, built = false;
  const netSum = (s) => Object.values(s.net || {}).reduce((a, n) => ({rx: a.rx + n.rx_bps, tx: a.tx + n.tx_bps}), {rx: 0, tx: 0});
  const akey = (a) => a.host + "/" + a.name;
  function take(s) { const l = hosts.get(s.host) || []; l.push(s); if (l.length > MAX) l.splice(0, l.length - MAX); hosts.set(s.host, l); dirty.add(s.host); }
  function takeAlert(a) {
    if (a.state === "firing") firing.set(akey(a), a); else firing.delete(akey(a));
    recent.unshift(a); if (recent.length > RECENT) recent.length = RECENT;
    dirty.add(a.host); alertsDirty = true;
  }

  // --- one host's card: built once, its parts refilled on each sample ---------------
  // a card off screen is refilled when it scrolls near the viewport, not on every sample
  const onScreen = new IntersectionObserver((entries) => {
    for (const e of entries) {
      const name = e.target.dataset.host, c = cards.get(name);
      if (!c) continue;
      c.visible = e.isIntersecting;
      if (c.visible && c.stale) { c.stale = false; fill(name, c); }
    }
  }, {rootMargin: "300px"});
  function newCard(name) {
    const c = {head: h("div", {class: "head", style: "margin-bottom:4px"}), kpis: h("div", {class: "minikpis"}),
      bars: h("div", {class: "bars", title: "CPU per core"}), chartEl: h("div", {class: "chart", id: "hc-" + name}), cols: h("div", {class: "cols"}),
      visible: true, stale: false};
    c.el = h("div", {class: "panel hostcard", "data-host": name}, c.head, c.kpis, c.bars, c.chartEl, c.cols);
    onScreen.observe(c.el);
    return c;
  }
  function fill(name, c) {
    const list = hosts.get(name), s = list[list.length - 1], net = netSum(s);
    const tcp = Object.entries(s.tcp || {}).sort((a, b) => b[1] - a[1]);
    const procs = (s.processes || []).slice().sort((a, b) => b.cpu_pct - a.cpu_pct).slice(0, 8);
    const stale = Date.now() / 1000 - s.ts > 5;
    const hot = [...firing.values()].filter((a) => a.host === name);
    c.el.classList.toggle("alerting", hot.length > 0);
    c.head.replaceChildren(h("h3", {text: name}), stale ? S.badge("stale") : S.badge("ok"),
      ...hot.map((a) => h("span", {class: "badge firing", title: a.message, text: a.name})),
      h("span", {class: "sub", text: `${s.cores} cores · load ${S.num(s.load1, 2)} ${S.num(s.load5, 2)} ${S.num(s.load15, 2)} · ${S.ago(s.ts)}`}));
    c.kpis.replaceChildren(
      h("div", {}, h("span", {text: "CPU"}), h("b", {class: s.cpu_pct > 90 ? "bad" : "", text: S.num(s.cpu_pct, 0) + "%"})),
      h("div", {}, h("span", {text: "Memory"}), h("b", {class: s.mem_pct > 90 ? "bad" : "", text: S.num(s.mem_pct, 0) + "%"}), h("span", {text: `${S.bytes(s.mem_used_bytes)} / ${S.bytes(s.mem_total_bytes)}`})),
      h("div", {}, h("span", {text: "Net rx / tx"}), h("b", {text: `${S.bytes(net.rx)}/s`}), h("span", {text: `tx ${S.bytes(net.tx)}/s`})),
      h("div", {}, h("span", {text: "iowait · swap · fds"}), h("b", {text: `${S.num(s.iowait_pct, 0)}% · ${S.num(s.swap_pct, 0)}%`}), h("span", {text: `${S.num(s.open_fds)} fds`})));
    c.bars.replaceChildren(...(s.cpu_per_core || []).map((v) => h("div", {style: `height:${Math.max(2, Math.min(100, v))}%`, title: `${S.num(v, 0)}%`})));
    c.cols.replaceChildren(
      h("div", {}, h("h2", {text: "TCP states"}), tcp.length ? S.table([{label: "state"}, {label: "conns", n: 1}], tcp.map(([k, v]) => h("tr", {}, S.td(k, "mono"), S.td(S.num(v), "n")))) : h("div", {class: "muted", text: "–"})),
      h("div", {}, h("h2", {text: "Surge processes"}), procs.length ? S.table([{label: "name"}, {label: "pid", n: 1}, {label: "cpu", n: 1}, {label: "rss", n: 1}],
        procs.map((p) => h("tr", {}, S.td(p.name), S.td(p.pid, "n"), S.td(S.num(p.cpu_pct, 0) + "%", "n"), S.td(S.bytes(p.rss_bytes), "n")))) : h("div", {class: "muted", text: "–"})));
    const data = [list.map((x) => x.ts), list.map((x) => x.cpu_pct), list.map((x) => x.mem_pct), list.map((x) => { const n = netSum(x); return (n.rx + n.tx) / 1048576; })];
    if (c.chart) S.setData(c.chart, data);
    else c.chart = S.chart(c.chartEl, {height: 150, scales: {x: {time: true, range: (u, min, max) => [Math.min(min, max - 120), max]}, pct: {range: [0, 100]}},
      axes: [S.axes()[0], Object.assign(S.axes()[1], {scale: "pct", values: (u, vs) => vs.map((v) => v + "%")}), Object.assign(S.axes()[1], {scale: "mb", side: 1, grid: {show: false}, values: (u, vs) => vs.map((v) => S.num(v, 1) + "M")})],
      series: [{}, {label: "cpu %", stroke: S.color(0), scale: "pct", width: 1}, {label: "mem %", stroke: S.color(1), scale: "pct", width: 1}, {label: "net MB/s", stroke: S.color(2), scale: "mb", width: 1}]}, data);
  }

  // --- alerts: firing first, then what happened lately -------------------------------
  function alertRow(a) {
    return h("tr", {"data-alert": akey(a), "data-state": a.state}, S.td(S.badge(a.state)), S.td(a.host), S.td(a.name, "mono"),
      S.td(`${S.num(a.value, 1)} / ${S.num(a.threshold, 1)}`, "n"), S.td(a.message), S.td(S.ago(a.ts), "muted"));
  }
  function renderAlerts() {
    alertsDirty = false;
    const box = document.getElementById("alerts");
    const cols = [{label: "state"}, {label: "host"}, {label: "alert"}, {label: "value / limit", n: 1}, {label: "message"}, {label: "when"}];
    const now = [...firing.values()].sort((a, b) => b.ts - a.ts);
    box.hidden = !now.length && !recent.length;
    box.replaceChildren(
      h("h2", {text: now.length ? `Firing alerts (${now.length})` : "Alerts · none firing"}),
      now.length ? S.table(cols, now.map(alertRow), {id: "firing-table"}) : null,
      recent.length ? h("h2", {text: "Recent", style: "margin-top:12px"}) : null,
      recent.length ? S.table(cols, recent.map(alertRow), {id: "recent-alerts"}) : null);
  }

  function render() {
    scheduled = false;
    if (!built) {
      S.mount(h("div", {class: "head"}, h("h1", {text: "Hosts"}), h("span", {class: "sub", id: "hosts-summary"})),
        h("div", {class: "panel alerts", id: "alerts", hidden: true}),
        h("div", {class: "panel empty", id: "no-hosts", text: "No host samples yet — is the monitor running? (python -m services.monitor)"}),
        h("div", {class: "grid g2", id: "host-grid"}));
      built = true;
    }
    const grid = document.getElementById("host-grid");
    for (const name of [...dirty].sort()) {
      if (!hosts.has(name)) continue;
      let c = cards.get(name);
      if (!c) {
        c = newCard(name); cards.set(name, c);
        const after = [...cards.keys()].filter((n) => n > name).sort()[0];
        grid.insertBefore(c.el, after ? cards.get(after).el : null);
      }
      if (c.visible) fill(name, c);
      else c.stale = true;
    }
    dirty.clear();
    if (alertsDirty) renderAlerts();
    document.getElementById("no-hosts").hidden = hosts.size > 0;
    document.getElementById("hosts-summary").textContent = `${hosts.size} host${hosts.size === 1 ? "" : "s"} reporting · ${firing.size} alert${firing.size === 1 ? "" : "s"} firing`;
  }
  const schedule = () => { if (!scheduled) { scheduled = true; setTimeout(() => requestAnimationFrame(render), 250); } };
  S.live.on("hosts", (m) => { hosts.clear(); for (const [, l] of Object.entries(m || {})) l.forEach(take); schedule(); });
  S.live.on("host", (s) => { take(s); schedule(); });
  S.live.on("alerts", (l) => { firing.clear(); recent = []; (l || []).forEach(takeAlert); schedule(); });
  S.live.on("alert", (a) => { takeAlert(a); schedule(); });
  document.addEventListener("DOMContentLoaded", () => {
    S.live.sub("hosts"); schedule();
    // a host that stops sampling turns stale and its "ago" keeps counting
    setInterval(() => { const now = Date.now() / 1000; for (const [n, l] of hosts) if (now - l[l.length - 1].ts > 3) dirty.add(n); if (dirty.size) schedule(); }, 2000);
  });
})();
