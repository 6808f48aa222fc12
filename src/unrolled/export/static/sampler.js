// The sampler page: a character model's forward pass, sampling and colouring, in plain JavaScript.
// The model (weights in torch's layout and gate order) is the JSON in #unrolled-model, written by
// unrolled export --html; nothing is fetched. Arithmetic is float64 over the float32 weights.
"use strict";
(function () {
  const M = JSON.parse(document.getElementById("unrolled-model").textContent);
  const H = M.hidden_size, L = M.num_layers, V = M.symbols.length;
  const GATES = { rnn: 1, lstm: 4, gru: 3 }[M.cell];
  const INDEX = new Map(M.symbols.map((s, i) => [s, i]));

  // --- the weights: one base64 string of little-endian float32 ----------------------------------
  const W = (function () {
    const bin = atob(M.data), view = new DataView(new ArrayBuffer(bin.length));
    for (let i = 0; i < bin.length; i++) view.setUint8(i, bin.charCodeAt(i));
    const all = new Float64Array(bin.length / 4);
    for (let i = 0; i < all.length; i++) all[i] = view.getFloat32(4 * i, true);
    const out = {};
    for (const [name, t] of Object.entries(M.tensors)) {
      const n = t.shape.reduce((a, b) => a * b, 1);
      out[name] = { v: all.subarray(t.offset, t.offset + n), rows: t.shape[0], cols: t.shape[1] || 1 };
    }
    return out;
  })();

  // y = A x + b for A (rows, cols) row-major
  function affine(A, x, b) {
    const y = new Float64Array(A.rows), a = A.v, c = A.cols;
    for (let r = 0; r < A.rows; r++) {
      let s = b.v[r];
      for (let j = 0, o = r * c; j < c; j++) s += a[o + j] * x[j];
      y[r] = s;
    }
    return y;
  }
  // layer 0's input product: the embedding row, or for one-hot inputs the token's column of W_ih
  function inputProduct(token) {
    const A = W.weight_ih_l0, b = W.bias_ih_l0;
    if (!M.one_hot) {
      const E = W.embedding, x = E.v.subarray(token * E.cols, (token + 1) * E.cols);
      return affine(A, x, b);
    }
    const y = new Float64Array(A.rows);
    for (let r = 0; r < A.rows; r++) y[r] = A.v[r * A.cols + token] + b.v[r];
    return y;
  }
  const sigmoid = (x) => 1 / (1 + Math.exp(-x));
  const act = M.nonlinearity === "relu" ? (x) => Math.max(0, x) : Math.tanh;

  function zeroState() {
    const z = () => Array.from({ length: L }, () => new Float64Array(H));
    return M.cell === "lstm" ? { h: z(), c: z() } : { h: z() };
  }

  // One step: a token in, the state moved in place, the next logits (V) out (CharLM.forward, eval).
  function step(state, token) {
    let x = null;
    for (let l = 0; l < L; l++) {
      const gi = l === 0 ? inputProduct(token) : affine(W[`weight_ih_l${l}`], x, W[`bias_ih_l${l}`]);
      const hp = state.h[l], gh = affine(W[`weight_hh_l${l}`], hp, W[`bias_hh_l${l}`]);
      const h = new Float64Array(H);
      if (M.cell === "rnn") {
        for (let j = 0; j < H; j++) h[j] = act(gi[j] + gh[j]);
      } else if (M.cell === "lstm") {  // gates i, f, g, o
        const c = state.c[l];
        for (let j = 0; j < H; j++) {
          const i = sigmoid(gi[j] + gh[j]), f = sigmoid(gi[H + j] + gh[H + j]);
          const g = Math.tanh(gi[2 * H + j] + gh[2 * H + j]), o = sigmoid(gi[3 * H + j] + gh[3 * H + j]);
          c[j] = f * c[j] + i * g;
          h[j] = o * Math.tanh(c[j]);
        }
      } else {  // gru: gates r, z, n; r multiplies (W_hn h + b_hn)
        for (let j = 0; j < H; j++) {
          const r = sigmoid(gi[j] + gh[j]), z = sigmoid(gi[H + j] + gh[H + j]);
          const n = Math.tanh(gi[2 * H + j] + r * gh[2 * H + j]);
          h[j] = (1 - z) * n + z * hp[j];
        }
      }
      state.h[l] = h;
      x = h;
    }
    return affine(W.head_weight, x, W.head_bias);
  }

  function encode(text) {
    return Array.from(text, (ch) => {
      if (!INDEX.has(ch)) throw new Error(`the prime contains ${JSON.stringify(ch)}, a character the model never saw`);
      return INDEX.get(ch);
    });
  }
  // With no prime the model reads a newline (or its first symbol) first, as unrolled sample does.
  const startToken = () => (INDEX.has("\n") ? INDEX.get("\n") : 0);

  function softmax(z) {
    let m = -Infinity;
    for (const v of z) m = Math.max(m, v);
    const p = z.map((v) => Math.exp(v - m)), s = p.reduce((a, b) => a + b, 0);
    return p.map((v) => v / s);
  }

  // --- a seeded PRNG: xoshiro128** seeded by splitmix32 from the seed's two 32-bit halves --------
  function rng(seed) {
    let x = (seed % 4294967296) ^ Math.imul(Math.floor(seed / 4294967296), 0x9e3779b1);
    const mix = () => {
      x = (x + 0x9e3779b9) | 0;
      let z = Math.imul(x ^ (x >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) | 0;
    };
    let a = mix(), b = mix(), c = mix(), d = mix();
    return function () {
      const t = b << 9, r0 = Math.imul(b, 5), r = Math.imul((r0 << 7) | (r0 >>> 25), 9);
      c ^= a; d ^= b; b ^= c; a ^= d; c ^= t; d = (d << 11) | (d >>> 21);
      return (r >>> 0) / 4294967296;
    };
  }

  // logits -> the next token: argmax at temperature 0, else top-k then softmax(logits / temperature)
  function choose(logits, temperature, topK, random) {
    let best = 0;
    for (let i = 1; i < V; i++) if (logits[i] > logits[best]) best = i;
    if (!(temperature > 0)) return best;
    let z = logits.map((v) => (v - logits[best]) / temperature);
    if (topK && topK < V) {
      const kth = Array.from(z).sort((a, b) => b - a)[topK - 1];
      z = z.map((v) => (v < kth ? -Infinity : v));
    }
    const p = softmax(z);
    let u = random(), last = best;
    for (let i = 0; i < V; i++) {
      if (p[i] > 0) last = i;
      if ((u -= p[i]) < 0) return i;
    }
    return last;  // rounding left u a hair above 0: the last possible token
  }

  // Every character with the chosen unit's value after reading it: the prime's, then the new ones.
  function* generate(opts) {
    const unit = opts.unit || { layer: 0, kind: "h", index: 0 };
    const state = zeroState(), random = rng(opts.seed), ids = encode(opts.prime);
    const value = () => state[unit.kind][unit.layer][unit.index];
    let logits = step(state, ids.length ? ids[0] : startToken());
    if (ids.length) yield { ch: M.symbols[ids[0]], value: value(), prime: true };
    for (const t of ids.slice(1)) {
      logits = step(state, t);
      yield { ch: M.symbols[t], value: value(), prime: true };
    }
    for (let n = 0; n < opts.length; n++) {
      const t = choose(logits, opts.temperature, opts.topK, random);
      logits = step(state, t);
      yield { ch: M.symbols[t], value: value(), prime: false };
    }
  }

  window.unrolledNextProbs = function (prefix) {
    const state = zeroState(), ids = encode(prefix);
    let logits = null;
    for (const t of ids.length ? ids : [startToken()]) logits = step(state, t);
    return Array.from(softmax(logits));
  };
  window.unrolledSample = function (prime, length, temperature, seed, topK) {
    let text = "";
    for (const c of generate({ prime, length, temperature, seed, topK })) text += c.ch;
    return text;
  };
  window.unrolledModel = { cell: M.cell, num_layers: L, hidden_size: H, symbols: M.symbols.slice() };

  // --- the page -----------------------------------------------------------------------------------
  const $ = (id) => document.getElementById(id);
  function colour(v, scale) {  // blue (negative) - white (0) - red (positive), as the viewer draws it
    const t = Math.max(-1, Math.min(1, v / scale)), w = Math.round(255 * (1 - 0.8 * Math.abs(t)));
    return t >= 0 ? `rgb(255,${w},${w})` : `rgb(${w},${w},255)`;
  }
  function setup() {
    const cells = { rnn: "RNN", lstm: "LSTM", gru: "GRU" };
    $("about").textContent = `${cells[M.cell]}, ${L} layer${L > 1 ? "s" : ""} of ${H}, ${V} characters, ` +
      `${M.parameters.toLocaleString("en")} parameters; runs in this page, offline`;
    for (let l = 0; l < L; l++) $("layer").add(new Option(String(l), String(l)));
    for (const k of M.cell === "lstm" ? ["h", "c"] : ["h"]) $("kind").add(new Option(k === "h" ? "h (hidden)" : "c (cell)", k));
    $("unit").max = String(H - 1);
    $("legend").innerHTML = [-1, -0.5, 0, 0.5, 1].map((v) => `<span style="background:${colour(v, 1)}">${v > 0 ? "+" : ""}${v}</span>`).join("") +
      " the unit's value / scale (1 for h; the largest |value| for c)";
    $("controls").addEventListener("submit", (e) => { e.preventDefault(); start(); });
    $("stop").addEventListener("click", () => { running = null; });
  }
  let running = null;
  function readInt(id, lo, hi, name) {
    const s = $(id).value.trim();
    if (s === "") return null;
    const n = Number(s);
    if (!Number.isInteger(n) || n < lo || n > hi) throw new Error(`${name} must be a whole number from ${lo} to ${hi}`);
    return n;
  }
  function start() {
    const status = $("status");
    status.className = "";
    let opts;
    try {
      const temperature = Number($("temperature").value);
      if (!Number.isFinite(temperature) || temperature < 0) throw new Error("temperature must be a number, 0 or more (0 is argmax)");
      let seed = readInt("seed", 0, Number.MAX_SAFE_INTEGER, "seed");
      if (seed === null) seed = Math.floor(Math.random() * 4294967296);
      const unit = { layer: Number($("layer").value), kind: $("kind").value, index: readInt("unit", 0, H - 1, "unit") || 0 };
      opts = { prime: $("prime").value, temperature, seed, unit, topK: readInt("topk", 1, V, "top-k"),
               length: readInt("length", 1, 1000000, "length") || 500 };
      encode(opts.prime);
    } catch (e) {
      status.textContent = e.message;
      status.className = "error";
      return;
    }
    run(opts);
  }
  function run(opts) {
    const out = $("out"), spans = [], gen = generate(opts), token = {};
    running = token;
    out.textContent = "";
    $("go").disabled = true;
    $("stop").disabled = false;
    let scale = 1, written = 0;
    const paint = (s) => { s.style.backgroundColor = colour(s.unitValue, scale); };
    function chunk() {
      const until = performance.now() + 30;
      while (running === token && performance.now() < until) {
        const r = gen.next();
        if (r.done) { running = null; break; }
        const s = document.createElement("span");
        s.textContent = r.value.ch === "\n" ? "\u21b5\n" : r.value.ch;
        s.unitValue = r.value.value;
        s.title = `${opts.unit.kind}[${opts.unit.layer}][${opts.unit.index}] = ${s.unitValue.toFixed(4)}`;
        if (r.value.prime) s.className = "prime"; else written++;
        if (Math.abs(s.unitValue) > scale) scale = Math.abs(s.unitValue);
        paint(s);
        spans.push(s);
        out.appendChild(s);
      }
      $("status").textContent = `${written} of ${opts.length} characters, seed ${opts.seed}`;
      if (running === token) { setTimeout(chunk, 0); return; }
      spans.forEach(paint);  // once more on the final scale
      $("go").disabled = false;
      $("stop").disabled = true;
    }
    chunk();
  }
  setup();
})();
