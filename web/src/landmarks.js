// Port of the landmark read-out of spinescan-predict: spinescan/radiograph/landmark_codec.py (decode),
// spinescan/radiograph/angles.py (ap_angles, lateral_angles, label_from_angles),
// spinescan/radiograph/thresholds.py and spinescan/radiograph/measure.py (read_landmarks and the JSON fields).
//
// A landmark model outputs, per point, x and y normalised to its input tensor and a visibility
// logit. The points are mapped back to the film's pixels through the crop and letterbox the
// preprocessing applied (the Placement, here preprocess()'s geometry), and the angles are measured
// from them by the same definitions as the Python, in float64 like numpy. tests/test_web.py checks
// points, angles, reasons and labels against spinescan-predict --json on real films and phantoms.
//
// No number or name here is a copy: the constants that are not per model (levels, regions, the
// smoothing kernel, the plausibility numbers, the built-in angles with their thresholds) come from
// readout.js, generated from the Python at export; a model's angles, their thresholds, titles and
// colours from its document (modeldoc.js). An "endplates" angle that is not built in (a plugin's
// new angle) is measured from its document's definition alone (endplateAngle), without a JS edit.
import { READOUT } from "./readout.js";

export const LEVELS = READOUT.levels;
export const N_VERT = LEVELS.length;
export const N_LANDMARKS = 4 * N_VERT;
export const N_POINTS = READOUT.point_names.length; // 68 corners, then the S1 superior endplate (left, right)
/** The built-in angles' definitions by name (angle_defs.ANGLES), for a reading without a document. */
export const BUILT_IN = READOUT.angles;
const builtIn = (pred) => Object.values(BUILT_IN).filter(pred).map((a) => a.name);
export const AASCE_ANGLES = builtIn((a) => a.method === "aasce");
export const AP_ANGLES = builtIn((a) => a.view === "ap");
export const LATERAL_ANGLES = builtIn((a) => a.view === "lateral");
const REGIONS = READOUT.regions.map(([name, lo, hi]) => [name, LEVELS.indexOf(lo), LEVELS.indexOf(hi)]);
const MIN_RUN = READOUT.min_run;

/** An angle's threshold for a finding ("hyper", "hypo", "scoliosis"), from its definition. */
function limitOf(definition, finding) {
  const t = ((definition && definition.thresholds) || []).find((x) => x.finding === finding);
  if (!t) throw new Error(`${definition ? definition.name : "angle"} has no ${finding} threshold`);
  return t;
}

/** Whether value crosses threshold t (its op: ">", ">=", "<"). */
function crosses(value, t) {
  return t.op === ">" ? value > t.limit : t.op === ">=" ? value >= t.limit : value < t.limit;
}

/** name -> definition: a document's measurements over the built-ins. */
export function definitionsOf(doc) {
  const out = { ...BUILT_IN };
  for (const m of (doc && doc.measurements) || []) out[m.name] = m;
  return out;
}

/** Python's a % b (the sign of b). */
function pyMod(a, b) {
  const r = a % b;
  return r !== 0 && (r < 0) !== (b < 0) ? r + b : r;
}

const finite = (p) => p !== null && Number.isFinite(p[0]) && Number.isFinite(p[1]);

// --- decode: model output -> film pixels --------------------------------------------------------

/**
 * read_landmarks' decoding: output (K x D floats, row-major, D >= 3: x, y, visibility logit) ->
 * {points: 70 [x, y] in film pixels or null where not visible, visibility: 70 probabilities}.
 * geometry is preprocess()'s: crop = [top, left, h, w], box = [pad_top, pad_left, new_h, new_w].
 */
