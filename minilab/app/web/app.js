// The lab's page: four tabs over the JSON API of minilab/serve.py. Plain JavaScript, no libraries.
"use strict";

const $ = (sel) => document.querySelector(sel);
const COLORS = ["#2f6fde", "#d9480f", "#2b8a3e", "#862e9c", "#c92a2a", "#0b7285", "#e67700", "#495057"];
const POLL_MS = 2000; // the metrics of ticked runs are fetched again this often, so curves grow live

// ---- small helpers
async function api(path, options) {
  // JSON from the API; a 4xx/5xx answer becomes an Error carrying the server's one-line message.
  const r = await fetch(path, options);
  const body = await r.json().catch(() => ({ error: `HTTP ${r.status}` }));
  if (!r.ok) throw new Error(body.error || `HTTP ${r.status}`);
  return body;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "style") node.style.cssText = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

function table(rows) {
  // rows: [[key, value], ...] -> a two-column table
  return el("table", {}, ...rows.map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", {}, v ?? ""))));
}

const fmt = (v) => (typeof v === "number" && !Number.isInteger(v) ? v.toPrecision(4) : v);

// ---- tabs
document.querySelectorAll(".tab").forEach((button) =>
  button.addEventListener("click", () => {
    document.querySelectorAll(".tab").forEach((b) => b.classList.toggle("active", b === button));
    document.querySelectorAll(".panel").forEach((p) => p.classList.toggle("active", p.id === button.dataset.tab));
    if (button.dataset.tab === "model") showModel();
  })
);

// ---- a line chart on a canvas: axes, ticks, one line (and optional dots) per series
function niceTicks(lo, hi, n = 5) {
  const span = hi - lo || 1;
  const step = Math.pow(10, Math.floor(Math.log10(span / n)));
  const k = [1, 2, 5, 10].find((m) => span / (m * step) <= n) * step;
  const ticks = [];
  for (let t = Math.ceil(lo / k) * k; t <= hi + 1e-12; t += k) ticks.push(+t.toPrecision(12));
  return ticks;
}

function drawChart(canvas, series) {
  // series: [{color, points: [[x, y], ...], dots: bool, width: number}]
  const ctx = canvas.getContext("2d");
  const W = canvas.width, H = canvas.height, L = 52, R = 12, T = 10, B = 30;
  ctx.clearRect(0, 0, W, H);
  const all = series.flatMap((s) => s.points);
  ctx.font = "12px system-ui, sans-serif";
  ctx.fillStyle = "#667085";
  if (!all.length) {
    ctx.fillText("tick a run with metrics to draw it", L, H / 2);
    return;
  }
  let [x0, x1] = [Math.min(...all.map((p) => p[0])), Math.max(...all.map((p) => p[0]))];
  let [y0, y1] = [Math.min(...all.map((p) => p[1])), Math.max(...all.map((p) => p[1]))];
  if (x0 === x1) x1 = x0 + 1;
  if (y0 === y1) [y0, y1] = [y0 - 0.5, y1 + 0.5];
  const px = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const py = (y) => H - B - ((y - y0) / (y1 - y0)) * (H - T - B);
  ctx.strokeStyle = "#e4e7ec";
  ctx.lineWidth = 1;
  ctx.textAlign = "right";
  for (const t of niceTicks(y0, y1)) {
    ctx.beginPath(); ctx.moveTo(L, py(t)); ctx.lineTo(W - R, py(t)); ctx.stroke();
    ctx.fillText(+t.toPrecision(4), L - 4, py(t) + 4);
  }
  ctx.textAlign = "center";
  for (const t of niceTicks(x0, x1)) ctx.fillText(+t.toPrecision(6), px(t), H - B + 16);
  ctx.strokeStyle = "#98a2b3";
  ctx.strokeRect(L, T, W - L - R, H - T - B);
  for (const s of series) {
    ctx.strokeStyle = ctx.fillStyle = s.color;
    ctx.lineWidth = s.width || 1;
    ctx.globalAlpha = s.alpha || 1;
    ctx.beginPath();
    s.points.forEach(([x, y], i) => (i ? ctx.lineTo(px(x), py(y)) : ctx.moveTo(px(x), py(y))));
    ctx.stroke();
    if (s.dots) for (const [x, y] of s.points) { ctx.beginPath(); ctx.arc(px(x), py(y), 3.5, 0, 2 * Math.PI); ctx.fill(); }
    ctx.globalAlpha = 1;
  }
}

// ---- Runs tab
const runs = { list: [], ticked: new Set(), metrics: {}, selected: null };

async function loadRuns() {
  try {
    runs.list = (await api("/api/runs")).runs;
  } catch (e) {
    $("#run-details").textContent = e.message;
    return;
  }
  if (!runs.ticked.size && runs.list.length) runs.ticked.add(runs.list[runs.list.length - 1].name); // newest
  if (!runs.selected && runs.list.length) runs.selected = runs.list[runs.list.length - 1].name;
  const list = $("#run-list");
  list.replaceChildren(
    ...runs.list.map((r, i) => {
      const box = el("input", { type: "checkbox", "data-run": r.name });
      box.checked = runs.ticked.has(r.name);
      box.addEventListener("change", () => {
        box.checked ? runs.ticked.add(r.name) : runs.ticked.delete(r.name);
        pollMetrics();
      });
      const name = el("a", { class: r.name === runs.selected ? "selected" : "" }, r.name);
      name.addEventListener("click", () => { runs.selected = r.name; loadRuns(); });
      return el("li", {}, box, el("span", { class: "swatch", style: `background:${COLORS[i % COLORS.length]}` }), name);
    })
  );
  if (!runs.list.length) list.append(el("li", {}, "no runs yet: train one with `mini-transformer-lab train`"));
  showRunDetails();
  pollMetrics();
}

function showRunDetails() {
  const r = runs.list.find((x) => x.name === runs.selected);
  const box = $("#run-details");
  if (!r) return box.replaceChildren();
  const s = r.summary || {};
  // With --eval_tokens below the split, the in-training figures are of its first tokens: say so.
  const prefix = s.val_prefix_tokens ? ` (first ${s.val_prefix_tokens.toLocaleString()} tokens)` : "";
  const val = prefix
    ? [["val loss (final model, whole split)", fmt(s.final_val_loss)],
       [`best val loss${prefix}`, fmt(s.best_val_loss_prefix)], [`last val loss${prefix}`, fmt(s.final_val_loss_prefix)]]
    : [["best val loss", fmt(s.best_val_loss)], ["final val loss", fmt(s.final_val_loss)]];
  const summary = table([
    ["epochs", s.epochs], ["steps", s.steps], ["parameters", s.parameters?.toLocaleString()], ...val,
    ["final train loss", fmt(s.final_train_loss)], ["wall time (s)", s.wall_time_sec],
    ["tokens/s", s.tokens_per_sec?.toLocaleString()], ["device", s.device],
  ]);
  const cfg = r.config || {};
  const settings = (part) => table(Object.entries(cfg[part] || {}).map(([k, v]) => [k, JSON.stringify(v)]));
  box.replaceChildren(
    el("h2", {}, r.name),
    el("div", { class: "details" },
      el("div", {}, el("h2", {}, "summary"), r.summary ? summary : el("p", { class: "hint" }, "no summary yet (first epoch running)")),
      el("div", {}, el("h2", {}, "model"), settings("model")),
      el("div", {}, el("h2", {}, "training"), settings("train")))
  );
}

async function pollMetrics() {
  await Promise.all([...runs.ticked].map(async (name) => {
    try {
      runs.metrics[name] = (await api(`/api/runs/${encodeURIComponent(name)}/metrics`)).rows;
    } catch (e) {
      runs.metrics[name] = [];
    }
  }));
  drawRuns();
}

function drawRuns() {
  for (const [canvas, xKey] of [[$("#chart-step"), "step"], [$("#chart-time"), "wall_time"]]) {
    const series = [];
    runs.list.forEach((r, i) => {
      if (!runs.ticked.has(r.name)) return;
      const rows = runs.metrics[r.name] || [];
      const color = COLORS[i % COLORS.length];
      const pts = (key) => rows.filter((row) => row[key] != null && row[xKey] != null).map((row) => [row[xKey], row[key]]);
      series.push({ color, points: pts("train_loss"), width: 1, alpha: 0.45 });
      series.push({ color, points: pts("val_loss"), width: 2.5, dots: true });
    });
    drawChart(canvas, series);
  }
}

setInterval(pollMetrics, POLL_MS);
setInterval(loadRuns, 5 * POLL_MS); // new runs appear without reloading the page

// ---- checkpoints, shared by the Generate, Attention and Model tabs
async function loadCheckpoints() {
  let names = [];
  try {
    names = (await api("/api/checkpoints")).checkpoints.map((c) => c.name);
  } catch (e) {
    $("#gen-error").textContent = e.message;
  }
  const preferred = names.find((n) => n.endsWith("best_model.pt")) || names[0];
  document.querySelectorAll(".ckpt-select").forEach((select) => {
    select.replaceChildren(...names.map((n) => el("option", { value: n }, n)));
    if (preferred) select.value = preferred;
  });
}

async function loadLimits() {
  const limits = await api("/api/limits");
  $("#gen-prompt").maxLength = limits.max_prompt_chars;
  $("#gen-max").max = limits.max_new_tokens;
  const defaults = await api("/api/sampling");
  for (const [name, value] of Object.entries(defaults)) {
    const input = document.querySelector(`#gen-form [name="${name}"]`);
    // The library's defaults (minilab/generation/sampling.py), unless something was typed already.
    if (input && input.value === "") input.value = value;
  }
  $("#att-prompt").maxLength = limits.max_prompt_chars;
  $("#limits").textContent =
    `Limits: a prompt of at most ${limits.max_prompt_chars} characters, at most ${limits.max_new_tokens} new tokens. ` +
    "Temperature 0 always picks the most likely token; top-k 0 and top-p 1 are off.";
}

// ---- Generate tab: an EventSource receives the text piece by piece
let stream = null;

function stopStream() {
  if (stream) stream.close();
  stream = null;
  $("#gen-go").disabled = false;
  $("#gen-stop").disabled = true;
}

$("#gen-stop").addEventListener("click", () => { stopStream(); $("#gen-status").textContent += " (stopped)"; });

$("#gen-form").addEventListener("submit", (event) => {
  event.preventDefault();
  stopStream();
  const form = new FormData(event.target);
  const params = new URLSearchParams();
  for (const [k, v] of form) if (v !== "") params.set(k, v);
  const url = `/api/generate?${params}`;
  $("#gen-error").textContent = "";
  $("#gen-status").textContent = "generating...";
  $(".prompt").textContent = form.get("prompt");
  const out = $(".continuation");
  out.textContent = "";
  let received = false;
  $("#gen-go").disabled = true;
  $("#gen-stop").disabled = false;
  stream = new EventSource(url);
  stream.onmessage = (e) => { received = true; out.textContent += JSON.parse(e.data).text; };
  stream.addEventListener("done", (e) => {
    const d = JSON.parse(e.data);
    $("#gen-status").textContent = `${d.tokens} tokens in ${d.seconds} s: ${d.tokens_per_sec} tokens/s`;
    stopStream();
  });
  stream.addEventListener("error", async (e) => {
    stopStream();
    if (e.data) { $("#gen-error").textContent = JSON.parse(e.data).error; return; } // sent in the stream
    $("#gen-status").textContent = "";
    if (received) { $("#gen-error").textContent = "the connection to the server was lost"; return; }
    // Refused before streaming (a 4xx): EventSource hides the answer, so ask again to read the message.
    try { await api(url); } catch (err) { $("#gen-error").textContent = err.message; }
  });
});

// ---- Attention tab: a layer x head grid of heatmaps; a selected query row is outlined in every map
const att = { data: null, row: null };

$("#att-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  $("#att-error").textContent = "";
  try {
    att.data = await api(`/api/attention?${new URLSearchParams(form)}`);
  } catch (e) {
    $("#att-error").textContent = e.message;
    return;
  }
  att.row = att.data.tokens.length - 1;
  buildAttention();
});

