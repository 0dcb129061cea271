// Port of spinescan/radiograph/preprocess.py (and the geometry of spinescan/edge/overlay.py).
//
// The page must feed a model exactly the tensor spinescan-predict feeds it, so every step below
// mirrors the Python, including its arithmetic: OpenCV's fixed-point grey conversion, float32
// intensity scaling, Python's round-half-to-even, the spine-column search with OpenCV's Gaussian
// kernel and reflect-101 border, and OpenCV's INTER_AREA resize (area averaging when shrinking,
// its "area" bilinear variant when enlarging). tests/test_web.py checks the tensors and the
// probabilities against the Python on real films and phantoms.

const f32 = Math.fround;

/** Python's round(): half to even. */
export function pyRound(v) {
  const r = Math.round(v);
  if (Math.abs(v - Math.trunc(v)) === 0.5) return 2 * Math.round(v / 2);
  return r;
}

function floorDiv(a, b) {
  return Math.floor(a / b);
}

/** The grey image of each decoded image, made once (the display and every model share it). */
const greyCache = new WeakMap();

/**
 * A decoded image: {width, height, channels, data} with data a Uint8Array or Uint16Array in
 * RGB(A) / grey(+alpha) order. Returns {width, height, data, bits} with data the grey values as
 * integers (the same typed array as the input for a one-channel image: no copy), like
 * cv2.cvtColor(..., BGR2GRAY / BGRA2GRAY) on the OpenCV (BGR) decode of the same file.
 * Grey stays integer so that nothing at full resolution is ever held as float32: a 100 Mpx film
 * would need 400 MB per float copy (issue #26's page-memory goal); the float values a model sees
 * come from a per-level table (scaleIntensity) read through a window (cropView, resizeArea).
 */
export function toGrey(img) {
  const cached = greyCache.get(img);
  if (cached) return cached;
  const { width, height, channels, data } = img;
  const n = width * height;
  const bits = data instanceof Uint16Array ? 16 : 8;
  let out;
  if (channels === 1) {
    out = data;
  } else if (channels === 2) {
    out = new data.constructor(n);
    for (let i = 0; i < n; i++) out[i] = data[i * 2];
  } else if (channels === 3 || channels === 4) {
    // OpenCV 4.x RGB2Gray, 8- and 16-bit alike: (B*3735 + G*19235 + R*9798 + 2^14) >> 15
    // (checked bit for bit against cv2.cvtColor on every 8-bit and 16-bit channel value).
    out = new data.constructor(n);
    for (let i = 0; i < n; i++) {
      const o = i * channels;
      out[i] = (data[o] * 9798 + data[o + 1] * 19235 + data[o + 2] * 3735 + 16384) >>> 15;
    }
  } else {
    throw new Error(`unsupported channel count ${channels}`);
  }
  const grey = { width, height, data: out, bits };
  greyCache.set(img, grey);
  return grey;
}

/** The value at rank k (0-based) of the integers counted in `hist`, as a sorted copy would hold it. */
function rankValue(hist, k) {
  let seen = 0;
  for (let v = 0; v < hist.length; v++) {
    seen += hist[v];
    if (seen > k) return v;
  }
  return hist.length - 1;
}

function percentile(hist, n, p) {
  // numpy.percentile, method "linear", on the sorted values (read from the histogram: the grey
  // values are integers, so counting them is exact and needs no sorted float copy).
  const idx = (p / 100) * (n - 1);
  const lo = Math.floor(idx);
  const hi = Math.min(lo + 1, n - 1);
  const t = idx - lo;
  const a = rankValue(hist, lo);
  const b = rankValue(hist, hi);
  const d = b - a;
  return f32(t >= 0.5 ? b - d * (1 - t) : a + d * t);
}

/**
 * scale_intensity: grey -> float32 in [0, 1], as a window over the grey integers and a table
 * `lut` of the float32 value of each grey level ({width, height, data, lut, offset, stride}):
 * pixel (x, y) is lut[data[offset + y * stride + x]], bit for bit the value the Python computes
 * for it, and no full-size float copy exists.
 */
export function scaleIntensity(grey, prep) {
  const x = grey.data;
  const n = x.length;
  const levels = grey.bits === 16 ? 65536 : 256;
  const lut = new Float32Array(levels);
  const view = { width: grey.width, height: grey.height, data: x, lut, offset: 0, stride: grey.width };
  if (prep.intensity === "divide255") {
    const d = grey.bits === 16 ? 65535 : 255;
    for (let v = 0; v < levels; v++) lut[v] = f32(v / d);
    return view;
  }
  let lo;
  let hi;
  if (prep.intensity === "percentile") {
    const hist = new Float64Array(levels);
    for (let i = 0; i < n; i++) hist[x[i]]++;
    lo = percentile(hist, n, prep.percentiles[0]);
    hi = percentile(hist, n, prep.percentiles[1]);
  } else {
    lo = Infinity;
    hi = -Infinity;
    for (let i = 0; i < n; i++) {
      if (x[i] < lo) lo = x[i];
      if (x[i] > hi) hi = x[i];
    }
    lo = f32(lo);
    hi = f32(hi);
  }
  const range = f32(hi - lo);
  if (range < 1e-6) return view; // all zeros
  for (let v = 0; v < levels; v++) {
    const s = f32(f32(v - lo) / range);
    lut[v] = s < 0 ? 0 : s > 1 ? 1 : s;
  }
  return view;
}

