// unrolled viewer: plain JavaScript over the JSON API (docs/viewer.md). No build step, no library.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  info: null,
  textId: null,
  text: "",
  chars: [],          // the text's code points (the server counts positions in code points)
  spans: [],          // one <span> per character of the text
  focus: null,        // {layer, kind, index}: the unit colouring the text
  shown: [],          // units the user has picked, as chips
  preds: new Map(),   // chunk start -> predictions of that chunk of positions
  selection: null,    // [start, end) of the selected span
  sampling: null,     // AbortController of the running sample
};
const PRED_CHUNK = 500;

// --- talking to the server --------------------------------------------------------------------
async function api(path, options) {
  const res = await fetch(path, options);
  let body = null;
  try { body = await res.json(); } catch (e) { /* not JSON */ }
  if (!res.ok) throw new Error(body && body.error ? body.error : `${res.status} ${res.statusText}`);
  return body;
}
const post = (path, obj) => api(path, {method: "POST", headers: {"Content-Type": "application/json"},
                                       body: JSON.stringify(obj)});
const q = (obj) => new URLSearchParams(Object.entries(obj).filter(([, v]) => v !== null && v !== "")).toString();

function status(message, isError) {
  const s = $("status");
  s.textContent = message || "";
  s.className = isError ? "error" : "";
}
function guarded(fn) {
  return async (...args) => {
    try { await fn(...args); } catch (e) { status(e.message, true); }
  };
}

// --- colour: blue (negative) - white (neutral) - red (positive) ------------------------------
function colour(v, lo, hi) {
  const mid = (lo + hi) / 2, half = (hi - lo) / 2 || 1;
  const t = Math.max(-1, Math.min(1, (v - mid) / half));
  // At most 80% of full blue or red, so the character stays readable on its colour.
  const w = Math.round(255 * (1 - 0.8 * Math.abs(t)));
  return t >= 0 ? `rgb(255,${w},${w})` : `rgb(${w},${w},255)`;
}

// --- the text ---------------------------------------------------------------------------------
function renderText(text) {
  const pre = $("text");
  const frag = document.createDocumentFragment();
  state.spans = new Array(text.length);
  let i = 0;
  for (const ch of text) {  // iterates code points, as the server's positions count them
    const s = document.createElement("span");
    s.textContent = ch;
    s._i = i;
    state.spans[i++] = s;
    frag.appendChild(s);
  }
  state.spans.length = i;
  state.chars = [...text];
  pre.replaceChildren(frag);
  pre.dataset.unit = "";
}

const LANGUAGE_NAMES = {c: "C", python: "Python", prose: "prose"};

// One heading for the text: its name, its size once, its language once.
function textHeading(t) {
  const size = `${t.file_chars ? "first " : ""}${t.length.toLocaleString()} characters`;
  return `${t.name} (${size}, ${LANGUAGE_NAMES[t.language] || t.language})`;
}

async function loadText(id) {
  const t = await api(`/api/text?${q({id})}`);
  state.textId = t.id;
  state.text = t.text;
  state.preds.clear();
  state.selection = null;
  renderText(t.text);
  const heading = $("text-name");
  heading.textContent = textHeading(t);
  heading.title = t.file_chars ? `the file has ${t.file_chars.toLocaleString()} characters; the viewer shows the first ones` : "";
  // A feature that fits the text's language: keep the one chosen if it fits, else the language's first.
  if (!t.features.includes($("feature").value)) $("feature").value = t.default_feature;
  $("selection").textContent = "no span selected";
  $("selected-units").replaceChildren();
  $("matches").replaceChildren();
  $("ranked").replaceChildren();
  $("bits").textContent = "";
  status("recording activations…");
  if (state.focus) await showUnit(state.focus);
  const b = await api(`/api/bits?${q({text: t.id})}`);
  $("bits").textContent = b.bits_per_char === null ? "" : `${b.bits_per_char} bits/char`;
  status("");
  $("text").dataset.textId = t.id;  // loaded: coloured and measured
  loadSaturation().catch((e) => status(e.message, true));
}

function unitName(u) { return `${u.kind}${u.layer}:${u.index}`; }