function buildAttention() {
  const { tokens, maps } = att.data;
  const T = tokens.length;
  const cellPx = Math.max(4, Math.min(16, Math.floor(200 / T))); // a map of about 200 px
  $("#att-tokens").replaceChildren(
    ...tokens.map((t, i) => el("span", { "data-i": i, onmouseenter: () => selectRow(i), onclick: () => selectRow(i) }, t))
  );
  const grid = $("#att-grid");
  grid.style.gridTemplateColumns = `repeat(${maps[0].length}, max-content)`;
  grid.replaceChildren();
  maps.forEach((layer, l) =>
    layer.forEach((weights, h) => {
      const canvas = el("canvas", { width: T * cellPx, height: T * cellPx, "data-layer": l, "data-head": h });
      canvas.addEventListener("mousemove", (e) => {
        const i = Math.floor((e.offsetY / canvas.clientHeight) * T);
        if (i >= 0 && i < T && i !== att.row) selectRow(i);
      });
      grid.append(el("div", { class: "att-cell" }, el("div", {}, `layer ${l}, head ${h}`), canvas, el("div", { class: "top" })));
    })
  );
  drawAttention();
}

function selectRow(i) {
  att.row = i;
  drawAttention();
}

function drawAttention() {
  const { tokens, maps } = att.data;
  const T = tokens.length;
  document.querySelectorAll("#att-tokens span").forEach((s, i) => s.classList.toggle("selected", i === att.row));
  document.querySelectorAll("#att-grid .att-cell").forEach((cell) => {
    const canvas = cell.querySelector("canvas");
    const w = maps[canvas.dataset.layer][canvas.dataset.head]; // (T, T): row = query, column = key
    const ctx = canvas.getContext("2d");
    const c = canvas.width / T;
    for (let q = 0; q < T; q++)
      for (let k = 0; k < T; k++) {
        const shade = Math.round(255 * (1 - w[q][k]));
        ctx.fillStyle = k > q ? "#f2f4f7" : `rgb(${shade},${shade},255)`; // above the diagonal: the future, masked
        ctx.fillRect(k * c, q * c, c, c);
      }
    if (att.row != null) {
      ctx.strokeStyle = "#d9480f";
      ctx.lineWidth = 2;
      ctx.strokeRect(1, att.row * c + 1, canvas.width - 2, c - 2);
      const row = w[att.row];
      const best = row.indexOf(Math.max(...row));
      // the selected token's row as text: each earlier token shaded by the attention it gets
      const shaded = tokens.slice(0, att.row + 1).map((t, k) =>
        el("span", { style: `background:rgba(47,111,222,${row[k].toFixed(3)})`, title: row[k].toFixed(3) }, t));
      cell.querySelector(".top").replaceChildren(
        el("div", {}, `${tokens[att.row]} → ${tokens[best]} (${row[best].toFixed(2)})`),
        el("div", { class: "row-tokens" }, ...shaded));
    }
  });
}

