// The Inside tab: logit lens, head ablation, embedding map and neuron snippets, over /api/inside/*.
// Uses $, el and api from app.js (loaded first).
"use strict";

const insideForm = () => new FormData($("#ins-form"));

async function insideCall(tool, body, busy) {
  // One request; its one-line error (or a status while it runs) is shown above the output.
  $("#ins-error").textContent = "";
  $("#ins-status").textContent = busy;
  try {
    const options = body ? { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) } : undefined;
    const query = body ? "" : `?${new URLSearchParams(insideForm())}`;
    return await api(`/api/inside/${tool}${query}`, options);
  } catch (e) {
    $("#ins-error").textContent = e.message;
    return null;
  } finally {
    $("#ins-status").textContent = "";
  }
}

const heat = (p) => `background:rgba(47,111,222,${Math.max(0, Math.min(1, p)).toFixed(3)});color:${p > 0.55 ? "#fff" : "inherit"}`;

function heatTable(title, rowNames, colNames, values, cellText, shade) {
  return el("div", {}, el("h2", {}, title),
    el("table", { class: "heat" },
      el("tr", {}, el("th", {}, ""), ...colNames.map((c) => el("th", {}, c))),
      ...rowNames.map((r, i) => el("tr", {}, el("th", {}, r),
        ...colNames.map((_, j) => el("td", { style: shade(values[i][j]), title: String(values[i][j]) }, cellText(i, j)))))));
}

$("#ins-lens-go").addEventListener("click", async () => {
  const r = await insideCall("lens", null, "reading each layer...");
  if (!r) return;
  const cols = r.tokens.slice(0, -1).map((t, j) => `${t}→${r.tokens[j + 1]}`);
  $("#ins-out").replaceChildren(
    el("p", { class: "hint" }, "Each cell: the layer's top guess for the next token; the colour is the probability it gives the real next token."),
    heatTable("logit lens", r.layers, cols, r.target_prob, (i, j) => r.top[i][j], heat));
});

$("#ins-ablate-go").addEventListener("click", async () => {
  const f = insideForm();
  const r = await insideCall("ablate", { checkpoint: f.get("checkpoint"), text: f.get("text") }, "removing each head in turn...");
  if (!r) return;
  const top = Math.max(1e-6, ...r.zero.flat(), ...r.mean.flat());
  const shade = (v) => `background:rgba(217,72,15,${Math.max(0, v / top).toFixed(3)})`;
  const layers = r.zero.map((_, i) => `layer ${i}`), heads = r.zero[0].map((_, h) => `head ${h}`);
  $("#ins-out").replaceChildren(
    el("p", {}, `loss with nothing removed: ${r.base_loss.toFixed(4)} nats/token over ${r.tokens.toLocaleString()} tokens. Each cell: the rise in loss when that head is removed.`),
    el("div", { class: "details" },
      heatTable("head zeroed", layers, heads, r.zero, (i, j) => r.zero[i][j].toFixed(3), shade),
      heatTable("head mean-ablated", layers, heads, r.mean, (i, j) => r.mean[i][j].toFixed(3), shade)));
});

$("#ins-emb-go").addEventListener("click", async () => {
  const r = await insideCall("embeddings", null, "projecting the embeddings...");
  if (!r) return;
  const canvas = el("canvas", { id: "ins-emb", width: 640, height: 480 });
  const ctx = canvas.getContext("2d");
  const xs = r.coords.map((c) => c[0]), ys = r.coords.map((c) => c[1]);
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const px = (x) => 20 + ((x - x0) / (x1 - x0 || 1)) * (canvas.width - 40);
  const py = (y) => canvas.height - 20 - ((y - y0) / (y1 - y0 || 1)) * (canvas.height - 40);
  ctx.font = "12px ui-monospace, monospace";
  ctx.textAlign = "center";
  ctx.fillStyle = "#1d2330";
  r.labels.forEach((label, i) => ctx.fillText(label, px(xs[i]), py(ys[i])));
  const near = Object.entries(r.nearest).map(([t, list]) => [t, list.map(([n, s]) => `${n} ${s.toFixed(2)}`).join("  ")]);
  $("#ins-out").replaceChildren(
    el("p", { class: "hint" }, `Every token placed by the first two principal components of its embedding ` +
      `(${(100 * r.explained[0]).toFixed(0)}% and ${(100 * r.explained[1]).toFixed(0)}% of the variance).`),
    canvas, el("h2", {}, "nearest neighbours (cosine similarity)"), table(near));
});

$("#ins-neurons-go").addEventListener("click", async () => {
  const f = insideForm();
  const body = { checkpoint: f.get("checkpoint"), text: f.get("text"), layer: f.get("layer") };
  const r = await insideCall("neurons", body, "running the text through the model...");
  if (!r) return;
  const blocks = r.neurons.map((n) => el("div", { class: "neuron" },
    el("h2", {}, `neuron ${n.index} (peak ${n.max.toFixed(2)})`),
    ...n.snippets.map((s) => el("div", { class: "snippet" },
      ...s.tokens.map((t, i) => el("span", { class: i === s.focus ? "focus" : "", title: s.acts[i].toFixed(2),
        style: `background:rgba(255,140,0,${Math.max(0, Math.min(1, s.acts[i] / n.max)).toFixed(3)})` }, t))))));
  $("#ins-out").replaceChildren(
    el("p", { class: "hint" }, `Layer ${r.layer}: the neurons with the largest activations on the text; orange shows how strongly each fires on each token, the boxed token is the peak.`),
    ...blocks);
});

api("/api/inside/limits").then((l) => {
  $("#ins-prompt").maxLength = l.max_prompt_chars;
  $("#ins-text").maxLength = l.max_text_chars;
  $("#ins-limits").textContent = `Limits: text of at most ${l.max_text_chars.toLocaleString()} characters; ablation scores at most ` +
    `${l.max_ablate_tokens.toLocaleString()} tokens of it (two passes per head), neurons read at most ${l.max_neuron_tokens.toLocaleString()}.`;
}).catch((e) => ($("#ins-limits").textContent = e.message));