async function showUnit(u) {
  const a = await api(`/api/activations?${q({text: state.textId, layer: u.layer, kind: u.kind, units: u.index})}`);
  const values = a.units[0].values;
  const [lo, hi] = a.range;
  for (let i = 0; i < state.spans.length; i++) state.spans[i].style.backgroundColor = colour(values[i], lo, hi);
  state.focus = u;
  $("focus-name").textContent = unitName(u);
  $("scale-low").textContent = lo.toFixed(2);
  $("scale-high").textContent = hi.toFixed(2);
  $("text").dataset.unit = unitName(u);
  $("layer").value = u.layer;
  $("kind").value = u.kind;
  $("unit").value = u.index;
  if (!state.shown.some((s) => unitName(s) === unitName(u))) state.shown.push(u);
  renderChips($("shown"), state.shown);
}

function unitButton(u, label) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label || unitName(u);
  b.dataset.unit = unitName(u);
  if (state.focus && unitName(state.focus) === unitName(u)) b.className = "focus";
  b.addEventListener("click", guarded(() => showUnit(u)));
  return b;
}
function renderChips(el, units) { el.replaceChildren(...units.map((u) => unitButton(u))); }

// --- top-5 guesses on hover -------------------------------------------------------------------
async function predictionsAt(i) {
  const start = Math.floor(i / PRED_CHUNK) * PRED_CHUNK;
  if (!state.preds.has(start)) {
    const end = Math.min(start + PRED_CHUNK, state.spans.length);
    state.preds.set(start, api(`/api/predictions?${q({text: state.textId, start, end, k: 5})}`));
  }
  const chunk = await state.preds.get(start);
  return chunk.positions[i - start];
}
const shown = (c) => c === null ? "(end)" : JSON.stringify(c);

async function hover(ev) {
  const span = ev.target;
  if (span._i === undefined) return;
  const id = state.textId;
  const p = await predictionsAt(span._i);
  if (id !== state.textId) return;
  const lines = [`after ${shown(state.chars[span._i])}:`];
  for (const [c, prob] of p.top) lines.push(`${shown(c).padEnd(6)} ${(100 * prob).toFixed(1)}%`);
  if (p.next !== null) lines.push(`next is ${shown(p.next)}: ${(100 * p.p_next).toFixed(1)}%`);
  const tip = $("tooltip");
  tip.textContent = lines.join("\n");
  tip.hidden = false;
  tip.style.left = `${ev.clientX + 14}px`;
  tip.style.top = `${ev.clientY + 14}px`;
}

// --- select and match -------------------------------------------------------------------------
// The character a selection boundary falls on. A boundary is a (node, offset) pair: inside a
// character's text node, or between children of an element (offset = index of the next child).
function spanIndex(node, offset, isEnd) {
  if (node.nodeType === Node.TEXT_NODE) {
    const i = node.parentElement._i;
    return isEnd && offset === 0 ? i - 1 : i;  // an end before a character's text excludes it
  }
  if (node === $("text")) return Math.min(isEnd ? offset - 1 : offset, state.spans.length - 1);
  if (node._i === undefined) return undefined;
  return isEnd && offset === 0 ? node._i - 1 : node._i;
}

function selectedSpan() {
  const sel = window.getSelection();
  if (!sel || sel.isCollapsed || sel.rangeCount === 0) return null;
  const r = sel.getRangeAt(0);
  if (!$("text").contains(r.commonAncestorContainer)) return null;
  const a = spanIndex(r.startContainer, r.startOffset, false);
  const b = spanIndex(r.endContainer, r.endOffset, true);
  if (a === undefined || b === undefined || b < a) return null;
  return [a, b + 1];
}

