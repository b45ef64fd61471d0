// apexmer web page: upload a clip, show apex frame, aligned crop (and, for flow models, the
// onset->apex flow and strain), intensity curve, bars.
// No external assets; everything is drawn here (canvas for the curve).
"use strict";

const $ = (id) => document.getElementById(id);
const form = $("form"), fileInput = $("file"), drop = $("drop"), submit = $("submit");
const status = $("status");

function setStatus(text, isError = false) {
  status.textContent = text;
  status.classList.toggle("error", isError);
}

function chooseFile(file) {
  $("filename").textContent = file ? `${file.name} · ${(file.size / 1048576).toFixed(2)} MB` : "";
  submit.disabled = !file;
}

fileInput.addEventListener("change", () => chooseFile(fileInput.files[0]));
["dragenter", "dragover"].forEach((ev) => drop.addEventListener(ev, (e) => {
  e.preventDefault(); drop.classList.add("over");
}));
["dragleave", "drop"].forEach((ev) => drop.addEventListener(ev, (e) => {
  e.preventDefault(); drop.classList.remove("over");
}));
drop.addEventListener("drop", (e) => {
  if (e.dataTransfer.files.length) { fileInput.files = e.dataTransfer.files; chooseFile(fileInput.files[0]); }
});

async function loadModel() {
  try {
    const m = await (await fetch("/api/model")).json();
    const members = m.ensemble > 1 ? ` × ${m.ensemble} (ensemble)` : "";
    const tta = m.tta && m.tta !== "none" ? " · test-time flip" : "";
    $("model").textContent = `${m.architecture}${members} · ${m.classes.length} classes · ` +
      `${m.input_size}px ${m.network_input}${tta} · apex spotter ${m.spotter}` +
      (m.preprocess && m.preprocess.flow && m.input.kind === "flow"
        ? ` · flow style ${m.preprocess.flow.style || "apexmer"}` : "") +
      ` · apexmer ${m.package_version}`;
  } catch (err) {
    $("model").textContent = "model info unavailable";
  }
}

form.addEventListener("submit", async (e) => {
  e.preventDefault();
  const file = fileInput.files[0];
  if (!file) return;
  submit.disabled = true;
  setStatus("Analysing: landmarks, apex spotting, alignment, classification…");
  const body = new FormData();
  body.append("file", file);
  try {
    const resp = await fetch("/api/predict", { method: "POST", body });
    const data = await resp.json().catch(() => ({ detail: `HTTP ${resp.status}` }));
    if (!resp.ok) throw new Error(data.detail || `HTTP ${resp.status}`);
    render(data);
    const ms = Math.round((data.timings.total || 0) * 1000);
    setStatus(`Done: ${data.input} (${data.numbers.length} frames, ${ms} ms on the server).`);
  } catch (err) {
    $("result").hidden = true;
    setStatus(`Error: ${err.message}`, true);
  } finally {
    submit.disabled = false;
  }
});

function render(d) {
  $("result").hidden = false;
  $("label").textContent = d.label;
  $("confidence").textContent = `confidence ${(d.confidence * 100).toFixed(1)}%`;
  const bars = $("bars");
  bars.replaceChildren();
  for (const { class: name, p } of d.probabilities) {
    const row = document.createElement("div");
    row.className = "bar-row" + (name === d.label ? " top" : "");
    row.innerHTML = `<span class="name"></span><span class="track"><span class="fill"></span></span><span class="pct"></span>`;
    row.querySelector(".name").textContent = name;
    row.querySelector(".fill").style.width = `${(p * 100).toFixed(1)}%`;
    row.querySelector(".pct").textContent = `${(p * 100).toFixed(1)}%`;
    bars.appendChild(row);
  }
  const facts = [["onset", d.onset], ["apex", `${d.apex} (index ${d.apex_index})`],
    ["offset", d.offset], ["frames", d.numbers.length], ["network saw", d.network_input],
    ["apex spotter", d.spotter], ...(d.flow_style ? [["flow style", d.flow_style]] : []),
    ["face box", `${d.face_box.x}, ${d.face_box.y}, ${d.face_box.width}×${d.face_box.height}`]];
  $("facts").replaceChildren(...facts.flatMap(([k, v]) => {
    const dt = document.createElement("dt"); dt.textContent = k;
    const dd = document.createElement("dd"); dd.textContent = v;
    return [dt, dd];
  }));
  $("apex-img").src = d.images.apex_frame;
  $("apex-caption").textContent = `spotted apex: frame ${d.apex} of ${d.onset}–${d.offset}`;
  $("crop-img").src = d.images.crop;
  $("crop-caption").textContent = `aligned ${d.frame} crop`;
  // Flow models: the motion the network read, beside the crop.
  const flow = d.images.flow_png;
  $("images").classList.toggle("with-flow", Boolean(flow));
  $("flow-fig").hidden = !flow;
  $("strain-fig").hidden = !flow;
  if (flow) {
    $("flow-img").src = flow;
    $("strain-img").src = d.images.strain_png;
    $("wheel-img").src = d.images.flow_wheel_png;
  }
  drawCurve($("curve"), d);
}

