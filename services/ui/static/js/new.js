// New run: paste or upload a plan (YAML or JSON), or import another tool's file (curl,
// Postman, HAR, JMX, OpenAPI: the server converts it with the same code as `surge import`
// and says what was not mapped), validate it through the coordinator (errors marked on
// the line of their field), then start it.
"use strict";
(function () {
  const {h} = Surge, S = Surge;
  const EXAMPLE = `name: checkout
target: http://127.0.0.1:8080
rate: 100          # requests/s across all generators
duration: 30s
connections: 32
timeout: 2s
requests:
  - name: home
    path: /
    weight: 3
    checks: {status: 200}
  - name: order
    method: POST
    path: /api/orders
    json: {sku: A1}
thresholds:
  p99_ms: 250
  error_rate: 0.01
`;
  let timer = null, seq = 0;
  const $ = (id) => document.getElementById(id);

  function gutter(errLine) {
    const n = $("plan").value.split("\n").length;
    $("gutter").replaceChildren(...Array.from({length: n}, (_, i) => h("div", {class: i + 1 === errLine ? "err" : "", text: i + 1})));
    syncScroll();
  }
  function syncScroll() { $("gutter").scrollTop = $("plan").scrollTop; placeMarker(); }
  let marker = null;
  function placeMarker() {
    const m = $("marker"); if (!marker) { m.hidden = true; return; }
    const top = 8 + (marker.line - 1) * 20 - $("plan").scrollTop;
    m.hidden = top < 0 || top > $("plan").clientHeight - 10; m.style.top = top + "px"; m.textContent = "◀ " + marker.text;
  }
  function showError(err) {
    const where = err.field ? h("code", {text: err.field}) : null;
    const line = err.line ? ` (line ${err.line})` : "";
    $("result").replaceChildren(h("div", {class: "field-error", id: "plan-error", "data-field": err.field || ""},
      h("b", {text: err.code}), " ", where, line ? h("span", {class: "muted", text: line}) : null, " — ", err.message));
    marker = err.line ? {line: err.line, text: (err.field ? err.field + ": " : "") + err.message} : null;
    gutter(err.line); $("start").disabled = true;
  }
  function showOk(v) {
    marker = null; gutter(null);
    $("result").replaceChildren(h("div", {class: "summary", id: "plan-ok"},
      h("div", {}, h("span", {text: "plan"}), h("b", {text: v.plan.name})),
      h("div", {}, h("span", {text: "duration"}), h("b", {text: S.dur(v.duration_s)})),
      h("div", {}, h("span", {text: "peak rate"}), h("b", {text: S.rps(v.peak_rps) + "/s"})),
      h("div", {}, h("span", {text: "requests"}), h("b", {text: S.num(v.total_requests)})),
      h("div", {}, h("span", {text: "target"}), h("b", {text: v.plan.target})),
      h("div", {}, h("span", {text: "kinds"}), h("b", {text: (v.plan.requests || v.plan.flows || []).map((r) => r.name).join(", ")}))));
    $("start").disabled = false;
  }
  async function validate() {
    const mine = ++seq;
    $("status").textContent = "validating…";
    try { const v = await S.api("POST", "/api/plans/validate", {plan: $("plan").value}); if (mine === seq) showOk(v); }
    catch (e) { if (mine === seq) showError(e.error || {code: "error", message: e.message}); }
    if (mine === seq) $("status").textContent = "";
  }
  async function start() {
    $("start").disabled = true; $("status").textContent = "starting…";
    try { const r = await S.api("POST", "/api/runs", {plan: $("plan").value}); location.href = `/runs/${r.run_id}`; }
    catch (e) { showError(e.error || {code: "error", message: e.message}); $("status").textContent = ""; }
  }
  // the catalogue (docs/catalogue.md): save the editor's text as a new version of a test
  async function saveTest() {
    $("status").textContent = "saving…";
    const suite = $("suite").value.trim();
    try {
      const t = await S.api("POST", "/api/tests", {plan: $("plan").value, suite: suite || null});
      $("result").replaceChildren(h("div", {class: "summary", id: "saved"},
        h("div", {}, h("span", {text: "saved"}), h("b", {text: `${t.name} v${t.version}`})),
        h("div", {}, h("span", {text: "suite"}), h("b", {text: t.suite})),
        h("div", {}, h("a", {href: "/tests?name=" + encodeURIComponent(t.name), text: "open in Tests"}))));
    } catch (e) { showError(e.error || {code: "error", message: e.message}); }
    $("status").textContent = "";
  }
  async function loadTest(params) {  // /new?test=NAME&version=N: edit a saved version
    const q = new URLSearchParams({name: params.get("test")});
    if (params.get("version")) q.set("version", params.get("version"));
    const d = await S.api("GET", "/api/test?" + q);
    $("plan").value = d.test.source || JSON.stringify(d.test.plan, null, 2);
    $("suite").value = d.test.suite;
    $("status").textContent = `editing ${d.test.name} v${d.test.version}`;
  }
  function upload(ev) {
    const f = ev.target.files[0]; if (!f) return;
    if (f.size > 1024 * 1024) { showError({code: "too_large", message: "plans are at most 1 MB"}); return; }
    const rd = new FileReader(); rd.onload = () => { $("plan").value = rd.result; gutter(null); validate(); }; rd.readAsText(f);
  }
  function showNotes(r) {
    const notes = r.unmapped.length
      ? [h("b", {text: `Not mapped (${r.unmapped.length}): review by hand`}), h("ul", {}, ...r.unmapped.map((u) => h("li", {class: "mono", text: u})))]
      : [h("b", {text: "Everything in the source was mapped."})];
    $("import-notes").replaceChildren(...notes); $("import-notes").hidden = false;
  }
  function importFile(ev) {
    const f = ev.target.files[0]; if (!f) return;
    if (f.size > 8 * 1024 * 1024) { showError({code: "too_large", message: "imports are at most 8 MB"}); return; }
    const rd = new FileReader();
    rd.onload = async () => {
      $("status").textContent = "importing…";
      try {
        const body = {kind: $("import-kind").value, source: rd.result}, target = $("import-target").value.trim();
        if (target) body.target = target;  // run it against another origin than the source's
        const r = await S.api("POST", "/api/plans/import", body);
        $("plan").value = r.plan; sessionStorage.setItem("surge-plan", r.plan); showNotes(r); gutter(null); validate();
      } catch (e) { $("import-notes").hidden = true; showError(e.error || {code: "error", message: e.message}); }
      $("status").textContent = ""; ev.target.value = "";
    };
    rd.readAsText(f);
  }
  document.addEventListener("DOMContentLoaded", () => {
    S.mount(
      h("div", {class: "head"}, h("h1", {text: "New run"}), h("span", {class: "sub", text: "paste or upload a plan (YAML or JSON); it is checked by the coordinator as you type"}), h("div", {class: "spacer"}),
        h("label", {class: "btn", for: "file"}, "Upload…"), h("input", {type: "file", id: "file", accept: ".yaml,.yml,.json,text/yaml,application/json", hidden: true, onchange: upload}),
        h("select", {id: "import-kind", "aria-label": "import from"}, ...[["curl", "curl command"], ["postman", "Postman collection"], ["har", "HAR"], ["jmx", "JMeter .jmx"], ["openapi", "OpenAPI 3"]].map(([v, t]) => h("option", {value: v, text: t}))),
        h("input", {id: "import-target", type: "text", placeholder: "target (optional)", "aria-label": "import target", style: "width:11em"}),
        h("label", {class: "btn", for: "import-file"}, "Import…"), h("input", {type: "file", id: "import-file", hidden: true, onchange: importFile}),
        h("button", {id: "validate", onclick: validate}, "Validate"),
        h("input", {id: "suite", placeholder: "suite", "aria-label": "suite", size: 10}),
        h("button", {id: "save-test", onclick: saveTest}, "Save as test"),
        h("button", {id: "start", class: "primary", disabled: true, onclick: start}, "Start run"), h("span", {id: "status", class: "muted"})),
      h("div", {class: "panel"},
        h("div", {class: "editor"}, h("div", {class: "gutter", id: "gutter"}),
          h("textarea", {id: "plan", spellcheck: "false", autocomplete: "off", "aria-label": "plan",
            oninput: () => { gutter(marker && marker.line); clearTimeout(timer); timer = setTimeout(validate, 500); }, onscroll: syncScroll}),
          h("div", {class: "marker", id: "marker", hidden: true})),
        h("div", {id: "result", style: "margin-top:10px;min-height:40px"}),
        h("div", {id: "import-notes", class: "panel", hidden: true})));
    $("plan").value = sessionStorage.getItem("surge-plan") || EXAMPLE;
    $("plan").addEventListener("input", () => sessionStorage.setItem("surge-plan", $("plan").value));
    const params = new URLSearchParams(location.search);
    const ready = params.get("test") ? loadTest(params).catch((e) => showError(e.error || {code: "error", message: e.message})) : Promise.resolve();
    ready.then(() => { gutter(null); validate(); }); S.live.start();
  });
})();
