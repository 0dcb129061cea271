// The model document (port of spinescan/edge/modeldoc.py's reader): the one description of an
// exported model, which the page reads from its manifest entry ("document", a verbatim copy of the
// ONNX file's metadata key spinescan_model). parseDocument refuses a malformed document, or one of
// a version this page does not know, with one line, as parse_document does. A manifest written
// before the document (no "document") is read from its older fields by legacyDocument, with the
// built-in angles' definitions (readout.js, generated from the same Python source).
import { READOUT } from "./readout.js";

const METHODS = ["endplates", "largest_cobb", "regional_cobb", "aasce"];
const OPS = [">", ">=", "<"];
const TASKS = ["classification", "landmarks"];

class DocumentError extends Error {}

function need(cond, source, what) {
  if (!cond) throw new DocumentError(`${source}: malformed model document (${what})`);
}

const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
const isString = (v) => typeof v === "string";

function parseAngle(m, source) {
  need(isObject(m) && isString(m.name) && isString(m.title), source, "a measurement needs a name and a title");
  need(METHODS.includes(m.method), source, `${m.name}: unknown method ${JSON.stringify(m.method)}`);
  const thresholds = m.thresholds || [];
  need(Array.isArray(thresholds), source, `${m.name}: thresholds must be a list`);
  for (const t of thresholds)
    need(isObject(t) && isString(t.finding) && OPS.includes(t.op) && Number.isFinite(t.limit), source, `${m.name}: bad threshold`);
  const lines = m.lines || [];
  need(Array.isArray(lines) && (m.method !== "endplates" || lines.length === 2), source, `${m.name}: an endplates angle names two endplates`);
  for (const l of lines)
    need(Array.isArray(l) && (READOUT.levels.includes(l[0]) || l[0] === "S1") && ["superior", "inferior"].includes(l[1]), source, `${m.name}: unknown endplate ${l}`);
  return {
    name: m.name,
    view: m.view,
    title: m.title,
    method: m.method,
    lines,
    thresholds,
    unit: m.unit || "deg",
    colour: isString(m.colour) ? m.colour : "#ffffff",
    text_only: Boolean(m.text_only),
  };
}

/** parse_document: the document of a manifest entry, checked; throws one line naming source. */
export function parseDocument(raw, source = "model") {
  if (!isObject(raw) || raw.schema !== READOUT.document.schema) throw new DocumentError(`${source}: not a Spine Scan model document`);
  if (raw.schema_version !== READOUT.document.schema_version)
    throw new DocumentError(
      `${source}: model document version ${JSON.stringify(raw.schema_version)} is not supported (this page knows ${READOUT.document.schema_version}); export it again or use spinescan-predict`,
    );
  need(isString(raw.name) && raw.name, source, "missing name");
  need(TASKS.includes(raw.task), source, `task ${JSON.stringify(raw.task)}`);
  need(isString(raw.view), source, "missing view");
  need(Array.isArray(raw.classes) && raw.classes.length >= 2 && raw.classes.every(isString), source, "classes");
  need(Array.isArray(raw.input_size) && raw.input_size.length === 3 && raw.input_size.every((v) => Number.isInteger(v) && v >= 1), source, "input size");
  need(isObject(raw.preprocessing), source, "preprocessing");
  const landmarks = raw.landmarks || [];
  const measurements = (raw.measurements || []).map((m) => parseAngle(m, source));
  if (raw.task === "landmarks")
    need(landmarks.length && measurements.length && (raw.view === "ap" || raw.view === "lateral"), source, "a landmark model needs landmark names, measurements and the view ap or lateral");
  return {
    name: raw.name,
    task: raw.task,
    view: raw.view,
    classes: raw.classes,
    input_size: raw.input_size,
    preprocessing: raw.preprocessing,
    landmarks,
    measurements,
    readout: raw.readout || {},
  };
}

/** The document of a manifest entry written before the document existed (its loose fields). */
export function legacyDocument(entry) {
  const known = READOUT.angles;
  return {
    name: entry.model,
    task: entry.task || "classification",
    view: entry.view,
    classes: entry.classes,
    input_size: entry.input_size,
    preprocessing: entry.preprocessing,
    landmarks: [],
    measurements: (entry.measurements || []).map(
      (n) => known[n] || { name: n, title: n, method: "unknown", lines: [], thresholds: [], colour: "#ffffff", text_only: false },
    ),
    readout: {},
  };
}

/** The document of one manifest entry: its own, else the legacy fields. */
export function entryDocument(entry) {
  return entry.document !== undefined ? parseDocument(entry.document, entry.model || entry.file) : legacyDocument(entry);
}
