// Spine Scan in the browser: the exported ONNX models run here with onnxruntime-web (wasm, one
// thread, so no cross-origin isolation is needed). Models are listed by ../manifest.json (written
// by `spinescan export`), checked against its sha256, and fed by a port of the Python
// preprocessing. Nothing is requested from anywhere but this page's own origin.
import * as ort from "./ort/ort.wasm.min.mjs";
import { checkFile, decodeFile } from "./decode.js";
import {
  LEVELS,
  N_LANDMARKS,
  apAngles,
  assessLandmarks,
  definitionsOf,
  extraAngles,
  labelFromAngles,
  lateralAngles,
  readLandmarks,
} from "./landmarks.js";
import { entryDocument, parseDocument } from "./modeldoc.js";
import { normaliseCam, preprocess, toGrey } from "./preprocess.js";

ort.env.wasm.wasmPaths = new URL("./ort/", import.meta.url).href;
ort.env.wasm.numThreads = 1;
ort.env.wasm.proxy = false;
ort.env.logLevel = "error";

const DISCLAIMER = "heatmap: a quality check, not a localisation claim";
const LANDMARK_DISCLAIMER = "landmarks and angles: a quality check, not a diagnosis";
const state = { models: [], results: [], ready: null, loadedAt: null, errors: [] };
// Exposed for the browser test and for anyone scripting the page.
window.spineScan = state;

const $ = (sel) => document.querySelector(sel);

function setStatus(text, isError = false) {
  const el = $("#status");
  el.textContent = text;
  el.classList.toggle("error-message", isError);
}

