// The log panel of a run (live and report pages): the generators' lines from the
// SURGE_LOGS stream, one generator or all, new ones fetched every 2 s while following,
// and a link that downloads them as a text file.
"use strict";
(function () {
  const {h} = Surge, S = Surge;
  const MAX_LINES = 2000;
  const stamp = (t) => new Date(t * 1000).toISOString().slice(11, 23);
  S.logPanel = function (runId, opts) {
    let since = 0, gen = "", timer = null, busy = false;
    const box = h("div", {class: "logs", id: "log-lines"}, h("div", {class: "muted", id: "log-empty", text: "no log lines yet"}));
    const dl = h("a", {class: "btn", id: "log-download", href: "#", download: ""}, "Download");
    const sel = h("select", {id: "log-gen", onchange: () => { gen = sel.value; since = 0; box.replaceChildren(h("div", {class: "muted", id: "log-empty", text: "no log lines yet"})); link(); poll(); }},
      h("option", {value: ""}, "all generators"));
    function link() { dl.href = `/api/runs/${runId}/logs.txt` + (gen ? `?generator=${encodeURIComponent(gen)}` : ""); }
    function generators(ids) {
      const have = new Set([...sel.options].map((o) => o.value));
      for (const id of [...new Set(ids)].sort()) if (!have.has(id)) sel.append(h("option", {value: id}, id));
    }
    async function poll() {
      if (busy) return;
      busy = true;
      const asked = gen;
      try {
        const q = new URLSearchParams({since: String(since)});
        if (asked) q.set("generator", asked);
        const r = await S.api("GET", `/api/runs/${runId}/logs?${q}`);
        if (asked !== gen) return; // the choice changed meanwhile: that answer is stale
        if (r.lines.length) { const e = document.getElementById("log-empty"); if (e) e.remove(); }
        for (const l of r.lines) {
          box.append(h("div", {class: "log-line " + l.level, "data-gen": l.generator_id},
            h("span", {class: "muted", text: stamp(l.at) + " "}), h("span", {class: "gen", text: l.generator_id + " "}),
            h("span", {class: "lvl", text: l.level + " "}), h("span", {class: "msg", text: l.message})));
        }
        while (box.childElementCount > MAX_LINES) box.firstChild.remove();
        if (r.lines.length) box.scrollTop = box.scrollHeight;
        since = r.last;
        generators(r.lines.map((l) => l.generator_id));
      } catch (e) { /* the next poll tries again */ } finally { busy = false; }
    }
    link();
    const el = h("div", {class: "panel", id: "log-panel"},
      h("div", {class: "head"}, h("h2", {text: "Generator logs"}), sel, h("div", {class: "spacer"}), dl), box);
    poll();
    if (opts && opts.follow) timer = setInterval(poll, 2000);
    return {el, generators, poll, stop() { if (timer) clearInterval(timer); timer = null; }};
  };
})();