async function runSelect() {
  if (!state.selection) return;
  const [start, end] = state.selection;
  for (const s of state.spans) s.classList.remove("sel", "match");
  for (let i = start; i < end; i++) state.spans[i].classList.add("sel");
  const kind = $("kind").value, layer = Number($("layer").value);
  const r = await post("/api/select", {text: state.textId, start, end, kind, layer,
                                       threshold: Number($("threshold").value), pad: Number($("pad").value)});
  $("selection").textContent = `span ${start}..${end} ${JSON.stringify(state.chars.slice(start, end).slice(0, 40).join(""))}: ` +
    `${r.units.length} unit(s) of ${kind}${layer} on across it and off around it`;
  const units = r.units.map((u) => ({layer, kind, index: u.index}));
  renderChips($("selected-units"), units);
  const list = $("matches");
  list.replaceChildren();
  for (const m of r.matches) {
    for (let i = m.start; i < m.end; i++) if (!state.spans[i].classList.contains("sel")) state.spans[i].classList.add("match");
    const li = document.createElement("li");
    const code = document.createElement("code");
    code.textContent = m.snippet.replace(/\n/g, "\u21b5").replace(/\t/g, "\u2192");  // ↵ and → keep it on one line
    li.append(`${m.start}..${m.end} `, code, ` ${m.intersection}/${units.length} on`);
    li.addEventListener("click", () => state.spans[m.start].scrollIntoView({block: "center"}));
    list.appendChild(li);
  }
  if (units.length && !units.some((u) => state.focus && unitName(u) === unitName(state.focus))) await showUnit(units[0]);
}

// --- ranked units -----------------------------------------------------------------------------
// The ranked units of the chosen kind for the chosen feature; returns the best one (or null).
async function rank() {
  const feature = $("feature").value, kind = $("kind").value;
  status(`ranking the ${kind} units for ${feature}…`);
  const r = await api(`/api/units?${q({text: state.textId, feature, kind, top: 20})}`);
  // The score as `unrolled cells` prints it: the strength (max(AUC, 1 - AUC), or |r|) with + for a
  // unit high where the feature holds and - for one low there (as informative).
  const how = r.metric === "auc" ? "ROC AUC (auc: max(AUC, 1 - AUC))" : "Pearson r (r)";
  $("rank-note").textContent = r.note || `every ${kind} unit scored by ${how} against ${feature}, as ` +
    "unrolled cells prints it; sign: + high where the feature holds, - low";
  const list = $("ranked");
  list.replaceChildren();
  for (const row of r.best) {
    const u = {layer: row.layer, kind, index: row.index};
    const li = document.createElement("li");
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = ` ${r.metric} ${row.signed}`;  // the CLI's signed score (report.signed)
    score.title = `raw ${r.metric} ${row.score.toFixed(4)}`;
    li.append(unitButton(u), score);
    list.appendChild(li);
  }
  // Underline the characters where a yes/no feature holds, to see the unit against it.
  const f = await api(`/api/feature?${q({text: state.textId, name: feature})}`);
  state.spans.forEach((span, i) => span.classList.toggle("feat", f.kind === "binary" && f.values[i] === 1));
  status("");
  return r.best.length ? {layer: r.best[0].layer, kind, index: r.best[0].index} : null;
}

// --- new text: paste, upload, server files ----------------------------------------------------
async function explore(text, name) {
  status("checking the text…");
  const t = await post("/api/text", {text, name});
  await loadText(t.id);
}

async function upload() {
  const f = $("upload").files[0];
  if (!f) return;
  if (f.size > state.info.limits.max_chars * 4) {
    status(`${f.name} is too large for the viewer (limit ${state.info.limits.max_chars.toLocaleString()} chars)`, true);
    return;
  }
  $("new-text").value = await f.text();
  $("new-text").dataset.name = f.name;
}

// --- sampling, streamed as server-sent events -------------------------------------------------
// The sample panel's options, as /api/sample's query (evidence.js adds its clamps to them).
function sampleParams() {
  return new URLSearchParams(q({prime: $("prime").value, temperature: $("temperature").value,
                                length: $("length").value, seed: $("seed").value}));
}

