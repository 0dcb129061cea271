// Spine Scan in the browser: the exported ONNX models run here with onnxruntime-web (wasm, one
// thread, so no cross-origin isolation is needed). Models are listed by ../manifest.json (written
// by `spinescan export`), checked against its sha256, and fed by a port of the Python
// preprocessing. Nothing is requested from anywhere but this page's own origin.
import * as ort from "./ort/ort.wasm.min.mjs";
import { decodeFile } from "./decode.js";
import { normaliseCam, preprocess } from "./preprocess.js";

ort.env.wasm.wasmPaths = new URL("./ort/", import.meta.url).href;
ort.env.wasm.numThreads = 1;
ort.env.wasm.proxy = false;
ort.env.logLevel = "error";

const DISCLAIMER = "heatmap: a quality check, not a localisation claim";
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
    if (entry.task && entry.task !== "classification") {
      // Landmark models (angles in degrees) need the spine_band crop and the angle read-out,
      // which this page has not ported yet: say so rather than misread their outputs.
      state.errors.push(`${entry.model}: a ${entry.task} model, not shown here yet (use spinescan-predict --overlay)`);
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
    models.push({
      name: entry.model,
      view: entry.view,
      classes: entry.classes,
      inputSize: entry.input_size,
      prep: entry.preprocessing,
      cam: session.outputNames.includes("cam"),
      camInfo: entry.cam || null,
      session,
    });
  }
  return models;
}

function views() {
  return [...new Set(state.models.map((m) => m.view))].sort();
}

async function classify(decoded, view) {
  const out = [];
  for (const model of state.models.filter((m) => m.view === view)) {
    const t0 = performance.now();
    const { tensor, geometry } = preprocess(decoded, model.inputSize, model.prep);
    const input = new ort.Tensor("float32", tensor, [1, ...model.inputSize]);
    const outputs = await model.session.run({ image: input });
    const probs = Array.from(outputs.probabilities.data);
    const best = probs.indexOf(Math.max(...probs));
    const result = {
      model: model.name,
      label: model.classes[best],
      probabilities: Object.fromEntries(model.classes.map((c, i) => [c, probs[i]])),
      ms: 0,
      geometry,
    };
    if (outputs.cam) {
      const [, gh, gw, k] = outputs.cam.dims;
      const raw = new Float32Array(gh * gw);
      for (let i = 0; i < gh * gw; i++) raw[i] = outputs.cam.data[i * k + best];
      result.heatmap = { class: model.classes[best], grid: normaliseCam(raw), shape: [gh, gw] };
    }
    result.ms = performance.now() - t0;
    out.push(result);
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

function filmCanvas(decoded) {
  // The film in grey, min-max scaled for display (16-bit films included).
  const { width, height, channels, data } = decoded;
  let lo = Infinity;
  let hi = -Infinity;
  const grey = new Float32Array(width * height);
  for (let i = 0; i < grey.length; i++) {
    const o = i * channels;
    grey[i] = channels >= 3 ? 0.299 * data[o] + 0.587 * data[o + 1] + 0.114 * data[o + 2] : data[o];
    lo = Math.min(lo, grey[i]);
    hi = Math.max(hi, grey[i]);
  }
  const canvas = document.createElement("canvas");
  canvas.width = width;
  canvas.height = height;
  const ctx = canvas.getContext("2d");
  const image = ctx.createImageData(width, height);
  const scale = 255 / (hi - lo || 1);
  const px = image.data;
  for (let i = 0, o = 0; i < grey.length; i++, o += 4) {
    const v = (grey[i] - lo) * scale;
    px[o] = v;
    px[o + 1] = v;
    px[o + 2] = v;
    px[o + 3] = 255;
  }
  ctx.putImageData(image, 0, 0);
  return canvas;
}

function drawHeatmap(target, film, result) {
  const ctx = target.getContext("2d");
  ctx.drawImage(film, 0, 0);
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
  for (const v of views()) picker.append(new Option(`${v} view`, v, false, v === entry.view));
  picker.addEventListener("change", () => rerun(card, entry, picker.value));
  card.append(picker);
  const canvas = document.createElement("canvas");
  canvas.width = entry.film.width;
  canvas.height = entry.film.height;
  card.append(canvas);
  const caption = document.createElement("p");
  caption.className = "caption";
  card.append(caption);
  const table = document.createElement("table");
  card.append(table);
  const show = (result, row) => {
    drawHeatmap(canvas, entry.film, result);
    table.querySelectorAll("tr").forEach((r) => r.classList.remove("shown"));
    if (row) row.classList.add("shown");
    caption.textContent = result && result.heatmap
      ? `${result.model}: heatmap of ${result.heatmap.class} (${DISCLAIMER})`
      : `${result ? result.model : ""}: no heatmap for this model`;
  };
  entry.results.forEach((result, i) => {
    const row = table.insertRow();
    row.className = "model";
    row.dataset.model = result.model;
    row.insertCell().textContent = result.model;
    const label = row.insertCell();
    label.innerHTML = "<strong></strong>";
    label.firstChild.textContent = result.label;
    const probs = row.insertCell();
    for (const [c, p] of Object.entries(result.probabilities).sort((a, b) => b[1] - a[1])) {
      const bar = document.createElement("span");
      bar.className = "bar";
      bar.style.width = `${Math.round(p * 60)}px`;
      probs.append(`${c} ${fmt(p)} `, bar, " ");
    }
    row.insertCell().textContent = `${result.ms.toFixed(0)} ms`;
    row.addEventListener("click", () => show(result, row));
    if (i === 0) show(result, row);
  });
  if (!entry.results.length) caption.textContent = `no ${entry.view} model was exported`;
}

async function rerun(card, entry, view) {
  entry.view = view;
  entry.results = await classify(entry.decoded, view);
  render(card, entry);
}

async function addFile(file, view) {
  const card = document.createElement("article");
  card.className = "film";
  $("#films").append(card);
  const entry = { file: file.name, view };
  const t0 = performance.now();
  try {
    const bytes = new Uint8Array(await file.arrayBuffer());
    entry.decoded = await decodeFile(bytes, file.name);
    entry.film = filmCanvas(entry.decoded);
    await state.ready;
    entry.view = view || $("#view").value; // films added before the models loaded
    entry.results = await classify(entry.decoded, entry.view);
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
    results: (entry.results || []).map(({ model, label, probabilities, ms, heatmap }) => ({
      model, label, probabilities, ms, heatmap: heatmap ? { class: heatmap.class, shape: heatmap.shape, grid: Array.from(heatmap.grid) } : null,
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
  const decoded = await decodeFile(new Uint8Array(bytes), "bytes");
  const { tensor, geometry } = preprocess(decoded, inputSize, prep);
  return { tensor: Array.from(tensor), geometry };
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
      for (const v of views()) select.append(new Option(v, v));
      const names = models.map((m) => `${m.name} (${m.view}${m.cam ? ", heatmap" : ""})`).join(", ");
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