function gaussianKernel(k) {
  // cv2.getGaussianKernel(k, sigma) with the sigma GaussianBlur derives from ksize when sigma = 0.
  const sigma = ((k - 1) * 0.5 - 1) * 0.3 + 0.8;
  const scale2X = -0.5 / (sigma * sigma);
  const kernel = new Float64Array(k);
  let sum = 0;
  for (let i = 0; i < k; i++) {
    const x = i - (k - 1) * 0.5;
    kernel[i] = f32(Math.exp(scale2X * x * x));
    sum += kernel[i];
  }
  for (let i = 0; i < k; i++) kernel[i] = f32(kernel[i] / sum);
  return kernel;
}

function reflect101(i, n) {
  if (n === 1) return 0;
  while (i < 0 || i >= n) {
    if (i < 0) i = -i;
    if (i >= n) i = 2 * n - 2 - i;
  }
  return i;
}

/** spine_column: the brightest wide vertical band in the central half. */
export function spineColumn(img) {
  const { width: w, height: h, data, lut, offset, stride } = img;
  const r0 = floorDiv(h, 4);
  const r1 = h - floorDiv(h, 4);
  const profile = new Float64Array(w);
  for (let y = r0; y < r1; y++) {
    const row = offset + y * stride;
    for (let x = 0; x < w; x++) profile[x] += lut[data[row + x]];
  }
  const rows = r1 - r0;
  for (let x = 0; x < w; x++) profile[x] = f32(profile[x] / rows);
  const k = Math.max(3, floorDiv(w, 8) | 1);
  const kernel = gaussianKernel(k);
  const half = (k - 1) / 2;
  const lo = floorDiv(w, 4);
  const hi = w - floorDiv(w, 4);
  if (hi <= lo) return floorDiv(w, 2);
  let best = -Infinity;
  let arg = lo;
  for (let x = lo; x < hi; x++) {
    let s = 0;
    for (let j = 0; j < k; j++) s += kernel[j] * profile[reflect101(x + j - half, w)];
    s = f32(s);
    if (s > best) {
      best = s;
      arg = x;
    }
  }
  return arg;
}

/** The window crop_to_aspect keeps: [top, left, height, width]. */
export function cropWindow(img, aspect) {
  const { width: w, height: h } = img;
  if (w > h * aspect) {
    const cw = Math.max(1, pyRound(h * aspect));
    const left = Math.min(Math.max(spineColumn(img) - floorDiv(cw, 2), 0), w - cw);
    return [0, left, h, cw];
  }
  const ch = Math.max(1, pyRound(w / aspect));
  return [floorDiv(h - ch, 2), 0, ch, w];
}

/** The window [top, left, height, width] of a scaled view, as a view (nothing is copied). */
function cropView(img, [top, left, ch, cw]) {
  return { ...img, width: cw, height: ch, offset: img.offset + top * img.stride + left };
}

function areaTab(ssize, dsize, scale) {
  // OpenCV computeResizeAreaTab: per destination pixel, (source index, weight) pairs.
  const tab = [];
  for (let dx = 0; dx < dsize; dx++) {
    const fsx1 = dx * scale;
    const fsx2 = fsx1 + scale;
    const cellWidth = Math.min(scale, ssize - fsx1);
    let sx1 = Math.ceil(fsx1);
    let sx2 = Math.floor(fsx2);
    sx2 = Math.min(sx2, ssize - 1);
    sx1 = Math.min(sx1, sx2);
    const pairs = [];
    if (sx1 - fsx1 > 1e-3) pairs.push([sx1 - 1, f32((sx1 - fsx1) / cellWidth)]);
    for (let sx = sx1; sx < sx2; sx++) pairs.push([sx, f32(1.0 / cellWidth)]);
    if (fsx2 - sx2 > 1e-3) pairs.push([sx2, f32(Math.min(Math.min(fsx2 - sx2, 1), cellWidth) / cellWidth)]);
    tab.push(pairs);
  }
  return tab;
}