export function decodePoints(data, k, d, geometry, threshold = READOUT.visibility_threshold) {
  const [H, W] = geometry.input_hw;
  const [cropTop, cropLeft, cropH, cropW] = geometry.crop;
  const [padTop, padLeft, newH, newW] = geometry.box;
  const sx = newW / cropW;
  const sy = newH / cropH;
  const points = [];
  const visibility = [];
  for (let i = 0; i < N_POINTS; i++) {
    // A model with fewer points reads the missing ones as not visible (coordinate 0.5, logit -inf).
    const cx = i < k ? data[i * d] : 0.5;
    const cy = i < k ? data[i * d + 1] : 0.5;
    const logit = i < k ? data[i * d + 2] : -Infinity;
    const prob = 1.0 / (1.0 + Math.exp(-logit));
    visibility.push(prob);
    // from_normalised, then Placement.to_source
    const ix = cx * W - 0.5;
    const iy = cy * H - 0.5;
    const x = (ix - padLeft + 0.5) / sx - 0.5 + cropLeft;
    const y = (iy - padTop + 0.5) / sy - 0.5 + cropTop;
    // NaN coordinates (a broken model) are "not visible" too, as NaN is in numpy.
    points.push(prob < threshold || !Number.isFinite(x) || !Number.isFinite(y) ? null : [x, y]);
  }
  return { points, visibility };
}

// --- angles (spinescan/radiograph/angles.py) ----------------------------------------------------------

/** Orientation (degrees, in [-90, 90)) of the line through p and q, direction-free. */
export function edgeAngle(p, q) {
  const a = Math.atan2(q[1] - p[1], q[0] - p[0]) * (180.0 / Math.PI); // np.degrees
  return pyMod(a + 90.0, 180.0) - 90.0;
}

/** Unsigned angle between two lines given by their orientations, in [0, 90]. */
export function lineAngleBetween(a1, a2) {
  return Math.abs(pyMod(a1 - a2 + 90.0, 180.0) - 90.0);
}

/** 68 corner points (null where unknown) -> 17 vertebrae of 4 [x, y] (NaN where unknown). */
function asCorners(points) {
  const c = [];
  for (let v = 0; v < N_VERT; v++) {
    const q = [];
    for (let j = 0; j < 4; j++) {
      const p = points[4 * v + j];
      q.push(finite(p) ? [p[0], p[1]] : [NaN, NaN]);
    }
    c.push(q);
  }
  return c;
}

function inside(p, [h, w]) {
  // _inside: on the film of size (h, w); NaN is outside.
  return p[0] >= -0.5 && p[0] <= w - 0.5 && p[1] >= -0.5 && p[1] <= h - 0.5;
}

function visibleVertebrae(corners, imageSize) {
  return corners.map((q) => q.every((p) => finite(p) && (!imageSize || inside(p, imageSize))));
}

function names(indices) {
  // _names: "T1-T3, L5".
  const idx = indices.map(Number);
  if (!idx.length) return "";
  const runs = [];
  let start = idx[0];
  for (let n = 0; n < idx.length; n++) {
    const a = idx[n];
    const b = n + 1 < idx.length ? idx[n + 1] : null;
    if (b === null || b !== a + 1) {
      runs.push(start === a ? LEVELS[start] : `${LEVELS[start]}-${LEVELS[a]}`);
      start = b !== null ? b : a;
    }
  }
  return runs.join(", ");
}

function longestRun(ok) {
  // _longest_run: inclusive [first, last] of the longest run of true; the upper one on ties.
  let best = null;
  let start = null;
  const flags = [...ok, false];
  for (let i = 0; i < flags.length; i++) {
    if (flags[i] && start === null) start = i;
    else if (!flags[i] && start !== null) {
      if (best === null || i - start > best[1] - best[0] + 1) best = [start, i - 1];
      start = null;
    }
  }
  return best;
}

/** How a model's coronal angles are read (angles.PREDICTION_READOUT): vertebral mid-lines. */
export const PREDICTION_READOUT = READOUT.prediction_readout;

const mid = (a, b) => [(a[0] + b[0]) / 2.0, (a[1] + b[1]) / 2.0];

const midlineTilts = (corners) => corners.map((q) => edgeAngle(mid(q[0], q[2]), mid(q[1], q[3])));

// smoothed_tilts: Savitzky-Golay weights (quadratic over five vertebrae, x scale).
const SG_EDGE = READOUT.smoothing.edge;
const SG_MID = READOUT.smoothing.mid;
const SG_SCALE = READOUT.smoothing.scale;

