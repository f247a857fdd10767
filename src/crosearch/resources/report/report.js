// The trajectory browser: filters over the embedded predictions; only the current page is put in the DOM.
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("crosearch-data").textContent);
  const $ = (id) => document.getElementById(id);
  const state = { lang: "", a: 0, b: data.runs.length > 1 ? 1 : -1, criterion: "em", outcome: "all", page: 0, size: 20 };

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "class") node.className = value; else node.setAttribute(key, value);
    }
    for (const child of children) {
      if (child === null || child === undefined || child === "") continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }
  function option(value, text) { return el("option", { value: String(value) }, text); }
  function pct(x) { return x === null || x === undefined ? "-" : (100 * x).toFixed(1); }

  function correct(result) {
    if (!result) return null;
    return state.criterion === "em" ? result.em === 1 : (result.f1 || 0) >= 0.5;
  }

  function matches(q) {
    if (state.lang && q.lang !== state.lang) return false;
    const a = q.results[state.a];
    if (!a) return false;
    const b = state.b >= 0 ? q.results[state.b] : null;
    switch (state.outcome) {
      case "a-right": return correct(a);
      case "a-wrong": return !correct(a);
      case "a-right-b-wrong": return correct(a) && b !== null && !correct(b);
      case "a-wrong-b-right": return !correct(a) && b !== null && correct(b);
      default: return true;
    }
  }

  function passageNode(p) {
    const flags = [el("span", { class: "flag" }, p.lang)];
    if (p.role) flags.push(el("span", { class: "flag " + p.role }, p.role));
    if (p.translated) flags.push(el("span", { class: "flag translated" }, "translated"));
    const body = [el("div", { class: "text" }, p.shown || "")];
    if (p.translation && p.translation !== p.shown) body.push(el("div", { class: "translation" }, "translation: " + p.translation));
    return el("details", { class: "passage", "data-lang": p.lang || "" },
      el("summary", {}, "#" + p.rank + " ", ...flags, " " + (p.title || ""), " ", el("code", {}, p.doc_id || "")),
      ...body);
  }

  function evidenceNode(ev, heading) {
    const parts = [el("div", { class: "label" }, heading + (ev.strategy ? " (" + ev.strategy + ")" : ""))];
    const qt = Object.entries(ev.query_translations || {});
    if (qt.length) parts.push(el("div", { class: "query" }, "query translations: " + qt.map(([l, t]) => l + ": " + t).join(" · ")));
    for (const p of ev.passages) parts.push(passageNode(p));
    if (ev.duplicates) parts.push(el("div", { class: "stop" }, ev.duplicates + " duplicate(s) dropped"));
    if (ev.dropped && ev.dropped.length) parts.push(el("div", { class: "stop" }, "dropped for the budget: " + ev.dropped.join(", ")));
    return el("div", { class: "evidence" }, ...parts);
  }

  function turnNode(t) {
    const label = t.kind === "force_answer" ? "forced answer" : "turn " + (t.index + 1) + " · " + t.action;
    const parts = [el("div", { class: "label" }, label)];
    if (t.thought) parts.push(el("div", { class: "thought" }, t.thought));
    if (t.query) parts.push(el("div", { class: "query" }, "search: " + t.query));
    if (t.evidence) parts.push(evidenceNode(t.evidence, "evidence inserted"));
    else for (const d of t.docs || []) parts.push(el("div", { class: "passage" }, el("span", { class: "flag" }, d.lang), " " + d.doc_id));
    if (t.answer !== null && t.answer !== undefined) parts.push(el("div", { class: "answer" }, "answer: " + t.answer));
    if (t.problems && t.problems.length) parts.push(el("div", { class: "stop" }, "problems: " + t.problems.join(", ")));
    return el("div", { class: "turn" }, ...parts);
  }

  function resultNode(runIndex, result) {
    const run = data.runs[runIndex];
    if (!result) return el("div", { class: "result missing", "data-run": run.label }, el("h4", {}, run.label), "not answered in this run");
    const ok = correct(result);
    const parts = [
      el("h4", {}, run.label),
      el("div", { class: "answer" }, "answer: " + (result.prediction === null ? "(none)" : result.prediction)),
      el("div", { class: "stop" }, "EM " + pct(result.em) + " · F1 " + pct(result.f1) + " · stop: " + result.stop_reason +
        " · searches: " + result.searches + (result.evidence_hit === null ? "" : " · gold in context: " + (result.evidence_hit ? "yes" : "no"))),
    ];
    for (const ev of result.prompt_evidence || []) if (ev) parts.push(evidenceNode(ev, "evidence in the prompt"));
    for (const t of result.turns) parts.push(turnNode(t));
    return el("div", { class: "result " + (ok ? "right" : "wrong"), "data-run": run.label }, ...parts);
  }

  function questionNode(q) {
    const runs = [state.a].concat(state.b >= 0 && state.b !== state.a ? [state.b] : []);
    return el("article", { class: "question", "data-id": q.id, "data-lang": q.lang },
      el("header", {}, el("span", { class: "lang" }, q.lang), " ", el("strong", {}, q.question), " ",
        el("code", {}, q.id), el("div", { class: "golds" }, "gold: " + q.golds.join(" | "))),
      el("div", { class: "pair" }, ...runs.map((k) => resultNode(k, q.results[k]))));
  }

  function render() {
    const shown = data.questions.filter(matches);
    const pages = Math.max(1, Math.ceil(shown.length / state.size));
    state.page = Math.min(state.page, pages - 1);
    const start = state.page * state.size;
    const slice = shown.slice(start, start + state.size);
    $("questions").replaceChildren(...slice.map(questionNode));
    $("count").textContent = shown.length
      ? (start + 1) + "–" + (start + slice.length) + " of " + shown.length + " questions (page " + (state.page + 1) + " of " + pages + ")"
      : "no question matches";
    $("prev").disabled = state.page === 0;
    $("next").disabled = state.page >= pages - 1;
  }

  function setup() {
    const langs = [...new Set(data.questions.map((q) => q.lang))].sort();
    $("lang").replaceChildren(option("", "all"), ...langs.map((l) => option(l, l)));
    $("run-a").replaceChildren(...data.runs.map((r, i) => option(i, r.label)));
    $("run-b").replaceChildren(option(-1, "(none)"), ...data.runs.map((r, i) => option(i, r.label)));
    $("run-a").value = String(state.a);
    $("run-b").value = String(state.b);
    const bind = (id, key, parse) => $(id).addEventListener("change", (e) => { state[key] = parse(e.target.value); state.page = 0; render(); });
    bind("lang", "lang", String);
    bind("run-a", "a", Number);
    bind("run-b", "b", Number);
    bind("criterion", "criterion", String);
    bind("outcome", "outcome", String);
    bind("page-size", "size", Number);
    $("prev").addEventListener("click", () => { state.page -= 1; render(); });
    $("next").addEventListener("click", () => { state.page += 1; render(); });
    render();
  }
  setup();
})();