// ---- Model tab
async function showModel() {
  const name = $("#model-form select").value;
  if (!name) return;
  $("#model-error").textContent = "";
  let info;
  try {
    info = await api(`/api/model?checkpoint=${encodeURIComponent(name)}`);
  } catch (e) {
    $("#model-error").textContent = e.message;
    return;
  }
  const total = info.parameters;
  const parts = el("table", {},
    el("tr", {}, el("th", {}, "component"), el("th", {}, "parameters"), el("th", {}, "share")),
    ...info.components.map((c) => el("tr", {},
      el("td", {}, c.name), el("td", {}, c.parameters.toLocaleString()),
      el("td", { style: "width:14rem" }, el("div", { class: "bar", style: `width:${(100 * c.parameters) / total}%` }))))
  );
  const h = info.history;
  $("#model-info").replaceChildren(
    el("h2", {}, `${name}: ${total.toLocaleString()} parameters`),
    el("p", {}, info.architecture),
    el("div", { class: "details" },
      el("div", {}, el("h2", {}, "configuration"), table(Object.entries(info.config).map(([k, v]) => [k, JSON.stringify(v)]))),
      el("div", {}, el("h2", {}, "parameters by component"), parts,
        el("h2", {}, "training"),
        h ? table([["epoch", h.epoch], ["step", h.step], [h.val_prefix_tokens ? `best val loss (first ${h.val_prefix_tokens.toLocaleString()} tokens)` : "best val loss", fmt(h.best_val_loss)], ["run", h.run]])
          : el("p", { class: "hint" }, "an export: weights, config and tokenizer only"))),
    el("h2", {}, "full report (as `mini-transformer-lab info` prints it)"),
    el("pre", {}, info.describe)
  );
}