async function sha256Hex(buffer) {
  const digest = await crypto.subtle.digest("SHA-256", buffer);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

async function loadModels() {
  const response = await fetch("../manifest.json", { cache: "no-store" });
  if (!response.ok) throw new Error(`no model manifest next to this page (../manifest.json: HTTP ${response.status})`);
  const manifest = await response.json();
  const entries = Object.values(manifest.models || {});
  if (!entries.length) throw new Error("the manifest lists no models");
  const models = [];
  for (const entry of entries) {
    // The model's document (spinescan/edge/modeldoc.py), as the Python predictor reads it; an
    // export older than the document is read from the manifest's loose fields.
    let doc;
    try {
      doc = entryDocument(entry);
    } catch (err) {
      state.errors.push(err.message);
      continue;
    }
    const task = doc.task;
    if (task !== "classification" && task !== "landmarks") {
      // A task this page does not know: say so rather than misread its outputs.
      state.errors.push(`${entry.model}: a ${task} model, not shown by this page (use spinescan-predict)`);
      continue;
    }
    if (task === "landmarks" && (doc.view !== "ap" && doc.view !== "lateral")) {
      state.errors.push(`${entry.model}: a landmark model needs the view ap or lateral, not ${doc.view}`);
      continue;
    }
    const url = new URL(`../${entry.file}`, document.baseURI);
    const fetched = await fetch(url, { cache: "no-store" });
    if (!fetched.ok) {
      state.errors.push(`${entry.file}: listed in the manifest but not found (HTTP ${fetched.status})`);
      continue;
    }
    const bytes = await fetched.arrayBuffer();
    if (entry.sha256 && (await sha256Hex(bytes)) !== entry.sha256) {
      state.errors.push(`${entry.file}: sha256 does not match the manifest; refused (export it again)`);
      continue;
    }
    let session;
    try {
      session = await ort.InferenceSession.create(bytes, { executionProviders: ["wasm"] });
    } catch (err) {
      state.errors.push(`${entry.file}: this browser's runtime cannot load it (${err.message || err})`);
      continue;
    }
    // The output to read, as spinescan-predict picks it: "points" (a landmark model) or
    // "probabilities" (a classifier) by name, else the first output (today's landmark exports name
    // their (1, K, 4) output "probabilities").
    const wanted = task === "landmarks" ? "points" : "probabilities";
    const outputName = session.outputNames.includes(wanted) ? wanted : session.outputNames[0];
    models.push({
      name: doc.name,
      task,
      // the view guard (spinescan/edge/guard.py is_guard): a classifier of view "any" over views + other
      guard: task === "classification" && doc.view === GUARD_VIEW && ["ap", "lateral", OTHER].every((c) => doc.classes.includes(c)),
      view: doc.view,
      classes: doc.classes,
      doc,
      inputSize: doc.input_size,
      prep: doc.preprocessing,
      cam: task === "classification" && session.outputNames.includes("cam"),
      camInfo: entry.cam || null,
      // Exported past the weak-model gate (--allow-weak): the gate's verdict, shown with every result.
      weak: entry.weak || null,
      inputName: session.inputNames[0],
      outputName,
      session,
    });
  }
  return models;
}

function views() {
  return [...new Set(state.models.filter((m) => !m.guard).map((m) => m.view))].sort();
}

// --- the view guard (port of spinescan/edge/guard.py) -----------------------------------------

const GUARD_VIEW = "any";
const OTHER = "other";
const NOT_SPINE = "not a spine radiograph";
const AUTO = "auto"; // the view menu's entry that lets the guard pick (spinescan-predict without --view)

function guardModel() {
  return state.models.find((m) => m.guard) || null;
}

function skipReason(verdict, model) {
  if (verdict === OTHER) return `${NOT_SPINE} (the view guard calls it ${OTHER}); --view overrides`;
  if (model.view !== verdict)
    return `the view guard reads a ${verdict} film; ${model.name} reads ${model.view} films (--view ${model.view} overrides)`;
  return null;
}

async function runClassifier(model, decoded) {
  const t0 = performance.now();
  const { tensor, geometry } = preprocess(decoded, model.inputSize, model.prep);
  const input = new ort.Tensor("float32", tensor, [1, ...model.inputSize]);
  const outputs = await model.session.run({ [model.inputName]: input });
  const probs = Array.from(outputs[model.outputName].data);
  const best = probs.indexOf(Math.max(...probs));
  const result = {
    model: model.name,
    label: model.classes[best],
    probabilities: Object.fromEntries(model.classes.map((c, i) => [c, probs[i]])),
    ms: 0,
    geometry,
    weak: model.weak,
  };
  if (outputs.cam) {
    const [, gh, gw, k] = outputs.cam.dims;
    const raw = new Float32Array(gh * gw);
    for (let i = 0; i < gh * gw; i++) raw[i] = outputs.cam.data[i * k + best];
    result.heatmap = { class: model.classes[best], grid: normaliseCam(raw), shape: [gh, gw] };
  }
  result.ms = performance.now() - t0;
  return result;
}

async function measure(model, decoded) {
  // A landmark model: points -> film pixels -> angles -> label (landmarks.js, the Python's port).
  const t0 = performance.now();
  const { tensor, geometry } = preprocess(decoded, model.inputSize, model.prep);
  const input = new ort.Tensor("float32", tensor, [1, ...model.inputSize]);
  const outputs = await model.session.run({ [model.inputName]: input });
  const points = outputs[model.outputName];
  if (points.dims.length !== 3 || points.dims[2] < 3)
    throw new Error(`${model.name}: output of shape [${points.dims}], not (1, points, >= 3); export it again`);
  const reading = readLandmarks(points.data, points.dims, geometry, model.doc);
  return { model: model.name, task: "landmarks", ...reading, geometry, defs: definitionsOf(model.doc), weak: model.weak, ms: performance.now() - t0 };
}

async function classify(decoded, view) {
  // view "auto": the guard runs first and names the film's view (or "other": nothing is read);
  // any other view: that view's models, no guard (spinescan-predict --view).
  const out = [];
  const guard = guardModel();
  let verdict = null;
  if (view === AUTO && guard) {
    const g = await runClassifier(guard, decoded);
    verdict = g.label;
    const entry = { model: guard.name, task: "view", label: g.label, probabilities: g.probabilities, ms: g.ms };
    if (verdict === OTHER) entry.reason = `${NOT_SPINE} (the view guard calls it ${OTHER})`;
    out.push(entry);
  }
  for (const model of state.models.filter((m) => !m.guard && (verdict !== null || m.view === view))) {
    const why = verdict === null ? null : skipReason(verdict, model);
    if (why) {
      out.push({ model: model.name, label: null, skipped: why });
      continue;
    }
    if (model.task === "landmarks") {
      try {
        out.push(await measure(model, decoded));
      } catch (err) {
        // One model that cannot read this film must not hide the others' results.
        out.push({ model: model.name, task: "landmarks", error: `${model.name}: ${err && err.message ? err.message : err}` });
      }
      continue;
    }
    out.push(await runClassifier(model, decoded));
  }
  return out;
}

// --- drawing ----------------------------------------------------------------------------------

function jet(v) {
  // OpenCV's COLORMAP_JET, as RGB in [0, 255].
  const r = Math.min(Math.max(1.5 - Math.abs(4 * v - 3), 0), 1);
  const g = Math.min(Math.max(1.5 - Math.abs(4 * v - 2), 0), 1);
  const b = Math.min(Math.max(1.5 - Math.abs(4 * v - 1), 0), 1);
  return [r * 255, g * 255, b * 255];
}

/** The most pixels the film is displayed with (2048 x 2048): the display canvases of a film at
 * the 100 Mpx limit would otherwise take 400 MB each (RGBA), and the page's memory for any one
 * file must stay under 1 GB (issue #26). Overlays are drawn in film pixels through a scale. */
const DISPLAY_MAX_PIXELS = 2 ** 22;

function filmCanvas(decoded) {
  // The film in grey, min-max scaled for display (16-bit films included), box-averaged down to
  // at most DISPLAY_MAX_PIXELS, a strip of rows at a time: nothing of the film's size is made
  // (the grey integers are preprocess.js's, shared with the models' preprocessing).
  const { width, height, data } = toGrey(decoded);
  const scale = Math.min(1, Math.sqrt(DISPLAY_MAX_PIXELS / (width * height)));
  const dw = Math.max(1, Math.round(width * scale));
  const dh = Math.max(1, Math.round(height * scale));
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < data.length; i++) {
    const v = data[i];
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  const col = new Int32Array(width); // display column of each film column
  const perCol = new Float64Array(dw);
  for (let x = 0; x < width; x++) {
    col[x] = Math.min(dw - 1, Math.floor((x * dw) / width));
    perCol[col[x]]++;
  }
  const canvas = document.createElement("canvas");
  canvas.width = dw;
  canvas.height = dh;
  const ctx = canvas.getContext("2d");
  const strip = Math.max(1, Math.min(dh, Math.floor(2 ** 20 / dw)));
  const k = 255 / (hi - lo || 1);
  const sums = new Float64Array(dw);
  let y = 0;
  for (let top = 0; top < dh; top += strip) {
    const rows = Math.min(strip, dh - top);
    const image = ctx.createImageData(dw, rows);
    const px = image.data;
    for (let r = 0; r < rows; r++) {
      const dy = top + r;
      sums.fill(0);
      let n = 0;
      for (; y < height && Math.min(dh - 1, Math.floor((y * dh) / height)) === dy; y++, n++) {
        const row = y * width;
        for (let x = 0; x < width; x++) sums[col[x]] += data[row + x];
      }
      for (let dx = 0, o = r * dw * 4; dx < dw; dx++, o += 4) {
        const v = ((sums[dx] / (n * perCol[dx] || 1)) - lo) * k;
        px[o] = v;
        px[o + 1] = v;
        px[o + 2] = v;
        px[o + 3] = 255;
      }
    }
    ctx.putImageData(image, 0, top);
  }
  return { canvas, width, height };
}

/** The film on `target` (the display size), with the context left in film pixels for overlays. */
function drawFilm(target, film) {
  const ctx = target.getContext("2d");
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.clearRect(0, 0, target.width, target.height);
  ctx.drawImage(film.canvas, 0, 0, target.width, target.height);
  ctx.setTransform(target.width / film.width, 0, 0, target.height / film.height, 0, 0);
  return ctx;
}

function drawHeatmap(target, film, result) {
  const ctx = drawFilm(target, film);
  if (!result || !result.heatmap) return;
  const [gh, gw] = result.heatmap.shape;
  const grid = document.createElement("canvas");
  grid.width = gw;
  grid.height = gh;
  const gctx = grid.getContext("2d");
  const img = gctx.createImageData(gw, gh);
  result.heatmap.grid.forEach((v, i) => img.data.set([...jet(v), 255], i * 4));
  gctx.putImageData(img, 0, 0);
  // The grid covers the whole model input; map it back through the letterbox box onto the crop
  // window of the film (spinescan.edge.overlay.input_to_film), drawn with bilinear smoothing.
  const { crop, box, input_hw: [H, W] } = result.geometry;
  const sx = crop[3] / box[3];
  const sy = crop[2] / box[2];
  ctx.save();
  ctx.beginPath();
  ctx.rect(crop[1], crop[0], crop[3], crop[2]);
  ctx.clip();
  ctx.globalAlpha = 0.45;
  ctx.imageSmoothingEnabled = true;
  ctx.drawImage(grid, crop[1] - box[1] * sx, crop[0] - box[0] * sy, W * sx, H * sy);
  ctx.restore();
}

// An angle's colour, short name and whether it is only written (the AASCE three), from its
// definition in the model's document (spinescan/radiograph/angle_defs.py; the overlay's too).
function angleStyle(defs, name) {
  const d = defs && defs[name];
  return d ? [d.colour, d.title, d.text_only] : ["#ffffff", name, false];
}

function endplate(points, vertebra, side) {
  if (vertebra === "S1") {
    const s = points.slice(N_LANDMARKS, N_LANDMARKS + 2);
    return s.every(Boolean) ? s : null;
  }
  const base = 4 * vertebra;
  const q = points.slice(base, base + 4);
  if (side === "mid") {
    // the vertebra's mid-line: middle of its left side (corners 0, 2) to middle of its right side
    if (!q.every(Boolean)) return null;
    return [0, 1].map((k) => [(q[k][0] + q[k + 2][0]) / 2.0, (q[k][1] + q[k + 2][1]) / 2.0]);
  }
  const pair = side === "superior" ? [q[0], q[1]] : [q[2], q[3]];
  return pair.every(Boolean) ? pair : null;
}

function drawLandmarks(target, film, result) {
  // The reading over the film, like spinescan-predict --overlay: vertebra outlines, the S1
  // endplate, each angle's two endplates extended across the film, the angles and the label.
  const ctx = drawFilm(target, film);
  const { landmarks: pts, angles, label } = result;
  const w = film.width;
  const unit = Math.max(1, Math.round(film.height / 600));
  ctx.save();
  ctx.lineWidth = unit;
  ctx.strokeStyle = "#00ffff";
  ctx.fillStyle = "#00ffff";
  ctx.font = `${10 * unit}px sans-serif`;
  for (let v = 0; v < LEVELS.length; v++) {
    const q = [0, 1, 3, 2].map((j) => pts[4 * v + j]);
    if (!q.every(Boolean)) continue;
    ctx.beginPath();
    q.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
    ctx.closePath();
    ctx.stroke();
    if (v % 4 === 0 || v === LEVELS.length - 1) {
      const x = Math.max(...q.map((p) => p[0])) + 3 * unit;
      const y = q.reduce((s, p) => s + p[1], 0) / 4;
      ctx.fillText(LEVELS[v], x, y);
    }
  }
  const sacrum = endplate(pts, "S1");
  if (sacrum) {
    ctx.strokeStyle = "#ff00ff";
    ctx.beginPath();
    ctx.moveTo(...sacrum[0]);
    ctx.lineTo(...sacrum[1]);
    ctx.stroke();
  }
  ctx.font = `bold ${13 * unit}px sans-serif`;
  let textY = 16 * unit;
  const text = (msg, colour) => {
    ctx.lineWidth = 3 * unit;
    ctx.strokeStyle = "#000";
    ctx.strokeText(msg, 4 * unit, textY);
    ctx.fillStyle = colour;
    ctx.fillText(msg, 4 * unit, textY);
    textY += 16 * unit;
  };
  for (const [name, a] of Object.entries(angles)) {
    const [colour, short, textOnly] = angleStyle(result.defs, name);
    if (a.value === null) {
      text(`${short}: - (${a.reason})`, colour);
      continue;
    }
    if (textOnly) {
      text(`${short}: ${a.value.toFixed(1)} deg`, colour);
      continue;
    }
    ctx.strokeStyle = colour;
    ctx.lineWidth = unit;
    a.lines.forEach(([vertebra, side], k) => {
      const p = endplate(pts, vertebra, side);
      if (!p) return;
      const mid = [(p[0][0] + p[1][0]) / 2, (p[0][1] + p[1][1]) / 2];
      let d = [p[1][0] - p[0][0], p[1][1] - p[0][1]];
      if (side === "mid" && a.orientations && a.orientations.length === a.lines.length) {
        const rad = (a.orientations[k] * Math.PI) / 180; // the smoothed mid-line, through the centre
        d = [Math.cos(rad), Math.sin(rad)];
      }
      const n = Math.hypot(d[0], d[1]) || 1;
      const reach = 0.18 * w + 20;
      ctx.beginPath();
      ctx.moveTo(mid[0] - (d[0] / n) * reach, mid[1] - (d[1] / n) * reach);
      ctx.lineTo(mid[0] + (d[0] / n) * reach, mid[1] + (d[1] / n) * reach);
      ctx.stroke();
    });
    text(`${short}: ${a.value.toFixed(1)} deg`, colour);
  }
  text(`label: ${label === null ? "-" : label}`, "#ffffff");
  ctx.restore();
}

function describeReading(result) {
  // One line per measurement, as spinescan-predict's JSON names them, with the reason for a null.
  return Object.entries(result.measurements).map(([name, v]) => {
    if (v === null) return `${name} - (${result.reasons[name]})`;
    const note = result.notes[name] ? ` (${result.notes[name]})` : "";
    return `${name} ${v.toFixed(1)} deg${note}`;
  });
}

function fmt(p) {
  return p.toFixed(3);
}

function render(card, entry) {
  card.innerHTML = "";
  const title = document.createElement("h2");
  title.textContent = entry.file;
  card.append(title);
  if (entry.error) {
    card.classList.add("error");
    const msg = document.createElement("p");
    msg.className = "error-message";
    msg.textContent = entry.error;
    card.append(msg);
    return;
  }
  const picker = document.createElement("select");
  if (guardModel()) picker.append(new Option("auto (view guard)", AUTO, false, entry.view === AUTO));
  for (const v of views()) picker.append(new Option(`${v} view`, v, false, v === entry.view));
  picker.addEventListener("change", () => rerun(card, entry, picker.value));
  card.append(picker);
  const canvas = document.createElement("canvas");
  canvas.width = entry.film.canvas.width;
  canvas.height = entry.film.canvas.height;
  card.append(canvas);
  const caption = document.createElement("p");
  caption.className = "caption";
  card.append(caption);
  const table = document.createElement("table");
  card.append(table);
  const show = (result, row) => {
    if (result && result.task === "landmarks") drawLandmarks(canvas, entry.film, result);
    else drawHeatmap(canvas, entry.film, result);
    table.querySelectorAll("tr").forEach((r) => r.classList.remove("shown"));
    if (row) row.classList.add("shown");
    if (result && result.task === "landmarks") {
      caption.textContent = `${result.model}: landmarks and the lines of each angle (${LANDMARK_DISCLAIMER})`;
      return;
    }
    caption.textContent = result && result.heatmap
      ? `${result.model}: heatmap of ${result.heatmap.class} (${DISCLAIMER})`
      : `${result ? result.model : ""}: no heatmap for this model`;
  };
  drawHeatmap(canvas, entry.film, null); // the film alone until a result is shown
  let shown = false;
  entry.results.forEach((result) => {
    const row = table.insertRow();
    row.className = "model";
    row.dataset.model = result.model;
    const name = row.insertCell();
    name.textContent = result.model;
    if (result.weak) {
      // A model exported past the weak-model gate: never shown without the mark and its reason.
      const mark = document.createElement("span");
      mark.className = "weak";
      mark.textContent = " WEAK";
      mark.title = result.weak;
      name.append(mark, document.createElement("br"), result.weak);
    }
    if (result.error) {
      const cell = row.insertCell();
      cell.colSpan = 3;
      cell.className = "error-message";
      cell.textContent = result.error;
      return;
    }
    if (result.skipped) {
      // the view guard kept this model off the film: no label, no angles, the reason
      row.classList.add("skipped");
      const cell = row.insertCell();
      cell.colSpan = 3;
      cell.textContent = `skipped: ${result.skipped}`;
      return;
    }
    const label = row.insertCell();
    label.innerHTML = "<strong></strong>";
    label.firstChild.textContent = result.label === null ? "no label" : result.label;
    const probs = row.insertCell();
    if (result.reason) label.append(document.createElement("br"), result.reason);
    if (result.task === "landmarks") {
      row.classList.add("landmarks");
      if (result.label_reason) label.append(document.createElement("br"), result.label_reason);
      if (result.plausibility && result.plausibility.severity !== "ok") {
        // the implausibility flag, as spinescan-predict's JSON carries it
        const flag = document.createElement("div");
        flag.className = `plausibility ${result.plausibility.severity}`;
        flag.textContent = `${result.plausibility.severity}: implausible landmarks: ${result.plausibility.reasons.join("; ")}`;
        probs.append(flag);
      }
      for (const line of describeReading(result)) {
        const item = document.createElement("div");
        item.textContent = line;
        probs.append(item);
      }
    }
    for (const [c, p] of Object.entries(result.probabilities || {}).sort((a, b) => b[1] - a[1])) {
      const bar = document.createElement("span");
      bar.className = "bar";
      bar.style.width = `${Math.round(p * 60)}px`;
      probs.append(`${c} ${fmt(p)} `, bar, " ");
    }
    row.insertCell().textContent = `${result.ms.toFixed(0)} ms`;
    row.addEventListener("click", () => show(result, row));
    if (!shown) show(result, row);
    shown = true;
  });
  if (!entry.results.length) caption.textContent = `no ${entry.view} model was exported`;
}

async function rerun(card, entry, view) {
  // The film is decoded again from its file (it read once, so it reads again): no decoded film
  // is kept once its card is drawn, so a page of many films holds only their display canvases.
  entry.view = view;
  try {
    entry.results = await classify(await decodeFile(new Uint8Array(await entry.source.arrayBuffer()), entry.file), view);
  } catch (err) {
    entry.error = err && err.message ? err.message : String(err);
  }
  render(card, entry);
}

async function addFile(file, view) {
  const card = document.createElement("article");
  card.className = "film";
  $("#films").append(card);
  const entry = { file: file.name, view, source: file };
  const t0 = performance.now();
  try {
    await checkFile(file); // empty, not an image, over the size limit: refused before it is read
    const decoded = await decodeFile(new Uint8Array(await file.arrayBuffer()), file.name);
    entry.film = filmCanvas(decoded);
    await state.ready;
    entry.view = view || $("#view").value; // films added before the models loaded
    entry.results = await classify(decoded, entry.view);
  } catch (err) {
    entry.error = err && err.message ? err.message : String(err);
  }
  entry.ms = performance.now() - t0;
  entry.finishedAt = performance.now();
  render(card, entry);
  state.results.push({
    file: entry.file,
    view: entry.view,
    error: entry.error,
    ms: entry.ms,
    finishedAt: entry.finishedAt,
    results: (entry.results || []).map((r) => (r.error
      ? { model: r.model, task: r.task, error: r.error }
      : r.skipped
      ? { model: r.model, label: null, skipped: r.skipped }
      : r.task === "view"
      ? { model: r.model, task: r.task, label: r.label, probabilities: r.probabilities, reason: r.reason, ms: r.ms }
      : r.task === "landmarks"
      ? {
        model: r.model,
        task: r.task,
        label: r.label,
        label_reason: r.label_reason,
        measurements: r.measurements,
        reasons: r.reasons,
        notes: r.notes,
        landmarks: r.landmarks,
        visibility: r.visibility,
        plausibility: r.plausibility,
        ms: r.ms,
        ...(r.weak ? { weak: r.weak } : {}),
      }
      : {
        model: r.model,
        label: r.label,
        probabilities: r.probabilities,
        ms: r.ms,
        ...(r.weak ? { weak: r.weak } : {}),
        heatmap: r.heatmap ? { class: r.heatmap.class, shape: r.heatmap.shape, grid: Array.from(r.heatmap.grid) } : null,
      })),
  });
}

async function addFiles(files) {
  const view = $("#view").value;
  for (const file of files) await addFile(file, view); // in order, one at a time
}

// For tests: the model input tensor and geometry the page computes for some bytes, with a
// model's settings (by name) or any {input_size, preprocessing}.
state.preprocessBytes = async (bytes, modelOrSpec) => {
  await state.ready;
  const model = typeof modelOrSpec === "string" ? state.models.find((m) => m.name === modelOrSpec) : null;
  const inputSize = model ? model.inputSize : modelOrSpec.input_size;
  const prep = model ? model.prep : modelOrSpec.preprocessing;
  const decoded = await decodeFile(new Uint8Array(bytes), "bytes", { minSide: 1 }); // read_image's default
  const { tensor, geometry } = preprocess(decoded, inputSize, prep);
  return { tensor: Array.from(tensor), geometry };
};

// For tests (tests/test_web_hostile.py, tests/test_fuzz.py): what the page makes of some bytes, as
// the page reads a film: {width, height, channels} or {error: the one-line message}.
state.readBytes = async (bytes, name = "bytes") => {
  try {
    const { width, height, channels } = await decodeFile(new Uint8Array(bytes), name);
    return { width, height, channels };
  } catch (err) {
    return { error: err && err.message ? err.message : String(err) };
  }
};

// For tests: the angles, reasons and label the page derives from landmarks in film pixels
// (68 corners and the two S1 points, null where not visible), without a model; with a model
// document (as the manifest carries it), by its angles and thresholds.
state.measureLandmarks = (points, view, filmHw, readout = "endplates", rawDoc = null) => {
  const doc = rawDoc ? parseDocument(rawDoc, "test") : null;
  const corners = points.slice(0, N_LANDMARKS);
  const sacrum = points.slice(N_LANDMARKS, N_LANDMARKS + 2);
  let angles =
    view === "ap" ? apAngles(corners, filmHw, readout) : lateralAngles(corners, sacrum, filmHw);
  if (doc) angles = extraAngles(angles, doc.measurements, corners, sacrum, filmHw);
  const [label, reason] = labelFromAngles(view, angles, definitionsOf(doc));
  return { angles, label, label_reason: reason, plausibility: assessLandmarks(corners, sacrum, filmHw) };
};

function setup() {
  const input = $("#files");
  input.addEventListener("change", () => {
    addFiles([...input.files]);
    input.value = "";
  });
  const drop = $("#drop");
  drop.addEventListener("dragover", (e) => {
    e.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    addFiles([...e.dataTransfer.files]);
  });
  state.ready = loadModels().then(
    (models) => {
      state.models = models;
      state.loadedAt = performance.now();
      const select = $("#view");
      if (guardModel()) select.append(new Option("auto (view guard)", AUTO));
      for (const v of views()) select.append(new Option(v, v));
      const what = (m) => (m.guard ? ", view guard" : m.task === "landmarks" ? ", landmarks and angles" : m.cam ? ", heatmap" : "");
      const names = models.map((m) => `${m.name} (${m.view}${what(m)})`).join(", ");
      setStatus(`Ready: ${models.length} model(s), loaded in ${(state.loadedAt / 1000).toFixed(1)} s.`);
      $("#models").textContent = `Models: ${names}. ${state.errors.join(" ")}`;
      if (!models.length) setStatus(`No usable model. ${state.errors.join(" ")}`, true);
    },
    (err) => {
      setStatus(`Cannot load the models: ${err.message}`, true);
      state.errors.push(err.message);
    },
  );
}

setup();