function drawCurve(canvas, d) {
  const ctx = canvas.getContext("2d");
  const W = canvas.width, H = canvas.height, pad = { l: 52, r: 16, t: 16, b: 42 };
  ctx.clearRect(0, 0, W, H);
  const xs = d.numbers, ys = d.curve;
  const vals = ys.filter((v) => v !== null);
  if (!vals.length) return;
  let lo = Math.min(...vals), hi = Math.max(...vals);
  if (hi - lo < 1e-9) { hi = lo + 1; }
  const span = hi - lo; lo -= span * 0.05; hi += span * 0.08;
  const x0 = xs[0], x1 = xs[xs.length - 1] === x0 ? x0 + 1 : xs[xs.length - 1];
  const px = (x) => pad.l + (x - x0) / (x1 - x0) * (W - pad.l - pad.r);
  const py = (y) => H - pad.b - (y - lo) / (hi - lo) * (H - pad.t - pad.b);
  // grid and axes
  ctx.font = "12px system-ui, sans-serif"; ctx.fillStyle = "#667085"; ctx.strokeStyle = "#e3e7ee";
  ctx.lineWidth = 1;
  for (let k = 0; k <= 4; k++) {
    const y = lo + (hi - lo) * k / 4, yy = Math.round(py(y)) + 0.5;
    ctx.beginPath(); ctx.moveTo(pad.l, yy); ctx.lineTo(W - pad.r, yy); ctx.stroke();
    ctx.textAlign = "right"; ctx.fillText(y.toFixed(2), pad.l - 6, yy + 4);
  }
  ctx.textAlign = "center";
  const step = Math.max(1, Math.ceil(xs.length / 12));
  for (let i = 0; i < xs.length; i += step) ctx.fillText(xs[i], px(xs[i]), H - pad.b + 18);
  ctx.textAlign = "right"; ctx.fillText("frame number", W - pad.r, H - 3);
  // markers
  const mark = (x, color, text) => {
    ctx.strokeStyle = color; ctx.lineWidth = 2; ctx.setLineDash([5, 4]);
    ctx.beginPath(); ctx.moveTo(px(x), pad.t); ctx.lineTo(px(x), H - pad.b); ctx.stroke();
    ctx.setLineDash([]); ctx.fillStyle = color; ctx.textAlign = "left";
    ctx.fillText(text, Math.min(px(x) + 4, W - pad.r - 70), pad.t + 12);
  };
  mark(d.onset, "#2b8a3e", "onset"); mark(d.offset, "#7048e8", "offset");
  // the curve (gaps where a frame was skipped)
  ctx.strokeStyle = "#2f6fed"; ctx.lineWidth = 2.2; ctx.beginPath();
  let pen = false;
  xs.forEach((x, i) => {
    if (ys[i] === null) { pen = false; return; }
    if (pen) ctx.lineTo(px(x), py(ys[i])); else { ctx.moveTo(px(x), py(ys[i])); pen = true; }
  });
  ctx.stroke();
  mark(d.apex, "#d9480f", `apex ${d.apex}`);
  const ay = ys[d.apex_index];
  if (ay !== null) {
    ctx.fillStyle = "#d9480f"; ctx.beginPath(); ctx.arc(px(d.apex), py(ay), 5, 0, 2 * Math.PI); ctx.fill();
  }
}

loadModel();