$("#model-form select").addEventListener("change", showModel);

// ---- start
loadRuns();
loadLimits().catch((e) => ($("#limits").textContent = e.message));
loadCheckpoints();

// ---- Generate tab, chat mode: the page keeps the conversation and sends it whole with each message;
// the server applies the chat template, drops the turns that no longer fit the context, and streams the answer.
const chat = { messages: [], maxChars: Infinity };
api("/api/limits").then((limits) => (chat.maxChars = limits.max_chat_chars)).catch(() => {});

function recent(messages) {
  // The newest turns within the server's limit on a chat's characters (the model sees only what fits its context).
  const size = (ms) => ms.reduce((n, m) => n + m.content.length, 0);
  let start = 0;
  while (start < messages.length - 1 && size(messages.slice(start)) > chat.maxChars) start += 2; // a user + answer pair
  return messages.slice(start);
}

function chatMode() { return $("#gen-mode").value === "chat"; }

function showMode() {
  const on = chatMode();
  $("#gen-output").hidden = on;
  $("#chat-log").hidden = !on;
  $("#chat-reset").hidden = !on;
  $("#gen-prompt-label").textContent = on ? "your message" : "prompt";
  $("#gen-go").textContent = on ? "Send" : "Generate";
  if (on && $("#gen-prompt").value === "The ") $("#gen-prompt").value = "";
}