function linearAreaTab(ssize, dsize, scale, invScale) {
  // OpenCV's INTER_AREA when enlarging: bilinear with "area" coefficients.
  const tab = [];
  for (let dx = 0; dx < dsize; dx++) {
    let sx = Math.floor(dx * scale);
    let fx = f32(dx + 1 - (sx + 1) * invScale);
    fx = fx <= 0 ? 0 : fx - Math.floor(fx);
    if (sx < 0) {
      fx = 0;
      sx = 0;
    }
    if (sx >= ssize - 1) tab.push([[ssize - 1, 1]]);
    else tab.push([[sx, f32(1 - fx)], [sx + 1, fx]]);
  }
  return tab;
}

/** cv2.resize(x, (dw, dh), interpolation=cv2.INTER_AREA) for a float32 grey image, given as a
 * scaled view (scaleIntensity, cropView): only rows of the output size are ever allocated. */
export function resizeArea(img, dw, dh) {
  const { width: sw, height: sh, data, lut, offset, stride } = img;
  const invX = dw / sw;
  const invY = dh / sh;
  const scaleX = 1 / invX;
  const scaleY = 1 / invY;
  const area = scaleX >= 1 && scaleY >= 1;
  const xtab = area ? areaTab(sw, dw, scaleX) : linearAreaTab(sw, dw, scaleX, invX);
  const ytab = area ? areaTab(sh, dh, scaleY) : linearAreaTab(sh, dh, scaleY, invY);
  const out = new Float32Array(dw * dh);
  const row = new Float64Array(dw);
  const cache = new Map();
  const hrow = (sy) => {
    let r = cache.get(sy);
    if (r) return r;
    r = new Float64Array(dw);
    const base = offset + sy * stride;
    for (let dx = 0; dx < dw; dx++) {
      let s = 0;
      for (const [sx, a] of xtab[dx]) s += lut[data[base + sx]] * a;
      r[dx] = s;
    }
    cache.set(sy, r);
    return r;
  };
  for (let dy = 0; dy < dh; dy++) {
    row.fill(0);
    for (const [sy, b] of ytab[dy]) {
      const r = hrow(sy);
      for (let dx = 0; dx < dw; dx++) row[dx] += b * r[dx];
    }
    for (let dx = 0; dx < dw; dx++) out[dy * dw + dx] = f32(row[dx]);
    // Rows above the current band are not needed again.
    for (const key of cache.keys()) if (key < ytab[dy][0][0]) cache.delete(key);
  }
  return { width: dw, height: dh, data: out };
}

/**
 * preprocess(image, input_size, prep) -> {tensor: Float32Array (H*W*C, NHWC order), geometry}.
 * geometry = {film_hw, crop, box, input_hw} exactly as spinescan.edge.overlay.geometry (crop and box
 * are the Placement of spinescan.radiograph.preprocess.placement: landmarks map back through them).
 */
export function preprocess(decoded, inputSize, prep) {
  const [H, W, C] = inputSize;
  const grey = toGrey(decoded);
  let x = scaleIntensity(grey, prep);
  let win = [0, 0, x.height, x.width];
  // spine_crop always cuts the film to the aspect; spine_band cuts only the columns of a film wider
  // than it and never its rows (a landmark model must keep the top and bottom vertebrae).
  if (prep.resize === "spine_crop" || (prep.resize === "spine_band" && x.width > x.height * prep.crop_aspect)) {
    win = cropWindow(x, prep.crop_aspect);
    x = cropView(x, win);
  }
  const h = x.height;
  const w = x.width;
  const scale = Math.min(H / h, W / w);
  const nh = Math.max(1, pyRound(h * scale));
  const nw = Math.max(1, pyRound(w * scale));
  const resized = resizeArea(x, nw, nh);
  const plane = new Float32Array(H * W).fill(f32(prep.pad_value));
  const top = floorDiv(H - nh, 2);
  const left = floorDiv(W - nw, 2);
  for (let y = 0; y < nh; y++) plane.set(resized.data.subarray(y * nw, (y + 1) * nw), (top + y) * W + left);
  for (let i = 0; i < plane.length; i++) plane[i] = plane[i] < 0 ? 0 : plane[i] > 1 ? 1 : plane[i];
  let tensor = plane;
  if (C > 1) {
    tensor = new Float32Array(H * W * C);
    for (let i = 0; i < H * W; i++) for (let c = 0; c < C; c++) tensor[i * C + c] = plane[i];
  }
  const geometry = {
    film_hw: [decoded.height, decoded.width],
    crop: win,
    box: [top, left, nh, nw],
    input_hw: [H, W],
  };
  return { tensor, geometry };
}

/** Grad-CAM display convention (overlay.normalise_cam): ReLU, divided by the maximum. */
export function normaliseCam(values) {
  let peak = 0;
  for (const v of values) if (v > peak) peak = v;
  return Float32Array.from(values, (v) => (peak > 0 ? Math.max(v, 0) / peak : 0));
}