/** smoothed_tilts: tilts of first..last smoothed by a quadratic over the five nearest vertebrae. */
export function smoothedTilts(tilts, first = 0, last = N_VERT - 1) {
  const out = tilts.slice();
  if (last - first + 1 < 5) return out;
  for (let i = first; i <= last; i++) {
    let lo;
    let w;
    if (i - first < 2) {
      lo = first;
      w = SG_EDGE[i - first];
    } else if (last - i < 2) {
      lo = last - 4;
      w = SG_EDGE[last - i].slice().reverse();
    } else {
      lo = i - 2;
      w = SG_MID;
    }
    let acc = 0.0;
    for (let k = 0; k < 5; k++) acc += w[k] * tilts[lo + k];
    out[i] = acc / SG_SCALE;
  }
  return out;
}

/** cobb_matrix: angle between vertebra i (upper) and j (lower), endplates or smoothed mid-lines. */
function cobbMatrix(corners, readout, first = 0, last = N_VERT - 1) {
  if (readout === "midlines") {
    const tilt = smoothedTilts(midlineTilts(corners), first, last);
    return tilt.map((t) => tilt.map((u) => lineAngleBetween(t, u)));
  }
  const top = corners.map((q) => edgeAngle(q[0], q[1]));
  const bottom = corners.map((q) => edgeAngle(q[2], q[3]));
  return top.map((t) => bottom.map((b) => lineAngleBetween(t, b)));
}

function maxCobb(corners, readout, first, last) {
  // max_cobb_from_landmarks: argmax of triu(diff) (diagonal included), first in row-major order.
  const diff = cobbMatrix(corners, readout, first, last);
  let best = -Infinity;
  let bi = 0;
  let bj = 0;
  for (let i = 0; i < N_VERT; i++) {
    for (let j = 0; j < N_VERT; j++) {
      const v = j >= i ? diff[i][j] : 0;
      // numpy's argmax returns the first NaN when there is one; no NaN reaches here (all visible).
      if (v > best) {
        best = v;
        bi = i;
        bj = j;
      }
    }
  }
  return [best, bi, bj];
}

function apex(centres, upper, lower) {
  if (lower - upper < 2) return (upper + lower) / 2.0;
  const a = centres[upper];
  const b = centres[lower];
  const chord = [b[0] - a[0], b[1] - a[1]];
  const norm = Math.hypot(chord[0], chord[1]);
  if (norm === 0.0) return (upper + lower) / 2.0;
  let best = -Infinity;
  let arg = 0;
  for (let v = upper + 1; v < lower; v++) {
    const rel = [centres[v][0] - a[0], centres[v][1] - a[1]];
    const dev = Math.abs(chord[0] * rel[1] - chord[1] * rel[0]) / norm;
    if (dev > best) {
      best = dev;
      arg = v - upper - 1;
    }
  }
  if (best <= 1e-9) return (upper + lower) / 2.0;
  return upper + 1 + arg;
}

/** coronal_curves: the vertebrae first..last decomposed into curves, top to bottom. */
export function coronalCurves(corners, first, last, readout = "endplates") {
  const diff = cobbMatrix(corners, readout, first, last);
  const centres = corners.map((q) => [
    (q[0][0] + q[1][0] + q[2][0] + q[3][0]) / 4,
    (q[0][1] + q[1][1] + q[2][1] + q[3][1]) / 4,
  ]);
  const split = (a, b) => {
    if (b - a < 1) return [];
    let best = -Infinity;
    let bi = 0;
    let bj = 0;
    for (let i = a; i <= b; i++) {
      for (let j = a; j <= b; j++) {
        const v = j > i ? diff[i][j] : 0; // np.triu(k=1)
        if (v > best) {
          best = v;
          bi = i;
          bj = j;
        }
      }
    }
    if (best <= 0.0) return [];
    const curve = { upper: bi, lower: bj, apex: apex(centres, bi, bj), angle: diff[bi][bj] };
    return [...split(a, bi), curve, ...split(bj, b)];
  };
  return split(first, last);
}

function regionOf(apexLevel) {
  for (const [name, lo, hi] of REGIONS) if (lo - 0.5 < apexLevel && apexLevel <= hi + 0.5) return name;
  return "cobb_tl_deg";
}

const angle = (name, value, extra = {}) => ({ name, value, reason: null, lines: [], note: null, ...extra });