function chatBubble(role, text) {
  const node = el("div", { class: `turn ${role}` }, el("b", {}, role === "user" ? "you" : "model"), el("span", {}, text));
  $("#chat-log").append(node);
  return node.querySelector("span");
}

$("#gen-mode").addEventListener("change", showMode);
$("#chat-reset").addEventListener("click", () => {
  stopStream();
  chat.messages = [];
  $("#chat-log").replaceChildren();
  $("#gen-status").textContent = "";
});

// Runs before the Generate handler (capture phase): in chat mode it handles the submit itself.
$("#gen-form").addEventListener("submit", (event) => {
  if (!chatMode()) return;
  event.preventDefault();
  event.stopImmediatePropagation();
  stopStream();
  const form = new FormData(event.target);
  const text = form.get("prompt");
  if (!text) { $("#gen-error").textContent = "type a message first"; return; }
  const asked = [...chat.messages, { role: "user", content: text }];
  const params = new URLSearchParams();
  for (const [k, v] of form) if (v !== "" && k !== "prompt" && k !== "mode") params.set(k, v);
  params.set("messages", JSON.stringify(recent(asked)));
  const url = `/api/chat?${params}`;
  $("#gen-error").textContent = "";
  $("#gen-status").textContent = "answering...";
  let answer = "", received = false, out = null;
  $("#gen-go").disabled = true;
  $("#gen-stop").disabled = false;
  stream = new EventSource(url);
  stream.onmessage = (e) => {
    if (!out) { chatBubble("user", text); out = chatBubble("assistant", ""); $("#gen-prompt").value = ""; }
    received = true;
    answer += JSON.parse(e.data).text;
    out.textContent = answer;
  };
  stream.addEventListener("done", (e) => {
    const d = JSON.parse(e.data);
    if (!out) { chatBubble("user", text); chatBubble("assistant", ""); $("#gen-prompt").value = ""; }
    chat.messages = [...asked, { role: "assistant", content: answer }];
    $("#gen-status").textContent = d.dropped ? `(the oldest ${d.dropped} message(s) no longer fit the context)` : "";
    stopStream();
  });
  stream.addEventListener("error", async (e) => {
    stopStream();
    if (e.data) { $("#gen-error").textContent = JSON.parse(e.data).error; return; }
    $("#gen-status").textContent = "";
    if (received) { $("#gen-error").textContent = "the connection to the server was lost"; return; }
    try { await api(url); } catch (err) { $("#gen-error").textContent = err.message; }
  });
}, true);
