// Request builder: a plan without writing YAML, as in Postman (docs/ui.md). Flows of
// steps (method, URL path, query, headers, a JSON/form/raw body, extraction and checks
// per step), weights, the load model, thresholds. It round-trips with the YAML view:
// form -> YAML is written by the server (/api/plans/yaml), YAML -> form reads the plan
// as the coordinator does (plan.validate). "Save as test" stores it in the catalogue.
"use strict";
(function () {
  const {h} = Surge, S = Surge;
  const $ = (id) => document.getElementById(id);
  const EXTRACT_KINDS = ["jsonpath", "regex", "header", "cookie"];
  const newStep = () => ({name: "", method: "GET", path: "/", query: [], headers: [], bodyType: "none", body: "", form: [],
    extract: [], status: "", contains: ""});
  let m = {name: "my-test", target: "http://127.0.0.1:8080", load: "open", rate: "10", users: "5", duration: "30s",
    connections: "16", p99_ms: "", error_rate: "", flows: [{name: "main", weight: "1", steps: [newStep()]}]};

  // --- the form's model <-> a plan ----------------------------------------------------
  const enc = (v) => encodeURIComponent(v).replace(/%7B%7B/g, "{{").replace(/%7D%7D/g, "}}");
  const num = (v) => (v === "" || v == null ? undefined : isNaN(+v) ? v : +v);
  function stepToPlan(s) {
    const o = {};
    if (s.name) o.name = s.name;
    o.method = s.method;
    const q = s.query.filter(([k]) => k).map(([k, v]) => `${enc(k)}=${enc(v)}`).join("&");
    o.path = (s.path || "/") + (q ? (s.path.includes("?") ? "&" : "?") + q : "");
    const headers = Object.fromEntries(s.headers.filter(([k]) => k));
    if (s.bodyType === "json" && s.body.trim()) o.json = JSON.parse(s.body);
    if (s.bodyType === "raw" && s.body) o.body = s.body;
    if (s.bodyType === "form") {
      o.body = s.form.filter(([k]) => k).map(([k, v]) => `${enc(k)}=${enc(v)}`).join("&");
      if (!Object.keys(headers).some((k) => k.toLowerCase() === "content-type")) headers["Content-Type"] = "application/x-www-form-urlencoded";
    }
    if (Object.keys(headers).length) o.headers = headers;
    const ex = s.extract.filter(([v, , e]) => v && e);
    if (ex.length) o.extract = Object.fromEntries(ex.map(([v, kind, e]) => [v, {[kind]: e}]));
    const check = {};
    if (s.status.trim()) { const codes = s.status.split(",").map((c) => +c.trim()).filter(Boolean); check.status = codes.length === 1 ? codes[0] : codes; }
    if (s.contains) check.contains = s.contains;
    if (Object.keys(check).length) o.check = check;
    return o;
  }
  function toPlan() {
    const p = {name: m.name, target: m.target};
    if (m.load === "open") p.rate = num(m.rate); else p.users = num(m.users);
    p.duration = num(m.duration);
    if (m.connections) p.connections = num(m.connections);
    const th = {};
    if (m.p99_ms) th.p99_ms = num(m.p99_ms);
    if (m.error_rate) th.error_rate = num(m.error_rate);
    if (Object.keys(th).length) p.thresholds = th;
    p.flows = m.flows.map((f) => ({name: f.name, weight: num(f.weight) || 1, steps: f.steps.map(stepToPlan)}));
    return p;
  }
  function stepFromPlan(o) {
    const s = newStep();
    s.name = o.name || ""; s.method = o.method || "GET";
    const [path, qs] = (o.path || "/").split("?");
    s.path = path;
    s.query = qs ? qs.split("&").map((kv) => kv.split("=").map((x) => decodeURIComponent(x || ""))) : [];
    const headers = Object.entries(o.headers || {});
    const form = headers.find(([k, v]) => k.toLowerCase() === "content-type" && v.startsWith("application/x-www-form-urlencoded"));
    if (o.json !== undefined && o.json !== null) { s.bodyType = "json"; s.body = JSON.stringify(o.json, null, 2); }
    else if (o.body != null && form) { s.bodyType = "form"; s.form = o.body.split("&").filter(Boolean).map((kv) => kv.split("=").map((x) => decodeURIComponent(x || ""))); }
    else if (o.body != null) { s.bodyType = "raw"; s.body = o.body; }
    s.headers = headers.filter(([k]) => !(form && k.toLowerCase() === "content-type"));
    s.extract = Object.entries(o.extract || {}).map(([v, e]) => { const kind = EXTRACT_KINDS.find((k) => e[k] != null) || "jsonpath"; return [v, kind, e[kind] || ""]; });
    const c = o.check || o.checks || {};
    s.status = c.status == null ? "" : [].concat(c.status).join(",");
    s.contains = c.contains || c.body_contains || "";
    return s;
  }
  function fromPlan(p) {
    const th = p.thresholds || {};
    const flows = (p.flows && p.flows.length ? p.flows : (p.requests || []).map((r) => ({name: r.name, weight: r.weight, steps: [r]})))
      .map((f) => ({name: f.name, weight: String(f.weight == null ? 1 : f.weight), steps: f.steps.map(stepFromPlan)}));
    m = {name: p.name, target: p.target, load: p.users != null ? "closed" : "open", rate: String(p.rate ?? ""), users: String(p.users ?? ""),
      duration: String(p.duration ?? ""), connections: String(p.connections ?? ""), p99_ms: String(th.p99_ms ?? ""), error_rate: String(th.error_rate ?? ""),
      flows: flows.length ? flows : [{name: "main", weight: "1", steps: [newStep()]}]};
  }

  // --- the form ----------------------------------------------------------------------
  const field = (obj, key, attrs) => h("input", Object.assign({value: obj[key], oninput: (e) => { obj[key] = e.target.value; }}, attrs || {}));
  function rows(list, cols, label, id) {
    return h("div", {class: "rows", "data-rows": id},
      h("div", {class: "muted", text: label}),
      ...list.map((row, i) => h("div", {class: "row"},
        ...cols.map((c, k) => c.options
          ? h("select", {"aria-label": c.label, onchange: (e) => { row[k] = e.target.value; }}, ...c.options.map((o) => h("option", {value: o, text: o, selected: row[k] === o})))
          : h("input", {placeholder: c.label, "aria-label": c.label, value: row[k] || "", "data-col": c.label, oninput: (e) => { row[k] = e.target.value; }})),
        h("button", {class: "small", title: "remove", onclick: () => { list.splice(i, 1); render(); }}, "×"))),
      h("button", {class: "small", "data-add": id, onclick: () => { list.push(cols.map((c) => (c.options ? c.options[0] : ""))); render(); }}, "+ " + label));
  }
  function stepCard(f, s, i) {
    const id = `${m.flows.indexOf(f)}-${i}`;
    const body = s.bodyType === "form" ? rows(s.form, [{label: "field"}, {label: "value"}], "form field", "form-" + id)
      : s.bodyType === "none" ? null
      : h("textarea", {rows: 4, class: "mono", "aria-label": "body", "data-body": id, placeholder: s.bodyType === "json" ? '{"user": "ana"}' : "raw body",
        text: s.body, oninput: (e) => { s.body = e.target.value; }});
    return h("div", {class: "step panel", "data-step": id},
      h("div", {class: "row"}, h("b", {text: `step ${i + 1}`}),
        field(s, "name", {placeholder: "name (in reports)", "aria-label": "step name"}),
        h("select", {"aria-label": "method", onchange: (e) => { s.method = e.target.value; }},
          ...["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"].map((v) => h("option", {value: v, text: v, selected: s.method === v}))),
        field(s, "path", {placeholder: "/path/{{var}}", "aria-label": "path", size: 40}),
        h("button", {class: "small", onclick: () => { f.steps.splice(i, 1); if (!f.steps.length) f.steps.push(newStep()); render(); }}, "remove step")),
      rows(s.query, [{label: "name"}, {label: "value"}], "query", "query-" + id),
      rows(s.headers, [{label: "header"}, {label: "value"}], "header", "headers-" + id),
      h("div", {class: "row"}, h("span", {class: "muted", text: "body"}),
        h("select", {"aria-label": "body type", onchange: (e) => { s.bodyType = e.target.value; render(); }},
          ...["none", "json", "form", "raw"].map((v) => h("option", {value: v, text: v, selected: s.bodyType === v})))),
      body,
      rows(s.extract, [{label: "variable"}, {label: "from", options: EXTRACT_KINDS}, {label: "expression"}], "extract", "extract-" + id),
      h("div", {class: "row"}, h("span", {class: "muted", text: "checks"}),
        field(s, "status", {placeholder: "status, e.g. 200 or 200,201", "aria-label": "status"}),
        field(s, "contains", {placeholder: "body contains", "aria-label": "contains"})));
  }
  function render() {
    const load = h("div", {class: "row"},
      h("select", {id: "load", "aria-label": "load model", onchange: (e) => { m.load = e.target.value; render(); }},
        h("option", {value: "open", text: "open model (arrivals/s)", selected: m.load === "open"}),
        h("option", {value: "closed", text: "closed model (virtual users)", selected: m.load === "closed"})),
      m.load === "open" ? field(m, "rate", {placeholder: "rate /s", "aria-label": "rate", id: "rate"}) : field(m, "users", {placeholder: "users", "aria-label": "users", id: "users"}),
      field(m, "duration", {placeholder: "30s", "aria-label": "duration", id: "duration"}),
      field(m, "connections", {placeholder: "connections", "aria-label": "connections"}),
      h("span", {class: "muted", text: "thresholds"}),
      field(m, "p99_ms", {placeholder: "p99 ms", "aria-label": "p99_ms"}), field(m, "error_rate", {placeholder: "error rate, e.g. 0.01", "aria-label": "error_rate"}));
    const flows = m.flows.map((f, fi) => h("div", {class: "panel flow", "data-flow": fi},
      h("div", {class: "row"}, h("b", {text: "flow"}), field(f, "name", {"aria-label": "flow name"}),
        h("span", {class: "muted", text: "weight"}), field(f, "weight", {"aria-label": "weight", size: 4}),
        m.flows.length > 1 ? h("button", {class: "small", onclick: () => { m.flows.splice(fi, 1); render(); }}, "remove flow") : null),
      ...f.steps.map((s, i) => stepCard(f, s, i)),
      h("button", {id: `add-step-${fi}`, onclick: () => { f.steps.push(newStep()); render(); }}, "+ step")));
    $("form").replaceChildren(
      h("div", {class: "row"}, field(m, "name", {placeholder: "test name", "aria-label": "test name", id: "b-name"}),
        field(m, "target", {placeholder: "http://host:port", "aria-label": "target", id: "b-target", size: 32})),
      load, ...flows,
      h("button", {id: "add-flow", onclick: () => { m.flows.push({name: `flow-${m.flows.length + 1}`, weight: "1", steps: [newStep()]}); render(); }}, "+ flow"));
  }

  // --- actions -------------------------------------------------------------------------
  const showErr = (e) => $("b-result").replaceChildren(S.errorBanner(e.error ? e : {message: e.message}));
  async function toYaml() {
    try { $("yaml").value = (await S.api("POST", "/api/plans/yaml", {plan: toPlan()})).yaml; return true; }
    catch (e) { showErr(e); return false; }
  }
  async function toForm() {
    try { const v = await S.api("POST", "/api/plans/validate", {plan: $("yaml").value}); fromPlan(v.plan); render(); return true; }
    catch (e) { showErr(e); return false; }
  }
  async function view(which) {
    $("b-result").replaceChildren();
    if (which === "yaml" && !(await toYaml())) return;
    if (which === "form" && !(await toForm())) return;
    $("form").hidden = which !== "form"; $("yaml-view").hidden = which !== "yaml";
    $("tab-form").classList.toggle("active", which === "form"); $("tab-yaml").classList.toggle("active", which === "yaml");
  }
  async function currentYaml() { return $("yaml-view").hidden ? ((await toYaml()) ? $("yaml").value : null) : $("yaml").value; }
  async function validate() {
    const text = await currentYaml(); if (text == null) return;
    try { const v = await S.api("POST", "/api/plans/validate", {plan: text});
      $("b-result").replaceChildren(h("div", {class: "summary", id: "b-ok"}, h("div", {}, h("span", {text: "valid"}), h("b", {text: `${S.dur(v.duration_s)} at up to ${S.rps(v.peak_rps)}/s`}))));
    } catch (e) { showErr(e); }
  }
  async function save() {
    const text = await currentYaml(); if (text == null) return;
    try { const t = await S.api("POST", "/api/tests", {plan: text, suite: $("b-suite").value.trim() || null});
      $("b-result").replaceChildren(h("div", {class: "summary", id: "b-saved"}, h("div", {}, h("span", {text: "saved"}), h("b", {text: `${t.name} v${t.version}`})),
        h("div", {}, h("a", {href: "/tests?name=" + encodeURIComponent(t.name), text: "open in Tests"}))));
    } catch (e) { showErr(e); }
  }
  // send once: one iteration through a generator; every step's response, variables, checks
  async function sendOnce() {
    const text = await currentYaml(); if (text == null) return;
    $("b-result").replaceChildren(h("div", {class: "muted", text: "sending once through a generator…"}));
    let r;
    try { r = await S.api("POST", "/api/plans/send-once", {plan: text}); } catch (e) { showErr(e); return; }
    const steps = r.steps.map((s, i) => h("div", {class: "panel try-step", "data-try": i},
      h("div", {class: "row"}, h("b", {text: `${s.flow} · ${s.name}`}), h("span", {class: "mono", text: `${s.method} ${s.url}`}),
        s.status != null ? S.badge(String(s.status), s.status < 400 ? "pass" : "fail") : null,
        s.time_ms != null ? h("span", {class: "muted", text: `${s.time_ms.toFixed(1)} ms`}) : null,
        h("span", {class: "try-check " + (s.check || s.error ? "bad" : "ok"), text: s.error ? `error: ${s.error}` : s.check ? `check failed: ${s.check}` : "checks passed"})),
      Object.keys(s.extracted || {}).length ? h("div", {class: "extracted"}, h("span", {class: "muted", text: "extracted "}),
        ...Object.entries(s.extracted).map(([k, v]) => h("code", {"data-var": k, text: `${k} = ${v}`}))) : null,
      h("details", {}, h("summary", {text: "response headers"}), h("pre", {class: "mono", text: Object.entries(s.response_headers || {}).map(([k, v]) => `${k}: ${v}`).join("\n")})),
      h("details", {open: true}, h("summary", {text: "response body" + (s.truncated ? " (cut at 64 KB)" : "")}), h("pre", {class: "mono try-body", text: s.body || ""}))));
    $("b-result").replaceChildren(h("div", {id: "try", "data-ok": String(r.ok)},
      h("div", {class: "muted", text: `one iteration on generator ${r.generator}: ${r.ok ? "every step passed" : "a step failed"}`}), ...steps));
  }
  document.addEventListener("DOMContentLoaded", async () => {
    S.mount(
      h("div", {class: "head"}, h("h1", {text: "Request builder"}), h("span", {class: "sub", text: "build a test without YAML; edit either view"}), h("div", {class: "spacer"}),
        h("button", {id: "tab-form", class: "active", onclick: () => view("form")}, "Form"),
        h("button", {id: "tab-yaml", onclick: () => view("yaml")}, "YAML"),
        h("button", {id: "b-validate", onclick: validate}, "Validate"),
        h("button", {id: "b-send", onclick: sendOnce}, "Send once"),
        h("input", {id: "b-suite", placeholder: "suite", "aria-label": "suite", size: 10}),
        h("button", {id: "b-save", class: "primary", onclick: save}, "Save as test")),
      h("div", {id: "b-result"}),
      h("div", {class: "panel builder", id: "form"}),
      h("div", {class: "panel", id: "yaml-view", hidden: true}, h("textarea", {id: "yaml", class: "mono", rows: 30, spellcheck: "false", "aria-label": "YAML", style: "width:100%"})));
    const params = new URLSearchParams(location.search);
    if (params.get("test")) {  // /builder?test=NAME[&version=N]: open a saved version in the form
      try { const q = new URLSearchParams({name: params.get("test")}); if (params.get("version")) q.set("version", params.get("version"));
        fromPlan((await S.api("GET", "/api/test?" + q)).test.plan); } catch (e) { showErr(e); }
    }
    render(); S.live.start();
  });
})();