function maxBy(curves) {
  // Python's max(key=...): the first of equal maxima.
  return curves.reduce((m, k) => (k.angle > m.angle ? k : m));
}

// --- the AASCE challenge's three angles (spinescan/radiograph/aasce.py) ---------------------------------

const ON_CHORD = READOUT.on_chord;

/** midline_vectors: each vertebra's mid-line, middle of its left side -> middle of its right side. */
const midlineVectors = (corners) =>
  corners.map((q) => [(q[1][0] + q[3][0]) / 2.0 - (q[0][0] + q[2][0]) / 2.0, (q[1][1] + q[3][1]) / 2.0 - (q[0][1] + q[2][1]) / 2.0]);

/** tilt_vectors: unit vectors of mid-lines given by their orientations (degrees). */
const tiltVectors = (tilts) => tilts.map((t) => [Math.cos(t * (Math.PI / 180.0)), Math.sin(t * (Math.PI / 180.0))]);

/** angle_matrix: atan2(|v_i x v_j|, v_i . v_j) in degrees, exactly symmetric. */
function aasceMatrix(v) {
  return v.map((a) =>
    v.map((b) => Math.atan2(Math.abs(a[0] * b[1] - a[1] * b[0]), a[0] * b[0] + a[1] * b[1]) * (180.0 / Math.PI)),
  );
}

/** centre_line: the 34 endplate midpoints, T1 superior first. */
const centreLine = (corners) => corners.flatMap((q) => [mid(q[0], q[1]), mid(q[2], q[3])]);

/** is_s_shape: the centre line has points strictly on both sides of its chord (all but the last two). */
function isSShape(p) {
  const first = p[0];
  const last = p[p.length - 1];
  const dx = first[0] - last[0];
  const dy = first[1] - last[1];
  const eps = ON_CHORD * (dx * dx + dy * dy);
  let pos = false;
  let neg = false;
  for (let i = 0; i < p.length - 2; i++) {
    const cross = (p[i][1] - last[1]) * dx - (p[i][0] - last[0]) * dy;
    if (cross > eps) pos = true;
    if (cross < -eps) neg = true;
  }
  return pos && neg;
}

/** numpy's argmax over row[from..to] (inclusive): the first maximum. */
function argmaxRange(row, from, to) {
  let best = from;
  for (let j = from + 1; j <= to; j++) if (row[j] > row[best]) best = j;
  return best;
}

/** aasce_rule: [a1, a2, a3] (a2, a3 null for an S shape without the film height) and their pairs. */
function aasceRule(vectors, centre, filmHeight) {
  const a = aasceMatrix(vectors);
  const last = N_VERT - 1;
  const maxt = a.map((row) => row[argmaxRange(row, 0, last)]);
  const upper = argmaxRange(maxt, 0, last);
  const lower = argmaxRange(a[upper], 0, last);
  const a1 = a[upper][lower];
  if (!isSShape(centre)) return [[a1, a[0][upper], a[lower][last]], [[upper, lower], [0, upper], [lower, last]]];
  if (filmHeight === null) return [[a1, null, null], [[upper, lower], null, null]];
  const k = argmaxRange(a[upper], 0, upper);
  const a2 = a[upper][k];
  if (centre[2 * upper + 1][1] + centre[2 * lower + 1][1] < filmHeight) {
    const m = argmaxRange(a[lower], lower, last);
    return [[a1, a2, a[lower][m]], [[upper, lower], [k, upper], [lower, m]]];
  }
  const m = argmaxRange(a[k], 0, k);
  return [[a1, a2, a[k][m]], [[upper, lower], [k, upper], [m, k]]];
}

/** ap_angles' _aasce: the three angles over raw (tilts null) or smoothed mid-lines. */
function aasceAngles(c, ok, imageSize, tilts) {
  if (!ok.every(Boolean)) {
    const why = `${names(ok.flatMap((v, i) => (v ? [] : [i])))} not visible (the AASCE angles need T1-L5)`;
    return Object.fromEntries(AASCE_ANGLES.map((n) => [n, angle(n, null, { reason: why })]));
  }
  const vectors = tilts ? tiltVectors(tilts) : midlineVectors(c);
  const [values, pairs] = aasceRule(vectors, centreLine(c), imageSize ? imageSize[0] : null);
  const out = {};
  AASCE_ANGLES.forEach((n, q) => {
    if (values[q] === null || pairs[q] === null) {
      out[n] = angle(n, null, { reason: "S-shaped spine and no film height (the AASCE upper-half test)" });
      return;
    }
    const [i, j] = pairs[q];
    out[n] = angle(n, values[q], {
      lines: [[i, "mid"], [j, "mid"]],
      ...(tilts ? { orientations: [tilts[i], tilts[j]] } : {}),
    });
  });
  return out;
}