// Stream /api/sample?params into `out`, the prime first; resolves when the stream ends.
async function streamSample(out, params, signal) {
  out.textContent = "";
  out.dataset.state = "running";
  try {
    const res = await fetch(`/api/sample?${params}`, {signal});
    if (!res.ok) throw new Error((await res.json()).error);
    out.textContent = $("prime").value;
    const reader = res.body.getReader();
    const dec = new TextDecoder();
    let buf = "";
    for (;;) {
      const {value, done} = await reader.read();
      if (done) break;
      buf += dec.decode(value, {stream: true});
      let k;
      while ((k = buf.indexOf("\n\n")) >= 0) {
        const ev = buf.slice(0, k);
        buf = buf.slice(k + 2);
        const data = ev.split("\n").find((l) => l.startsWith("data: "));
        if (ev.startsWith("event: end")) { out.dataset.state = "done"; continue; }
        if (data) out.textContent += JSON.parse(data.slice(6)).text;
      }
      out.scrollTop = out.scrollHeight;
    }
    out.dataset.state = "done";
  } catch (e) {
    out.dataset.state = "error";
    if (e.name !== "AbortError") throw e;
  }
}

async function sample() {
  const out = $("sample-out");
  const ctl = new AbortController();
  state.sampling = ctl;
  $("sample").disabled = true;
  $("stop").disabled = false;
  $("explore-sample").disabled = true;
  try {
    await streamSample(out, sampleParams(), ctl.signal);
  } finally {
    state.sampling = null;
    $("sample").disabled = false;
    $("stop").disabled = true;
    $("explore-sample").disabled = !out.textContent;
  }
}

// --- saturation scatter plots, one per layer (SVG) --------------------------------------------
const GATE_COLOURS = {i: "#1f77b4", f: "#d62728", o: "#2ca02c", r: "#9467bd", z: "#ff7f0e"};
const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

async function loadSaturation() {
  const s = await api(`/api/saturation?${q({text: state.textId})}`);
  const box = $("saturation");
  box.replaceChildren();
  if (!s.gates.length) { box.textContent = s.note || ""; return; }
  // As `unrolled saturation --png` and the paper's Fig. 3: left-saturated on x, right on y (s.axes).
  const {x: ax, y: ay} = s.axes;
  const size = 200, m = 28, plot = size - 2 * m + 10;
  const layers = [...new Set(s.gates.map((g) => g.layer))];
  for (const layer of layers) {
    const el = svg("svg", {width: size, height: size, viewBox: `0 0 ${size} ${size}`, "data-layer": layer,
                           "data-x": ax.field, "data-y": ay.field});
    el.appendChild(svg("rect", {class: "frame", x: m, y: 8, width: plot, height: plot, fill: "#fafafa", stroke: "#999"}));
    // left + right <= 1 for every unit: the points lie below this diagonal
    el.appendChild(svg("line", {x1: m, y1: 8, x2: m + plot, y2: 8 + plot, stroke: "#ccc"}));
    el.appendChild(svg("text", {class: "x-label", x: m, y: size - 8}, ax.label));
    el.appendChild(svg("text", {class: "y-label", x: 10, y: 8 + plot, transform: `rotate(-90 10 ${8 + plot})`}, ay.label));
    el.appendChild(svg("text", {x: m + plot - 40, y: 20}, `layer ${layer}`));
    for (const [x, y, t] of [[m - 3, 8 + plot + 10, "0"], [m + plot - 3, 8 + plot + 10, "1"], [m - 9, 14, "1"]]) {
      el.appendChild(svg("text", {x, y}, t));
    }
    const gates = s.gates.filter((g) => g.layer === layer);
    let lx = m + plot - 40;  // the gates' names under the layer's, above the diagonal where no unit can be
    for (const g of gates) {
      const col = GATE_COLOURS[g.gate] || "#333";
      const xs = g[ax.field], ys = g[ay.field];
      for (let j = 0; j < xs.length; j++) {
        el.appendChild(svg("circle", {cx: m + xs[j] * plot, cy: 8 + plot - ys[j] * plot, r: 2,
                                      fill: col, "fill-opacity": 0.6, "data-gate": g.gate, "data-unit": j}));
      }
      const label = svg("text", {x: lx, y: 33}, g.gate);
      label.style.fill = col;  // CSSOM, which the page's Content-Security-Policy allows (a style attribute it does not)
      el.appendChild(label);
      lx += 12;
    }
    box.appendChild(el);
  }
}

