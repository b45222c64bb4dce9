// framebroker viewer: the stream table and live tiles (WebSocket, one frame per "next").
"use strict";

const COLORS = ["#00e676", "#ffea00", "#ff3d00", "#2979ff", "#d500f9", "#00e5ff"];

function wsUrl(stream) {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  return `${proto}//${location.host}/ws?stream=${encodeURIComponent(stream)}`;
}

function isBox(b) {
  return Array.isArray(b) && b.length === 4 && b.every((v) => typeof v === "number");
}

// Boxes and labels from the consumers' latest results, in the frame's own pixels.
function drawOverlays(ctx, results, width) {
  const lw = Math.max(1, Math.round(width / 320));
  ctx.lineWidth = lw;
  ctx.font = `${Math.max(10, Math.round(width / 40))}px sans-serif`;
  results.forEach((r, i) => {
    const color = COLORS[i % COLORS.length];
    ctx.strokeStyle = color;
    ctx.fillStyle = color;
    const res = r.result || {};
    let labelled = false; // one label per consumer: many motion boxes stay readable
    for (const key of ["faces", "boxes"]) {
      for (const b of Array.isArray(res[key]) ? res[key] : []) {
        if (!isBox(b)) continue;
        ctx.strokeRect(b[0], b[1], b[2], b[3]);
        if (!labelled) ctx.fillText(r.consumer, b[0], b[1] - 2 * lw);
        labelled = true;
      }
    }
    for (const code of Array.isArray(res.codes) ? res.codes : []) {
      const c = code.corners || [];
      if (c.length < 3) continue;
      ctx.beginPath();
      ctx.moveTo(c[0][0], c[0][1]);
      for (const p of c.slice(1)) ctx.lineTo(p[0], p[1]);
      ctx.closePath();
      ctx.stroke();
      ctx.fillText(`${r.consumer}: ${code.text}`, c[0][0], c[0][1] - 2 * lw);
    }
  });
}

function summary(result) {
  const text = JSON.stringify(result);
  return text.length > 80 ? text.slice(0, 77) + "..." : text;
}

// A canvas fed by the viewer's WebSocket: asks for a frame only after drawing the last.
function liveTile(canvas, stream, info) {
  const ctx = canvas.getContext("2d");
  let meta = null;
  let ws = null;
  canvas.dataset.frames = "0";
  function open() {
    ws = new WebSocket(wsUrl(stream));
    ws.binaryType = "blob";
    ws.onopen = () => ws.send("next");
    ws.onmessage = async (event) => {
      if (typeof event.data === "string") {
        meta = JSON.parse(event.data);
        return;
      }
      try {
        const bitmap = await createImageBitmap(event.data);
        if (canvas.width !== bitmap.width) canvas.width = bitmap.width;
        if (canvas.height !== bitmap.height) canvas.height = bitmap.height;
        ctx.drawImage(bitmap, 0, 0);
        bitmap.close();
        if (meta) drawOverlays(ctx, meta.results || [], canvas.width);
        canvas.dataset.frames = String(Number(canvas.dataset.frames) + 1);
        if (meta) {
          canvas.dataset.seq = String(meta.seq);
          if (info) info.textContent = `seq ${meta.seq} · age ${meta.age_ms} ms`;
        }
      } finally {
        if (ws.readyState === WebSocket.OPEN) ws.send("next");
      }
    };
    ws.onclose = () => setTimeout(open, 1000);
  }
  open();
}

function cell(row, text, cls) {
  const td = row.insertCell();
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

// The index: a table of every stream (refreshed each second) and a live tile per stream.
async function refreshIndex(table, grid, status) {
  let body;
  try {
    const response = await fetch("/api/streams", { cache: "no-store" });
    body = await response.json();
  } catch (err) {
    status.textContent = `viewer unreachable: ${err}`;
    return;
  }
  status.textContent = body.broker_error ? `broker: ${body.broker_error}` : "";
  const recordings = document.getElementById("recordings-link");
  if (recordings) recordings.hidden = !body.recordings;
  const tbody = table.tBodies[0];
  tbody.replaceChildren();
  for (const s of body.streams) {
    const row = tbody.insertRow();
    row.dataset.stream = s.stream;
    const name = row.insertCell();
    const link = document.createElement("a");
    link.href = `/view?stream=${encodeURIComponent(s.stream)}`;
    link.textContent = s.stream;
    name.appendChild(link);
    const shape = s.shape || [];
    cell(row, shape.length >= 2 ? `${shape[1]}x${shape[0]}` : "?");
    cell(row, s.encoding || "?");
    cell(row, typeof s.fps === "number" && s.fps >= 0 ? s.fps.toFixed(1) : "-", "num");
    cell(row, typeof s.frame_age_s === "number" ? `${s.frame_age_s.toFixed(2)} s` : "-", "num");
    cell(row, s.state || "?", `state-${s.state}`);
    const results = (s.results || []).map((r) => `${r.consumer}: ${summary(r.result)}`);
    cell(row, results.join("\n") || "-", "results");
    if (!grid.querySelector(`[data-stream="${CSS.escape(s.stream)}"]`)) addTile(grid, s.stream);
  }
}

function addTile(grid, stream) {
  const figure = document.createElement("figure");
  figure.dataset.stream = stream;
  const canvas = document.createElement("canvas");
  const caption = document.createElement("figcaption");
  const info = document.createElement("span");
  caption.textContent = `${stream} `;
  caption.appendChild(info);
  figure.append(canvas, caption);
  grid.appendChild(figure);
  liveTile(canvas, stream, info);
}