/** ap_angles: cobb_deg, the PT, MT, TL/L Cobb angles and the AASCE three ({name: {value, reason, lines, note}}). */
export function apAngles(points, imageSize, readout = "endplates") {
  const sides = readout === "midlines" ? ["mid", "mid"] : ["superior", "inferior"];
  let tilts = null; // the smoothed mid-lines' orientations, for drawing them
  const lined = (upper, lower, extra = {}) => ({
    lines: [[upper, sides[0]], [lower, sides[1]]],
    ...(tilts ? { orientations: [tilts[upper], tilts[lower]] } : {}),
    ...extra,
  });
  const c = asCorners(points);
  const ok = visibleVertebrae(c, imageSize);
  const run = longestRun(ok);
  if (run === null || run[1] - run[0] + 1 < MIN_RUN) {
    const why = `fewer than ${MIN_RUN} consecutive vertebrae visible`;
    return Object.fromEntries(AP_ANGLES.map((n) => [n, angle(n, null, { reason: why })]));
  }
  const [first, last] = run;
  const safe = c.map((q) => q.map((p) => p.map((v) => (Number.isFinite(v) ? v : 0.0))));
  if (readout === "midlines") tilts = smoothedTilts(midlineTilts(safe), first, last);
  const curves = coronalCurves(safe, first, last, readout);
  const out = {};
  if (ok.every(Boolean)) {
    const [value, i, j] = maxCobb(c, readout, first, last);
    out.cobb_deg = angle("cobb_deg", value, lined(i, j));
  } else {
    const missing = names(ok.flatMap((v, i) => (v ? [] : [i])));
    const note = `largest over ${LEVELS[first]}-${LEVELS[last]} only (${missing} not visible): a lower bound`;
    if (curves.length) {
      const best = maxBy(curves);
      out.cobb_deg = angle("cobb_deg", best.angle, lined(best.upper, best.lower, { note }));
    } else {
      out.cobb_deg = angle("cobb_deg", 0.0, { note });
    }
  }
  for (const [name, lo, hi] of REGIONS) {
    const levels = Array.from({ length: hi - lo + 1 }, (_, n) => lo + n);
    if (!levels.every((v) => ok[v]) || lo < first || hi > last) {
      const gone = names(levels.filter((v) => !ok[v] || v < first || v > last));
      out[name] = angle(name, null, { reason: `${gone} not visible` });
      continue;
    }
    const mine = curves.filter((k) => regionOf(k.apex) === name);
    if (!mine.length) {
      out[name] = angle(name, 0.0, { note: `no curve with its apex in ${LEVELS[lo]}-${LEVELS[hi]}` });
      continue;
    }
    const best = maxBy(mine);
    out[name] = angle(name, best.angle, lined(best.upper, best.lower));
  }
  Object.assign(out, aasceAngles(c, ok, imageSize, tilts));
  return Object.fromEntries(AP_ANGLES.map((n) => [n, out[n]]));
}

/**
 * angle_defs.endplate_angle: an "endplates" angle from its definition ({name, lines: [[level,
 * side], [level, side]]}): both endplates' points known and on the film, else null with the
 * missing levels named. The built-in lateral two are such angles (lateral_angles), and so is any
 * angle a plugin adds: the page measures it from the model's document, with no JS edit.
 */