// --- the model panel --------------------------------------------------------------------------
function modelTable(info) {
  const rows = [["checkpoint", info.checkpoint], ["cell", info.cell], ["layers", info.num_layers],
                ["hidden size", info.hidden_size], ["vocabulary", info.vocab_size],
                ["parameters", info.parameters && info.parameters.toLocaleString()], ["step", info.step],
                ["best val bits/char", typeof info.best_val_bpc === "number" ? +info.best_val_bpc.toFixed(4) : null]];
  const shownAlready = new Set(["cell", "hidden_size", "num_layers"]);
  for (const [k, v] of Object.entries(info.config || {})) if (!shownAlready.has(k)) rows.push([k, v]);
  for (const [k, v] of Object.entries(info.metrics || {})) rows.push([k, typeof v === "number" ? +v.toFixed(4) : v]);
  $("model-table").replaceChildren(...rows.filter(([, v]) => v !== undefined && v !== null).map(([k, v]) => {
    const tr = document.createElement("tr");
    const a = document.createElement("td"), b = document.createElement("td");
    a.textContent = k;
    b.textContent = typeof v === "object" ? JSON.stringify(v) : String(v);
    tr.append(a, b);
    return tr;
  }));
}

function options(select, items) {
  select.replaceChildren(...items.map(([value, label]) => {
    const o = document.createElement("option");
    o.value = value;
    o.textContent = label;
    return o;
  }));
}

// --- start ------------------------------------------------------------------------------------
async function start() {
  const info = await api("/api/info");
  state.info = info;
  $("model-summary").textContent = `${info.checkpoint}: ${info.cell.toUpperCase()} ${info.num_layers}×${info.hidden_size}`;
  options($("layer"), [...Array(info.num_layers).keys()].map((l) => [l, l]));
  options($("kind"), info.kinds.map((k) => [k.key, k.name]));
  options($("feature"), info.features.map((f) => [f.name, `${f.name}: ${f.doc}`]));
  $("unit").max = info.hidden_size - 1;
  const files = await api("/api/files");
  options($("files"), files.files.map((f) => [f.name, f.name]));
  $("load-file").disabled = !files.files.length;
  modelTable(info);

  $("show-unit").addEventListener("click", guarded(() => showUnit(
    {layer: Number($("layer").value), kind: $("kind").value, index: Number($("unit").value)})));
  $("unit").addEventListener("keydown", (e) => { if (e.key === "Enter") $("show-unit").click(); });
  $("rank").addEventListener("click", guarded(rank));
  $("threshold").addEventListener("input", () => { $("threshold-value").textContent = $("threshold").value; });
  $("threshold").addEventListener("change", guarded(runSelect));
  $("pad").addEventListener("change", guarded(runSelect));
  $("text").addEventListener("mouseup", guarded(async () => {
    const span = selectedSpan();
    if (!span) return;
    state.selection = span;
    await runSelect();
  }));
  $("text").addEventListener("mouseover", (ev) => hover(ev).catch((e) => status(e.message, true)));
  $("text").addEventListener("mouseleave", () => { $("tooltip").hidden = true; });
  $("upload").addEventListener("change", guarded(upload));
  $("new-text").addEventListener("input", () => { delete $("new-text").dataset.name; });
  $("explore").addEventListener("click", guarded(() => explore($("new-text").value, $("new-text").dataset.name || "pasted text")));
  $("load-file").addEventListener("click", guarded(async () => {
    const t = await post("/api/text", {file: $("files").value});
    await loadText(t.id);
  }));
  $("sample").addEventListener("click", guarded(sample));
  $("stop").addEventListener("click", () => state.sampling && state.sampling.abort());
  $("explore-sample").addEventListener("click", guarded(() => explore($("sample-out").textContent, "a sample")));

  // The page opens on the best unit of the text's default feature (the top of its ranking),
  // or on unit 0 of layer 0 when the feature cannot be scored on this text.
  state.focus = null;
  await loadText(info.first_text);
  const best = await rank();
  await showUnit(best || {layer: 0, kind: info.kinds[0].key, index: 0});
  document.body.dataset.ready = "1";
}

document.addEventListener("DOMContentLoaded", guarded(start));
