// Tests: the catalogue (docs/catalogue.md). Search, a test's versions (edit one in the
// New run editor, run one), and schedules: at a time or on a cron in a zone, with the
// next five fire times previewed by the coordinator before saving (docs/schedules.md).
"use strict";
(function () {
  const {h} = Surge, S = Surge;
  const $ = (id) => document.getElementById(id);
  const when = (t) => new Date(t * 1000).toLocaleString();
  let tests = [], current = null;

  async function load() {
    const q = new URLSearchParams();
    const search = $("search").value.trim();
    if (search) q.set("search", search);
    try { tests = (await S.api("GET", "/api/tests?" + q)).tests; renderList(); }
    catch (e) { $("list").replaceChildren(S.errorBanner(e)); }
  }
  function renderList() {
    const cols = [{label: "Test"}, {label: "Suite"}, {label: "Version", n: 1}, {label: "Tags"}, {label: "Target system"}, {label: "Owner"}, {label: "Saved"}];
    const rows = tests.map((t) => h("tr", {"data-test": t.name, class: current === t.name ? "active" : ""},
      S.td(h("a", {href: "#", text: t.name, onclick: (e) => { e.preventDefault(); open(t.name); }})),
      S.td(t.suite), S.td(`${t.version} of ${t.versions}`, "n"), S.td(t.tags.join(", ")),
      S.td(t.target_system, "mono"), S.td(t.owner), S.td(S.ago(t.saved_at), "muted")));
    $("list").replaceChildren(tests.length ? S.table(cols, rows, {id: "tests-table"})
      : h("div", {class: "empty"}, "No tests yet. Save one from ", h("a", {href: "/new", text: "New run"}), " or `surge test save PLAN`."));
  }
  async function open(name) {
    current = name; renderList();
    let d;
    try { d = await S.api("GET", "/api/test?" + new URLSearchParams({name})); }
    catch (e) { $("detail").replaceChildren(S.errorBanner(e)); return; }
    const t = d.test, enc = encodeURIComponent(name);
    const versions = d.versions.slice().reverse().map((v) => h("li", {"data-version": v.version},
      h("b", {text: `v${v.version}`}), ` ${when(v.saved_at)} by ${v.author} `,
      h("a", {href: `/new?test=${enc}&version=${v.version}`, text: "edit"}), " · ",
      h("a", {href: `/builder?test=${enc}&version=${v.version}`, text: "builder"}), " · ",
      h("a", {href: "#", text: "run", onclick: (e) => { e.preventDefault(); run(name, v.version); }})));
    curve("/api/test/profile?" + new URLSearchParams({name}));
    $("detail").replaceChildren(h("div", {class: "panel", id: "test-detail"},
      h("h2", {text: t.name}), t.description ? h("p", {text: t.description}) : null,
      h("div", {class: "muted", text: `suite ${t.suite} · owner ${t.owner} · target system ${t.target_system}`}),
      h("h3", {text: "Versions"}), h("ul", {id: "versions"}, ...versions),
      h("h3", {text: "Schedule"}), h("div", {id: "curve"}), scheduleForm(name),
      h("div", {id: "run-result"})));
  }
  // the rate over time of the test's latest version (the plan's profile), as an SVG line
  async function curve(url) {
    let p;
    try { p = await S.api("GET", url); } catch (e) { return; }
    const el = $("curve"); if (!el) return setTimeout(() => curve(url), 50);
    if (p.model === "closed") { el.replaceChildren(h("div", {class: "muted", text: `virtual users for ${S.dur(p.duration_s)}`})); return; }
    const W = 480, H = 90, peak = Math.max(p.peak_rps, 1e-9), dur = Math.max(p.duration_s, 1e-9);
    const pts = p.segments.flatMap((s) => [[s.start_s, s.start_rps], [s.end_s, s.end_rps]])
      .map(([t, r]) => `${(t / dur * W).toFixed(1)},${(H - r / peak * (H - 6)).toFixed(1)}`).join(" ");
    const ns = "http://www.w3.org/2000/svg", svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`); svg.setAttribute("width", W); svg.setAttribute("height", H); svg.id = "rate-curve";
    const line = document.createElementNS(ns, "polyline");
    line.setAttribute("points", pts); line.setAttribute("fill", "none"); line.setAttribute("stroke", "currentColor"); line.setAttribute("stroke-width", "2");
    svg.append(line);
    const steps = p.steps ? `, ${p.steps} steps` : "";
    el.replaceChildren(h("div", {class: "muted", text: `rate over time: up to ${S.rps(p.peak_rps)}/s for ${S.dur(p.duration_s)}${steps}`}), svg);
  }
  async function loadSuites() {  // suites in phases (docs/schedules.md): pick one to schedule it
    try {
      const suites = (await S.api("GET", "/api/suites")).suites;
      $("suites").hidden = !suites.length;
      $("suites").replaceChildren(h("h2", {text: "Suites"}), S.table([{label: "Suite"}, {label: "Phases"}, {label: "Pause", n: 1}, {label: "On a failed verdict"}],
        suites.map((s) => h("tr", {"data-suite": s.name},
          S.td(h("a", {href: "#", text: s.name, onclick: (e) => { e.preventDefault(); openSuite(s); }})),
          S.td(s.mode === "stages" ? `${s.tests[0]} at ${s.rates.join(", ")}/s` : (s.tests.join(" → ") || `tests labelled ${s.name}`)),
          S.td(S.dur(s.pause_s), "n"), S.td(s.stop_on_fail ? "stop" : "go on"))), {id: "suites-table"}));
    } catch (e) { $("suites").replaceChildren(S.errorBanner(e)); }
  }
  function openSuite(s) {
    current = null; renderList();
    curve("/api/suite/profile?" + new URLSearchParams({name: s.name}));
    $("detail").replaceChildren(h("div", {class: "panel", id: "suite-detail"}, h("h2", {text: `suite ${s.name}`}),
      h("h3", {text: "Schedule"}), h("div", {id: "curve"}), scheduleForm(s.name, "suite")));
  }
  async function loadQueue() {  // runs waiting for approval or for their target system (docs/quotas.md)
    try {
      const q = await S.api("GET", "/api/queue");
      const runs = q.runs.filter((e) => e.state === "waiting_approval" || e.state === "queued");
      $("queue").hidden = !runs.length;
      const cols = [{label: "Run"}, {label: "Test"}, {label: "Target system"}, {label: "State"}, {label: "Why"}];
      if (q.can_approve) cols.push({label: ""});
      $("queue").replaceChildren(h("h2", {text: "Waiting runs"}), S.table(cols,
        runs.map((e) => h("tr", {"data-queued": e.run_id}, S.td(e.run_id, "mono"), S.td(e.test ? `${e.test} v${e.test_version}` : e.plan.name),
          S.td(e.target_system, "mono"), S.td(e.state.replace("_", " ")), S.td(e.decisions.length ? e.decisions[e.decisions.length - 1].what : ""),
          ...(q.can_approve ? [S.td(e.state === "waiting_approval" ? h("span", {},
            h("button", {class: "approve", text: "Approve", onclick: () => decide(e.run_id, true)}),
            h("button", {class: "refuse", text: "Refuse", onclick: () => decide(e.run_id, false)})) : "")] : []))), {id: "queue-table"}),
        h("div", {class: "muted", text: q.can_approve ? "Approve lets a run over its quota start; Refuse ends it"
          : "an approver lets a run over its quota start: surge approve RUN"}));
    } catch (e) { $("queue").replaceChildren(S.errorBanner(e)); }
  }
  async function decide(runId, approve) {  // as the UI's approver user (docs/quotas.md)
    try {
      await S.api("POST", `/api/queue/${encodeURIComponent(runId)}/approve`, {approve});
      await loadQueue();
    } catch (e) { $("queue").append(S.errorBanner(e)); }
  }
  async function run(name, version) {
    try {
      const r = await S.api("POST", "/api/test/run", {name, version});
      if (r.queued) $("run-result").replaceChildren(h("div", {class: "banner", text: `run ${r.run_id} is ${r.queued}`}));
      else location.href = `/runs/${r.run_id}`;
    } catch (e) { $("run-result").replaceChildren(S.errorBanner(e)); }
  }
  function scheduleForm(test, what) {  // what: "test" (default) or "suite"
    const body = (dry) => {
      const kind = $("sched-kind").value, value = $("sched-when").value.trim();
      const b = {name: $("sched-name").value.trim() || test, [what || "test"]: test, tz: $("sched-tz").value.trim() || "UTC",
        missed: $("sched-missed").value, dry_run: dry};
      b[kind] = value;
      return b;
    };
    async function preview(dry) {
      try {
        const info = await S.api("POST", "/api/schedules", body(dry));
        $("fires").replaceChildren(h("div", {class: "muted", text: dry ? "next fire times:" : `saved schedule ${info.schedule.name}; fires at:`}),
          h("ol", {id: "next-fires"}, ...info.next_fires.map((t) => h("li", {text: when(t)}))));
        if (!dry) loadSchedules();
      } catch (e) { $("fires").replaceChildren(S.errorBanner(e)); }
    }
    return h("div", {class: "sched"},
      h("input", {id: "sched-name", placeholder: `schedule name (${test})`, "aria-label": "schedule name"}),
      h("select", {id: "sched-kind", "aria-label": "when"}, h("option", {value: "at", text: "at"}), h("option", {value: "cron", text: "cron"})),
      h("input", {id: "sched-when", placeholder: "+30s, 2026-12-01T02:00, or 0 2 * * *", "aria-label": "time or cron", size: 28}),
      h("input", {id: "sched-tz", placeholder: "UTC", value: Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC", "aria-label": "time zone"}),
      h("select", {id: "sched-missed", "aria-label": "missed fire"}, h("option", {value: "run_late", text: "run late if missed"}), h("option", {value: "skip", text: "skip if missed"})),
      h("button", {id: "sched-preview", onclick: () => preview(true)}, "Preview"),
      h("button", {id: "sched-save", class: "primary", onclick: () => preview(false)}, "Save schedule"),
      h("div", {id: "fires"}));
  }
  async function loadSchedules() {
    try {
      const list = (await S.api("GET", "/api/schedules")).schedules;
      const cols = [{label: "Schedule"}, {label: "Runs"}, {label: "When"}, {label: "Next"}, {label: "Last fire"}];
      $("schedules").replaceChildren(h("h2", {text: "Schedules"}), list.length ? S.table(cols, list.map((i) => {
        const s = i.schedule, last = i.last;
        return h("tr", {"data-schedule": s.name}, S.td(s.name), S.td(s.test ? `test ${s.test}` : `suite ${s.suite}`),
          S.td(s.cron ? `cron ${s.cron} (${s.tz})` : when(s.at)), S.td(i.next_fires.length ? when(i.next_fires[0]) : "–"),
          S.td(last ? h("span", {}, `${last.state} `, h("a", {href: `/runs/${last.run_id}/report`, class: "mono", text: last.run_id})) : "–"));
      }), {id: "schedules-table"}) : h("div", {class: "empty", text: "No schedules."}));
    } catch (e) { $("schedules").replaceChildren(S.errorBanner(e)); }
  }
  document.addEventListener("DOMContentLoaded", () => {
    let timer = null;
    S.mount(
      h("div", {class: "head"}, h("h1", {text: "Tests"}), h("span", {class: "sub", text: "the catalogue: versions, runs, schedules"}), h("div", {class: "spacer"}),
        h("input", {id: "search", placeholder: "search name, description, owner", "aria-label": "search",
          oninput: () => { clearTimeout(timer); timer = setTimeout(load, 250); }}),
        h("button", {class: "primary", onclick: () => { location.href = "/new"; }}, "New test")),
      h("div", {class: "panel", id: "queue", hidden: true}),
      h("div", {class: "panel", id: "list"}), h("div", {class: "panel", id: "suites", hidden: true}), h("div", {id: "detail"}),
      h("div", {class: "panel", id: "schedules"}));
    const wanted = new URLSearchParams(location.search).get("name");
    load().then(() => { if (wanted) open(wanted); });
    loadSchedules(); loadQueue(); loadSuites(); setInterval(() => { loadSchedules(); loadQueue(); }, 5000); S.live.start();
  });
})();