export function endplateAngle(definition, corners, ok, sacrum, imageSize) {
  let sOk = sacrum !== null && sacrum.every(finite);
  if (sOk && imageSize) sOk = sacrum.every((p) => inside(p, imageSize));
  const ends = [];
  const gone = [];
  for (const [level, side] of definition.lines) {
    if (level === "S1") {
      if (sOk) ends.push([sacrum[0], sacrum[1]]);
      else gone.push(level);
      continue;
    }
    const v = LEVELS.indexOf(level);
    if (!ok[v]) gone.push(level);
    else ends.push(side === "superior" ? [corners[v][0], corners[v][1]] : [corners[v][2], corners[v][3]]);
  }
  const name = definition.name;
  if (gone.length) return angle(name, null, { reason: `${[...new Set(gone)].join(", ")} not visible` });
  const value = lineAngleBetween(edgeAngle(...ends[0]), edgeAngle(...ends[1]));
  const lines = definition.lines.map(([level, side]) => [level === "S1" ? level : LEVELS.indexOf(level), side]);
  return angle(name, value, { lines });
}

/** lateral_angles: T4-T12 thoracic kyphosis and L1-S1 lumbar lordosis (the built-in lateral angles). */
export function lateralAngles(points, sacrum, imageSize) {
  return extraAngles({}, LATERAL_ANGLES.map((n) => BUILT_IN[n]), points, sacrum, imageSize);
}

/** read_landmarks' extra: the "endplates" angles of definitions not in angles yet, measured. */
export function extraAngles(angles, definitions, points, sacrum, imageSize) {
  const c = asCorners(points);
  const ok = visibleVertebrae(c, imageSize);
  const out = { ...angles };
  for (const d of definitions)
    if (!(d.name in out) && d.method === "endplates") out[d.name] = endplateAngle(d, c, ok, sacrum, imageSize);
  return out;
}

/** thresholds.lateral_finding: {label, finding, kyphosis, lordosis} ("hyper" | "hypo" | "normal"). */
function curveState(value, definition) {
  return crosses(value, limitOf(definition, "hyper")) ? "hyper" : crosses(value, limitOf(definition, "hypo")) ? "hypo" : "normal";
}

export function lateralFinding(kyphosis, lordosis, defs = BUILT_IN) {
  const k = curveState(kyphosis, defs.thoracic_kyphosis_deg);
  const lo = curveState(lordosis, defs.lumbar_lordosis_deg);
  const parts = [[k, "kyphosis"], [lo, "lordosis"]].filter(([s]) => s !== "normal").map(([s, c]) => `${s}${c}`);
  const named = parts.join(" + ");
  let label = null;
  let finding = named;
  if (!parts.length) [label, finding] = ["healthy", "normal sagittal alignment"];
  else if (named === "hyperkyphosis") label = "kyphosis";
  else if (named === "hyperlordosis") label = "lordosis";
  else if (k !== "hyper" && lo !== "hyper") finding = `flat back: ${named}`;
  else if (k === "hyper" && lo === "hyper") finding = `kyphosis-lordosis posture: ${named}`;
  return { label, finding, kyphosis: k, lordosis: lo };
}

function where(state, definition) {
  const low = limitOf(definition, "hypo").limit;
  const high = limitOf(definition, "hyper").limit;
  if (state === "hyper") return `above ${high}`;
  if (state === "hypo") return `below ${low}`;
  return `normal ${low}-${high}`;
}

/** LateralFinding.describe: the reason shown when a lateral film has no label. */
function describeFinding(f, kyphosis, lordosis, defs) {
  return (
    `${f.finding} (thoracic kyphosis ${fixed1(kyphosis)} deg: ${where(f.kyphosis, defs.thoracic_kyphosis_deg)}; ` +
    `lumbar lordosis ${fixed1(lordosis)} deg: ${where(f.lordosis, defs.lumbar_lordosis_deg)})`
  );
}

/** Python's f"{v:.1f}": toFixed rounds the exact binary value too, but ties (x.25, x.75, the only
 * exact ones) go up there and to even in Python. */
function fixed1(v) {
  const quarters = v * 4; // exact: a power of two
  if (Number.isInteger(quarters) && quarters % 2 !== 0) return ((2 * Math.round((v * 10) / 2)) / 10).toFixed(1);
  return v.toFixed(1);
}

/**
 * label_from_angles: [label, reason] (label null with a reason when the angles imply none), by
 * the thresholds of defs (name -> definition: definitionsOf(a model's document), else the built-ins).
 */
