// framebroker viewer: the recordings list and the playback page (time slider, play/pause).
// Times are ns from the stream's first frame ("offset"): exact in JavaScript numbers.
"use strict";

function localTime(ns) {
  return new Date(ns / 1e6).toLocaleString();
}

function seconds(ns) {
  return `${(ns / 1e9).toFixed(3)} s`;
}

function addCell(row, text, cls) {
  const td = row.insertCell();
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

async function fetchRecordings() {
  const response = await fetch("/api/recordings", { cache: "no-store" });
  return response.json();
}

// The list page: one row per recorded stream, linked to its playback page.
async function listRecordings(table, status) {
  let body;
  try {
    body = await fetchRecordings();
  } catch (err) {
    status.textContent = `viewer unreachable: ${err}`;
    return;
  }
  const streams = body.streams || [];
  status.textContent = body.error || `${streams.length} recorded stream(s) in ${body.root}`;
  const tbody = table.tBodies[0];
  tbody.replaceChildren();
  for (const s of streams) {
    const row = tbody.insertRow();
    row.dataset.stream = s.stream;
    const link = document.createElement("a");
    link.href = `/recording?stream=${encodeURIComponent(s.stream)}`;
    link.textContent = s.stream;
    row.insertCell().appendChild(link);
    addCell(row, localTime(s.start_ns));
    addCell(row, localTime(s.end_ns));
    addCell(row, seconds(s.duration_ns), "num");
    addCell(row, String(s.frames), "num");
    addCell(row, String(s.segments), "num");
    addCell(row, `${(s.bytes / 1e6).toFixed(1)} MB`, "num");
  }
}

// The playback page. A frame is fetched only once the last is drawn; while playing, the
// next is asked for when it is due on the page's own clock (anchored at play or seek), so
// the original timing holds and a slow page skips frames instead of falling behind.
function openPlayer(stream, el) {
  const ctx = el.frame.getContext("2d");
  const state = {
    duration: 0, position: 0, next: null, playing: false, speed: 1,
    anchorWall: 0, anchorOffset: 0, busy: false, wanted: null, timer: null,
  };
  el.frame.dataset.frames = "0";
  el.frame.dataset.state = "paused";

  function clock() {
    if (!state.playing) return state.position;
    return state.anchorOffset + (performance.now() - state.anchorWall) * 1e6 * state.speed;
  }

  function anchor(offset) {
    state.anchorOffset = offset;
    state.anchorWall = performance.now();
  }

  function setPlaying(playing) {
    state.playing = playing;
    el.play.textContent = playing ? "pause" : "play";
    el.frame.dataset.state = playing ? "playing" : "paused";
    if (!playing && state.timer !== null) {
      clearTimeout(state.timer);
      state.timer = null;
    }
  }

  async function show(offset) {
    if (state.busy) {
      state.wanted = offset; // drawn once the frame in flight is
      return;
    }
    state.busy = true;
    try {
      const url = `/api/recording/frame.jpg?stream=${encodeURIComponent(stream)}` +
        `&offset_ns=${Math.max(0, Math.round(offset))}`;
      const response = await fetch(url, { cache: "no-store" });
      if (!response.ok) {
        el.info.textContent = `no frame: ${await response.text()}`;
        setPlaying(false);
        return;
      }
      const h = response.headers;
      const bitmap = await createImageBitmap(await response.blob());
      if (el.frame.width !== bitmap.width) el.frame.width = bitmap.width;
      if (el.frame.height !== bitmap.height) el.frame.height = bitmap.height;
      ctx.drawImage(bitmap, 0, 0);
      bitmap.close();
      state.position = Number(h.get("X-Frame-Offset-Ns"));
      const next = h.get("X-Frame-Next-Offset-Ns");
      state.next = next ? Number(next) : null;
      const d = el.frame.dataset;
      d.frames = String(Number(d.frames) + 1);
      d.seq = h.get("X-Frame-Seq");
      d.index = h.get("X-Frame-Index");
      d.offsetNs = String(state.position);
      el.slider.value = String(Math.round(state.position / 1e6));
      el.clock.textContent = `${seconds(state.position)} / ${seconds(state.duration)}`;
      const tCapture = Number(h.get("X-Frame-T-Capture"));
      const [height, width] = (h.get("X-Frame-Shape") || "?x?").split("x");
      el.info.textContent = `seq ${d.seq} · frame ${Number(d.index) + 1} · ` +
        `${width}x${height} ${h.get("X-Frame-Encoding")} · ` +
        `captured ${localTime(tCapture)}`;
    } catch (err) {
      el.info.textContent = `no frame: ${err}`;
    } finally {
      state.busy = false;
    }
    if (state.wanted !== null) {
      const wanted = state.wanted;
      state.wanted = null;
      show(wanted);
    } else if (state.playing) {
      schedule();
    }
  }

  function schedule() {
    if (state.next === null) {
      setPlaying(false); // the end of the recording
      return;
    }
    const due = state.next;
    const delayMs = (due - clock()) / 1e6 / state.speed;
    if (state.timer !== null) clearTimeout(state.timer);
    state.timer = setTimeout(() => {
      state.timer = null;
      if (state.playing) show(Math.max(clock(), due));
    }, Math.max(0, delayMs));
  }

  function seek(offset) {
    if (state.timer !== null) {
      clearTimeout(state.timer);
      state.timer = null;
    }
    anchor(offset);
    state.position = offset;
    show(offset);
  }

  el.slider.addEventListener("input", () => seek(Number(el.slider.value) * 1e6));
  el.play.addEventListener("click", () => {
    if (state.playing) {
      setPlaying(false);
      return;
    }
    const start = state.next === null ? 0 : state.position; // at the end: from the start
    setPlaying(true);
    seek(start);
  });
  el.speed.addEventListener("change", () => {
    const now = clock();
    state.speed = Number(el.speed.value);
    anchor(now);
  });

  fetchRecordings().then((body) => {
    const s = (body.streams || []).find((x) => x.stream === stream);
    if (!s) {
      el.info.textContent = body.error || `no recorded stream ${stream}`;
      return;
    }
    state.duration = s.duration_ns;
    el.slider.max = String(Math.ceil(s.duration_ns / 1e6));
    el.range.textContent = `${localTime(s.start_ns)} – ${localTime(s.end_ns)} · ` +
      `${s.frames} frames`;
    show(0);
  });
}
