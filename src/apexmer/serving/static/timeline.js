// apexmer long-video section: upload a recording, draw the spotted intervals on a
// timeline over the spotting curve; clicking one shows its crop, curve and class.
"use strict";

(() => {
  const byId = (id) => document.getElementById(id);
  const form = byId("long-form"), fileInput = byId("long-file"), submit = byId("long-submit");
  const status = byId("long-status");
  const COLORS = { micro: "#d9480f", macro: "#7048e8" };
  let data = null, active = null;

  const setStatus = (text, isError = false) => {
    status.textContent = text;
    status.classList.toggle("error", isError);
  };

  fileInput.addEventListener("change", () => { submit.disabled = !fileInput.files.length; });

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const file = fileInput.files[0];
    if (!file) return;
    submit.disabled = true;
    setStatus("Spotting: tracking landmarks, ROI motion, intervals, classification…");
    const body = new FormData();
    body.append("file", file);
    if (byId("long-fps").value) body.append("fps", byId("long-fps").value);
    try {
      const resp = await fetch("/api/spot", { method: "POST", body });
      const payload = await resp.json().catch(() => ({ detail: `HTTP ${resp.status}` }));
      if (!resp.ok) throw new Error(payload.detail || `HTTP ${resp.status}`);
      data = payload;
      render();
      const micro = data.intervals.filter((i) => i.type === "micro").length;
      setStatus(`${data.input}: ${data.frames} frames (${data.duration_s.toFixed(1)} s at ` +
        `${data.fps} fps), ${data.intervals.length} intervals, ${micro} micro.`);
    } catch (err) {
      byId("long-result").hidden = true;
      setStatus(`Error: ${err.message}`, true);
    } finally {
      submit.disabled = false;
    }
  });

  // x of frame number n on a canvas of width W between pad.l and W - pad.r
  const scaleX = (W, pad, first, last) => (n) =>
    pad.l + (n - first) / Math.max(last - first, 1) * (W - pad.l - pad.r);

  function plotCurve(ctx, xs, ys, px, py) {
    ctx.strokeStyle = "#2f6fed"; ctx.lineWidth = 1.6; ctx.beginPath();
    let pen = false;
    xs.forEach((x, i) => {
      if (ys[i] === null) { pen = false; return; }
      if (pen) ctx.lineTo(px(x), py(ys[i])); else { ctx.moveTo(px(x), py(ys[i])); pen = true; }
    });
    ctx.stroke();
  }

  function drawTimeline() {
    const canvas = byId("timeline"), ctx = canvas.getContext("2d");
    const W = canvas.width, H = canvas.height, pad = { l: 12, r: 12, t: 10, b: 40 };
    ctx.clearRect(0, 0, W, H);
    const xs = data.numbers, ys = data.curve;
    const px = scaleX(W, pad, xs[0], xs[xs.length - 1]);
    const top = Math.max(data.threshold * 1.5, ...ys.filter((v) => v !== null));
    const py = (y) => H - pad.b - Math.min(y / top, 1) * (H - pad.t - pad.b);
    for (const iv of data.intervals) {  // interval bands under the curve
      ctx.fillStyle = COLORS[iv.type] + (iv === active ? "88" : "40");
      ctx.fillRect(px(iv.onset), pad.t, Math.max(px(iv.offset) - px(iv.onset), 3), H - pad.t - pad.b);
    }
    plotCurve(ctx, xs, ys, px, py);
    ctx.strokeStyle = "#868e96"; ctx.setLineDash([4, 4]); ctx.beginPath();
    ctx.moveTo(pad.l, py(data.threshold)); ctx.lineTo(W - pad.r, py(data.threshold)); ctx.stroke();
    ctx.setLineDash([]);
    ctx.font = "12px system-ui, sans-serif"; ctx.fillStyle = "#667085"; ctx.textAlign = "center";
    const seconds = xs.length / data.fps, step = Math.max(1, Math.ceil(seconds / 10));
    for (let s = 0; s <= seconds; s += step) {
      ctx.fillText(`${s} s`, px(xs[0] + s * data.fps), H - pad.b + 16);
    }
    ctx.textAlign = "left"; ctx.fillText("threshold", pad.l + 4, py(data.threshold) - 4);
  }

  function drawIntervalCurve(iv) {
    const canvas = byId("interval-curve"), ctx = canvas.getContext("2d");
    const W = canvas.width, H = canvas.height, pad = { l: 40, r: 10, t: 12, b: 30 };
    ctx.clearRect(0, 0, W, H);
    const margin = Math.max(iv.offset - iv.onset, Math.round(data.fps / 2));
    const keep = data.numbers.map((n, i) => [n, data.curve[i]])
      .filter(([n]) => n >= iv.onset - margin && n <= iv.offset + margin);
    const xs = keep.map(([n]) => n), ys = keep.map(([, v]) => v);
    const vals = ys.filter((v) => v !== null);
    if (!vals.length) return;
    const hi = Math.max(...vals, data.threshold) * 1.1;
    const px = scaleX(W, pad, xs[0], xs[xs.length - 1]);
    const py = (y) => H - pad.b - y / hi * (H - pad.t - pad.b);
    ctx.fillStyle = COLORS[iv.type] + "33";
    ctx.fillRect(px(iv.onset), pad.t, px(iv.offset) - px(iv.onset), H - pad.t - pad.b);
    plotCurve(ctx, xs, ys, px, py);
    ctx.strokeStyle = COLORS[iv.type]; ctx.lineWidth = 2;
    ctx.beginPath(); ctx.moveTo(px(iv.apex), pad.t); ctx.lineTo(px(iv.apex), H - pad.b); ctx.stroke();
    ctx.font = "12px system-ui, sans-serif"; ctx.fillStyle = "#667085"; ctx.textAlign = "center";
    for (const n of [xs[0], iv.onset, iv.apex, iv.offset, xs[xs.length - 1]]) {
      ctx.fillText(n, px(n), H - pad.b + 16);
    }
    ctx.textAlign = "left"; ctx.fillText("score", 2, pad.t + 10);
  }

  function select(iv) {
    active = iv;
    drawTimeline();
    document.querySelectorAll("#interval-list button").forEach((b) =>
      b.classList.toggle("active", Number(b.dataset.index) === iv.index));
    byId("interval-detail").hidden = false;
    const crop = byId("interval-crop");
    if (iv.crop) { crop.src = iv.crop; crop.hidden = false; } else { crop.hidden = true; }
    byId("interval-caption").textContent =
      `${iv.type} · frames ${iv.onset}–${iv.apex}–${iv.offset}`;
    byId("interval-label").textContent = iv.label || (iv.type === "macro" ? "macro" : "—");
    byId("interval-facts").textContent = iv.label
      ? `confidence ${(iv.confidence * 100).toFixed(1)}% · ${iv.onset_s.toFixed(2)}–${iv.offset_s.toFixed(2)} s`
      : (iv.error || `${iv.onset_s.toFixed(2)}–${iv.offset_s.toFixed(2)} s · not classified`);
    const bars = byId("interval-bars");
    bars.replaceChildren(...iv.probabilities.map(({ class: name, p }) => {
      const row = document.createElement("div");
      row.className = "bar-row" + (name === iv.label ? " top" : "");
      row.innerHTML = `<span class="name"></span><span class="track"><span class="fill"></span></span><span class="pct"></span>`;
      row.querySelector(".name").textContent = name;
      row.querySelector(".fill").style.width = `${(p * 100).toFixed(1)}%`;
      row.querySelector(".pct").textContent = `${(p * 100).toFixed(1)}%`;
      return row;
    }));
    drawIntervalCurve(iv);
  }

  function render() {
    byId("long-result").hidden = false;
    active = null;
    byId("interval-detail").hidden = true;
    byId("interval-list").replaceChildren(...data.intervals.map((iv) => {
      const b = document.createElement("button");
      b.type = "button"; b.className = iv.type; b.dataset.index = iv.index;
      b.textContent = `${iv.type} ${iv.onset_s.toFixed(2)} s` + (iv.label ? ` · ${iv.label}` : "");
      b.addEventListener("click", () => select(iv));
      return b;
    }));
    drawTimeline();
  }

  byId("timeline").addEventListener("click", (e) => {
    if (!data) return;
    const canvas = byId("timeline"), rect = canvas.getBoundingClientRect();
    const x = (e.clientX - rect.left) * canvas.width / rect.width;
    const pad = { l: 12, r: 12 }, xs = data.numbers;
    const px = scaleX(canvas.width, pad, xs[0], xs[xs.length - 1]);
    const hit = data.intervals.find((iv) => x >= px(iv.onset) - 4 && x <= px(iv.offset) + 4);
    if (hit) select(hit);
  });
})();