export function labelFromAngles(view, angles, defs = BUILT_IN) {
  if (view === "ap") {
    const cobb = angles.cobb_deg;
    if (!cobb || cobb.value === null) return [null, `no Cobb angle: ${cobb && cobb.reason ? cobb.reason : "not measured"}`];
    const label = crosses(cobb.value, limitOf(defs.cobb_deg, "scoliosis")) ? "scoliosis" : "healthy";
    if (cobb.note && label === "healthy") return [label, `healthy over the visible vertebrae only: ${cobb.note}`];
    return [label, null];
  }
  if (view === "lateral") {
    const k = angles.thoracic_kyphosis_deg;
    const lo = angles.lumbar_lordosis_deg;
    const missing = [k, lo].filter((a) => a && a.value === null).map((a) => a.name);
    if (!k || !lo || k.value === null || lo.value === null) return [null, `not measured: ${missing.join(", ") || "angles absent"}`];
    const found = lateralFinding(k.value, lo.value, defs);
    if (found.label === null) return [null, describeFinding(found, k.value, lo.value, defs)];
    return [found.label, null];
  }
  throw new Error(`unknown view ${view}`);
}

// --- plausibility (spinescan/radiograph/plausibility.py) ----------------------------------------------

const COLLAPSE_FRACTION = READOUT.plausibility.collapse_fraction;
const COLLAPSED_SEVERE = READOUT.plausibility.collapsed_severe;
const SPACING_RANGE = READOUT.plausibility.spacing_range;
const SPACING_TO_WIDTH = READOUT.plausibility.spacing_to_width;
const MAX_TILT_STEP_DEG = READOUT.plausibility.max_tilt_step_deg;
const OUTSIDE_MARGIN = READOUT.plausibility.outside_margin;

