// Archive: runs found by test, tag, target, verdict, date and text, with what people
// wrote about them (notes in markdown, shown as text; a conclusion; tags; links), and
// a form to add to them (docs/archive.md).
"use strict";
(function () {
  const {h} = Surge, S = Surge;
  const $ = (id) => document.getElementById(id);
  const when = (t) => new Date(t * 1000).toLocaleString();
  const FILTERS = ["test", "tag", "target", "verdict", "since", "text"];
  let found = [], current = null;

  async function search() {
    const q = new URLSearchParams();
    for (const f of FILTERS) { const v = $("f-" + f).value.trim(); if (v) q.set(f, v); }
    try { found = (await S.api("GET", "/api/archive?" + q)).runs; render(); }
    catch (e) { $("results").replaceChildren(S.errorBanner(e)); }
  }
  function render() {
    const cols = [{label: "Run"}, {label: "Test"}, {label: "Target"}, {label: "Verdict"}, {label: "Started"},
      {label: "p99", n: 1}, {label: "Tags"}, {label: "Conclusion"}, {label: "Notes", n: 1}];
    const rows = found.map((a) => {
      const r = a.record, n = a.annotations || {};
      return h("tr", {"data-run": r.run_id, class: current === r.run_id ? "active" : ""},
        S.td(h("a", {href: "#", class: "mono", text: r.run_id, onclick: (e) => { e.preventDefault(); open(a); }})),
        S.td((r.test ? `${r.test} v${r.test_version}` : r.plan.name) + (a.baseline ? " (baseline)" : "")),
        S.td(a.target_system, "mono"), S.td(r.verdict ? S.badge(r.verdict) : "–"), S.td(S.ago(r.start_at), "muted"),
        S.td(S.ms(r.p99_ms), "n"), S.td((n.tags || []).join(", ")),
        S.td(n.conclusion ? S.badge(n.conclusion.verdict) : "–"), S.td(String((n.notes || []).length), "n"));
    });
    $("results").replaceChildren(found.length ? S.table(cols, rows, {id: "archive-table"}) : h("div", {class: "empty", text: "No runs match."}));
  }
  function open(a) {
    current = a.record.run_id; render();
    const n = a.annotations || {notes: [], tags: [], links: []};
    const notes = (n.notes || []).map((x) => h("div", {class: "note"},
      h("div", {class: "muted", text: `${x.author}, ${when(x.at)}`}), h("pre", {class: "note-text", text: x.text})));
    const conclusion = n.conclusion ? h("div", {id: "conclusion"}, "conclusion: ", S.badge(n.conclusion.verdict), ` ${n.conclusion.text} (${n.conclusion.author})`) : null;
    $("detail").replaceChildren(h("div", {class: "panel", id: "run-notes", "data-run": current},
      h("h2", {}, h("a", {href: `/runs/${current}/report`, class: "mono", text: current})), conclusion,
      (n.links || []).length ? h("ul", {}, ...n.links.map((u) => h("li", {}, h("a", {href: u, rel: "noopener noreferrer", target: "_blank", text: u})))) : null,
      h("div", {id: "notes"}, ...notes),
      h("textarea", {id: "note", rows: 4, placeholder: "a note (markdown)", "aria-label": "note", style: "width:100%"}),
      h("div", {}, h("select", {id: "conclusion-verdict", "aria-label": "conclusion"},
        ...[["", "no conclusion"], ["pass", "pass"], ["fail", "fail"], ["inconclusive", "inconclusive"]].map(([v, t]) => h("option", {value: v, text: t}))),
        h("input", {id: "tags", placeholder: "tags, comma separated", "aria-label": "tags"}),
        h("button", {id: "add-note", class: "primary", onclick: add}, "Add")),
      h("div", {id: "note-result"})));
  }
  async function add() {
    const body = {};
    const note = $("note").value.trim(), verdict = $("conclusion-verdict").value;
    const tags = $("tags").value.split(",").map((t) => t.trim()).filter(Boolean);
    if (note) body.note = note;
    if (verdict) { body.conclusion = verdict; body.conclusion_text = note; }
    if (tags.length) body.tags = tags;
    try {
      const ann = await S.api("POST", `/api/runs/${current}/notes`, body);
      const a = found.find((x) => x.record.run_id === current); if (a) a.annotations = ann;
      open(a);
    } catch (e) { $("note-result").replaceChildren(S.errorBanner(e)); }
  }
  document.addEventListener("DOMContentLoaded", () => {
    const params = new URLSearchParams(location.search);
    S.mount(
      h("div", {class: "head"}, h("h1", {text: "Archive"}), h("span", {class: "sub", text: "runs with their notes, conclusions and baselines"})),
      h("div", {class: "panel filters"}, ...FILTERS.map((f) => h("input", {id: "f-" + f, placeholder: f === "since" ? "since (7d, 2026-11-01)" : f,
        "aria-label": f, value: params.get(f) || "", onkeydown: (e) => { if (e.key === "Enter") search(); }})),
        h("button", {id: "search-btn", class: "primary", onclick: search}, "Search")),
      h("div", {class: "panel", id: "results"}), h("div", {id: "detail"}));
    search(); S.live.start();
  });
})();
