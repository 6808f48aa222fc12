// unrolled viewer: the evidence panels (docs/viewer.md), over viewer.js's helpers ($, state, api,
// q, guarded, colour, unitButton, sampleParams, streamSample). Clamp a unit and resample; click a
// character to colour the text before it by what its prediction owes to each character; a probe.
"use strict";

// --- clamp and resample -----------------------------------------------------------------------
// The same options and seed twice: free into the sample panel, then with the units held.
async function clampAndResample() {
  const specs = $("clamps").value.split(/[\s,]+/).filter((s) => s);
  if (!specs.length) throw new Error("give a unit to hold, like c1:97=3");
  if (!$("seed").value) $("seed").value = Math.floor(Math.random() * 2 ** 31);  // one seed for both
  $("clamp-sample").disabled = true;
  try {
    const held = sampleParams();
    for (const s of specs) held.append("clamp", s);
    await streamSample($("clamp-out"), held);  // checked first: a bad clamp stops here
    await streamSample($("sample-out"), sampleParams());
    $("explore-sample").disabled = false;
  } finally {
    $("clamp-sample").disabled = false;
  }
}

function holdFocus() {
  if (!state.focus) return;
  const name = `${state.focus.kind}${state.focus.layer}:${state.focus.index}`;
  $("clamps").value = `${name}=${$("clamp-value").value}`;
}

// --- attribution: click a character -----------------------------------------------------------
async function attributeAt(at) {
  status(`attributing the prediction after character ${at}…`);
  const r = await api(`/api/attribute?${q({text: state.textId, at, window: $("attr-window").value})}`);
  const [a, b] = r.window;
  const m = Math.max(...r.attributions.map((e) => Math.abs(e.ig)), 1e-9);
  const ig = new Map(r.attributions.map((e) => [e.at, e.ig]));
  state.spans.forEach((span, i) => {
    span.style.backgroundColor = i >= a && i < b ? colour(ig.get(i), -m, m) : "";
    span.classList.toggle("attr-at", i === at);
  });
  $("focus-name").textContent = `what the prediction after ${at} owes each character (integrated gradients)`;
  $("scale-low").textContent = (-m).toFixed(2);
  $("scale-high").textContent = m.toFixed(2);
  $("text").dataset.unit = "";
  const err = (100 * r.completeness_error).toFixed(2);
  $("attr-summary").textContent = `log p(${JSON.stringify(r.target)}) = ${r.logp.toFixed(3)} after ` +
    `${JSON.stringify(r.char)}, from ${r.baseline_logp.toFixed(3)} on a blank window; the attributions add up ` +
    `to ${r.ig_sum.toFixed(3)} (completeness error ${err}%)`;
  const top = [...r.attributions].sort((x, y) => Math.abs(y.ig) - Math.abs(x.ig)).slice(0, 8);
  $("attr-top").replaceChildren(...top.map((e) => {
    const li = document.createElement("li");
    li.textContent = `${e.offset} back ${JSON.stringify(e.char)}: ${e.ig >= 0 ? "+" : ""}${e.ig.toFixed(3)}`;
    return li;
  }));
  $("text").dataset.attributed = String(at);
  status("");
}

function clicked(ev) {
  const sel = window.getSelection();
  if (sel && !sel.isCollapsed) return;  // a drag selects a span (viewer.js), a click attributes
  if (ev.target._i === undefined || !$("attribute-on").checked) return;
  attributeAt(ev.target._i).catch((e) => status(e.message, true));
}

// --- probe ------------------------------------------------------------------------------------
async function runProbe() {
  const feature = $("probe-feature").value, layer = $("probe-layer").value;
  status(`fitting a probe for ${feature} on layer ${layer}…`);
  $("probe-result").dataset.state = "running";
  const r = await api(`/api/probe?${q({text: state.textId, feature, layer})}`);
  const metric = r.metric === "auc" ? "AUC" : "r";
  const rows = [["probe", `${metric} ${r.probe.toFixed(4)}`, `all ${r.units} units of layer ${r.layer}`],
                ["best unit", `${metric} ${r.best_unit.score.toFixed(4)}`, null],
                ["control task", `${metric} ${r.control.toFixed(4)}`, "random labels by character type"],
                ["selectivity", `${r.selectivity >= 0 ? "+" : ""}${r.selectivity.toFixed(4)}`, "probe - control"]];
  $("probe-result").replaceChildren(...rows.map(([k, v, note], j) => {
    const tr = document.createElement("tr");
    tr.dataset.row = k;
    const a = document.createElement("td"), b = document.createElement("td"), c = document.createElement("td");
    a.textContent = k;
    b.textContent = v;
    if (j === 1) {
      const [key, rest] = r.best_unit.unit.split(":");
      c.append(unitButton({kind: key[0], layer: Number(key.slice(1)), index: Number(rest)}));
    } else {
      c.textContent = note;
    }
    tr.append(a, b, c);
    return tr;
  }));
  $("probe-result").dataset.state = "done";
  status(`fitted on ${r.fit_rows.toLocaleString()} characters, scored on the other ${r.test_rows.toLocaleString()}`);
}

async function startEvidence() {
  const info = await api("/api/info");
  options($("probe-feature"), info.features.map((f) => [f.name, f.name]));
  options($("probe-layer"), [...Array(info.num_layers).keys()].map((l) => [l, l]));
  $("probe-layer").value = info.num_layers - 1;
  $("clamp-sample").addEventListener("click", guarded(clampAndResample));
  $("hold-focus").addEventListener("click", holdFocus);
  $("text").addEventListener("click", clicked);
  $("probe").addEventListener("click", guarded(runProbe));
}

document.addEventListener("DOMContentLoaded", guarded(startEvidence));