function medianOf(values) {
  const v = [...values].sort((a, b) => a - b);
  const n = v.length;
  return n % 2 ? v[(n - 1) / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

const dist = (p, q) => Math.hypot(q[0] - p[0], q[1] - p[1]);

function tiltOf(a, b) {
  const deg = Math.atan2(b[1] - a[1], b[0] - a[0]) * (180.0 / Math.PI);
  return pyMod(deg + 90.0, 180.0) - 90.0;
}

/**
 * assess_landmarks: {severity: "ok" | "warning" | "severe", reasons: [...]} for 68 corners (null
 * where not visible), the two S1 points (or null) and the film's [height, width].
 */
export function assessLandmarks(points, sacrum, [h, w]) {
  const c = asCorners(points);
  const seen = [];
  for (let k = 0; k < N_VERT; k++) if (c[k].every(finite)) seen.push(k);
  const severe = [];
  const mild = [];
  const widths = {};
  let collapsed = 0;
  for (const k of seen) {
    const q = c[k];
    const width = Math.max(dist(q[0], q[1]), dist(q[2], q[3]));
    widths[k] = width;
    let closest = Infinity;
    for (let i = 0; i < 4; i++) for (let j = i + 1; j < 4; j++) closest = Math.min(closest, dist(q[i], q[j]));
    if (width <= 0.0 || closest < COLLAPSE_FRACTION * width) collapsed += 1;
  }
  if (collapsed) {
    const text = `${collapsed} of ${seen.length} vertebrae collapsed (two corners closer than a tenth of the width)`;
    (collapsed >= COLLAPSED_SEVERE ? severe : mild).push(text);
  }
  const centres = {};
  for (const k of seen) {
    const q = c[k];
    centres[k] = [(q[0][0] + q[1][0] + q[2][0] + q[3][0]) / 4, (q[0][1] + q[1][1] + q[2][1] + q[3][1]) / 4];
  }
  const pairs = seen.filter((k) => centres[k + 1] !== undefined).map((k) => [k, k + 1]);
  const disorder = pairs.filter(([a, b]) => centres[b][1] <= centres[a][1]).length;
  if (disorder) (disorder >= 2 ? severe : mild).push(`${disorder} neighbouring vertebrae out of order top to bottom`);
  const gaps = pairs.map(([a, b]) => dist(centres[a], centres[b]));
  if (gaps.length >= 3) {
    const median = medianOf(gaps);
    const odd = gaps.filter((g) => g < SPACING_RANGE[0] * median || g > SPACING_RANGE[1] * median).length;
    if (odd) {
      const text = `${odd} of ${gaps.length} vertebra spacings far from the others (under half or over twice)`;
      (odd >= 3 ? severe : mild).push(text);
    }
    const midWidth = medianOf(seen.map((k) => widths[k]));
    if (median < SPACING_TO_WIDTH[0] * midWidth || median > SPACING_TO_WIDTH[1] * midWidth)
      severe.push("vertebra spacing far from anatomy for their width");
  }
  const tilts = {};
  for (const k of seen) {
    const q = c[k];
    tilts[k] = tiltOf(
      [(q[0][0] + q[2][0]) / 2.0, (q[0][1] + q[2][1]) / 2.0],
      [(q[1][0] + q[3][0]) / 2.0, (q[1][1] + q[3][1]) / 2.0],
    );
  }
  let jumps = 0;
  for (const [a, b] of pairs) {
    const step = Math.abs(tilts[b] - tilts[a]);
    if (Math.min(step, 180.0 - step) > MAX_TILT_STEP_DEG) jumps += 1;
  }
  if (jumps) (jumps >= 3 ? severe : mild).push(`${jumps} neighbouring vertebrae tilted more than 30 deg apart`);
  const all = [...points.slice(0, N_LANDMARKS), ...(sacrum || [])].filter(finite);
  const mx = OUTSIDE_MARGIN * w;
  const my = OUTSIDE_MARGIN * h;
  const off = all.filter(([x, y]) => x < -mx || x > w + mx || y < -my || y > h + my).length;
  if (off) (4 * off >= all.length ? severe : mild).push(`${off} of ${all.length} points off the film`);
  if (severe.length) return { severity: "severe", reasons: [...severe, ...mild] };
  if (mild.length) return { severity: "warning", reasons: mild };
  return { severity: "ok", reasons: [] };
}

/** Plausibility.reason(): one line naming every reason. */
export function plausibilityReason(p) {
  return p.reasons.length ? `implausible landmarks: ${p.reasons.join("; ")}` : "";
}

/**
 * read_landmarks + OnnxModel.result: one film's landmark reading, as spinescan-predict --json
 * reports it (values unrounded; the CLI rounds to 0.01): {label, label_reason, measurements,
 * reasons, notes, landmarks (70 points or null), angles (with the endplates they were measured
 * between, for drawing)}. doc: the model's document (modeldoc.js): its view, its angles in
 * report order, their definitions (an endplates angle that is not built in is measured from it).
 */
export function readLandmarks(data, dims, geometry, doc) {
  const view = doc.view;
  const [, k, d] = dims;
  const { points, visibility } = decodePoints(data, k, d, geometry);
  const corners = points.slice(0, N_LANDMARKS);
  const sacrum = points.slice(N_LANDMARKS);
  const size = geometry.film_hw;
  let angles =
    view === "ap" ? apAngles(corners, size, PREDICTION_READOUT) : lateralAngles(corners, sacrum, size);
  angles = extraAngles(angles, doc.measurements || [], corners, sacrum, size);
  const defs = definitionsOf(doc);
  const plausibility = assessLandmarks(corners, sacrum, size);
  let label;
  let labelReason;
  if (plausibility.severity === "severe") {
    // a severe flag: no angle and no label, each with the reasons (read_landmarks)
    const why = plausibilityReason(plausibility);
    angles = Object.fromEntries(
      Object.keys(angles).map((n) => [n, { name: n, value: null, reason: why, lines: [], note: null }]),
    );
    [label, labelReason] = [null, why];
  } else {
    [label, labelReason] = labelFromAngles(view, angles, defs);
  }
  const wanted = (doc.measurements || []).map((m) => m.name);
  const names = wanted.length ? wanted : Object.keys(angles);
  const measurements = {};
  const reasons = {};
  const notes = {};
  for (const n of names) {
    const a = angles[n];
    measurements[n] = a ? a.value : null;
    if (!a || a.value === null) reasons[n] = a ? a.reason : "not measured by this page";
    if (a && a.note) notes[n] = a.note;
  }
  return { label, label_reason: labelReason, measurements, reasons, notes, landmarks: points, visibility, angles, plausibility };
}
