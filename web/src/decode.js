// Decode a film the way spinescan/radiograph/imageio.py does, in the browser, never sending it anywhere.
//
// The reading contract is Python's read_image (spinescan/radiograph/imageio.py, formats.py, limits.py),
// in the same order and with the same reasons: the file size before the file is read (checkHead),
// every size a header declares before anything is decoded (the PNG IHDR, the JPEG frame header
// found by walking the markers), against the same pixel and decoded-bytes limits, completeness
// (IEND / an end-of-image marker reached by walking every segment and scan), then the pixels (a
// side under the minimum, a constant image). The limits come from ./limits.js, which
// `spinescan export` generates from spinescan/radiograph/limits.py: no number is copied here.
//
// PNG is decoded here (chunks with their CRCs, zlib streamed through the browser's
// DecompressionStream and stopped at the size the header implies, the five filters, Adam7, 1-16
// bit, palette): it is lossless, so the result is OpenCV's bit for bit, 16-bit films included (a
// canvas would cut them to 8 bits and premultiply alpha). JPEG goes through the browser's own
// decoder (libjpeg-turbo in Chromium, like OpenCV) read back without colour management, a strip
// at a time; tests/test_web.py measures that the probabilities still match spinescan-predict.
// Every failure is an Error whose message the page shows as is: "<file>: <reason>".
import { LIMITS } from "./limits.js";

const PNG_MAGIC = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
/** Bytes read before the format is known (formats.HEAD: DICOM's magic sits at offset 128). */
export const HEAD = 132;
export { LIMITS };

export function sniff(bytes) {
  if (bytes.length >= 8 && PNG_MAGIC.every((b, i) => bytes[i] === b)) return "png";
  if (bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return "jpeg";
  if (bytes.length >= 26 && bytes[0] === 0x42 && bytes[1] === 0x4d) return "bmp";
  if (bytes.length >= 4 && ((bytes[0] === 0x49 && bytes[1] === 0x49) || (bytes[0] === 0x4d && bytes[1] === 0x4d))) return "tiff";
  if (bytes.length >= 132 && String.fromCharCode(...bytes.subarray(128, 132)) === "DICM") return "dicom";
  return null;
}

/** limits.human_bytes. */
export function humanBytes(n) {
  return n >= 2 ** 30 ? `${(n / 2 ** 30).toFixed(1)} GB` : `${(n / 2 ** 20).toFixed(1)} MB`;
}

const count = (n) => n.toLocaleString("en");

/**
 * What can be decided from the first HEAD bytes and the file's size, before the rest is read
 * (files.read_file_bytes): empty, not an image, a format this page does not read, over the file
 * size limit. Returns the format.
 */
export function checkHead(head, size, name, limits = LIMITS) {
  if (!size) throw new Error(`${name}: empty file (0 bytes)`);
  const format = sniff(head);
  if (!format) throw new Error(`${name}: not a supported image (this page reads PNG or JPEG)`);
  if (size > limits.max_file_bytes)
    throw new Error(
      `${name}: file is ${humanBytes(size)}, over the ${humanBytes(limits.max_file_bytes)} limit ` +
        "(set SPINESCAN_MAX_FILE_BYTES and export again to raise it)",
    );
  if (format !== "png" && format !== "jpeg")
    throw new Error(`${name}: ${format.toUpperCase()} films are not read by this page (PNG or JPEG); use spinescan-predict`);
  return format;
}

/** limits.check_header: a declared size that is corrupt, or over the pixel or decoded-bytes limit. */
export function checkHeader({ width, height, channels, bytesPerSample }, name, limits = LIMITS) {
  if (width <= 0 || height <= 0) throw new Error(`${name}: corrupt header (size ${width}x${height})`);
  const pixels = width * height;
  if (pixels > limits.max_pixels)
    throw new Error(
      `${name}: ${width}x${height} = ${count(pixels)} pixels exceeds the limit of ${count(limits.max_pixels)} ` +
        "(set SPINESCAN_MAX_PIXELS and export again to raise it)",
    );
  const decoded = pixels * channels * bytesPerSample;
  if (decoded > limits.max_image_bytes)
    throw new Error(
      `${name}: ${width}x${height} x ${channels} channel(s) x ${bytesPerSample} byte(s) = ${humanBytes(decoded)} ` +
        `decoded, over the ${humanBytes(limits.max_image_bytes)} limit (set SPINESCAN_MAX_IMAGE_BYTES and export again to raise it)`,
    );
}

/** imageio.check_pixels for integer images: a side under minSide, one constant value (alpha aside). */
export function checkPixels({ width, height, channels, data }, name, minSide) {
  if (minSide && Math.min(width, height) < minSide)
    throw new Error(`${name}: ${width}x${height} is smaller than the minimum of ${minSide} px on a side`);
  const colour = channels === 2 || channels === 4 ? channels - 1 : channels;
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < data.length; i += channels) {
    for (let c = 0; c < colour; c++) {
      const v = data[i + c];
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    if (lo !== hi) return;
  }
  if (data.length) throw new Error(`${name}: constant image (every pixel is ${lo}); nothing to classify`);
}

// --- PNG ---------------------------------------------------------------------------------------

const CRC_TABLE = (() => {
  const table = new Int32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c;
  }
  return table;
})();

function crc32(bytes) {
  let c = -1;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ -1) >>> 0;
}

// IHDR colour type -> channels as OpenCV decodes it unchanged (formats._PNG_CHANNELS).
const PNG_CHANNELS = { 0: 1, 2: 3, 3: 4, 4: 4, 6: 4 };

/**
 * The chunks of a PNG and its header, read as formats._png_header and check_complete read them:
 * IHDR first and only once (13 bytes, a valid depth and colour type), checked against the limits
 * before anything else, then an IEND reached by walking the length prefixes. A chunk whose CRC
 * does not match is refused when critical (libpng's rule; OpenCV gives up on it too; IEND aside,
 * which OpenCV never reads) and ignored when ancillary.
 */
export function readPng(bytes, name, limits = LIMITS) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (String.fromCharCode(...bytes.subarray(12, 16)) !== "IHDR") throw new Error(`${name}: corrupt png (no IHDR chunk)`);
  if (bytes.length < 33) throw new Error(`${name}: truncated png header`);
  const chunks = [];
  let ihdr = null;
  let ended = false;
  let cut = null;
  for (let pos = 8; pos + 8 <= bytes.length; ) {
    const length = view.getUint32(pos);
    const type = chunkName(bytes.subarray(pos + 4, pos + 8));
    const start = pos + 8;
    if (type === "IHDR") {
      if (ihdr) throw new Error(`${name}: corrupt png (more than one IHDR chunk)`);
      if (length !== 13) throw new Error(`${name}: corrupt png (IHDR of ${length} bytes)`);
      ihdr = {
        width: view.getUint32(start),
        height: view.getUint32(start + 4),
        bitDepth: bytes[start + 8],
        colorType: bytes[start + 9],
        interlace: bytes[start + 12],
      };
    }
    if (start + length + 4 > bytes.length) {
      cut = type;
      break;
    }
    chunks.push({
      type,
      body: bytes.subarray(start, start + length),
      typed: bytes.subarray(pos + 4, start + length), // what the CRC covers
      critical: (bytes[pos + 4] & 0x20) === 0, // upper-case first letter
      crc: view.getUint32(start + length),
    });
    if (type === "IEND") {
      ended = true;
      break;
    }
    pos = start + length + 4;
  }
  const { width, height, bitDepth, colorType } = ihdr;
  if (!(colorType in PNG_CHANNELS) || ![1, 2, 4, 8, 16].includes(bitDepth))
    throw new Error(`${name}: corrupt png (bit depth ${bitDepth}, colour type ${colorType})`);
  checkHeader({ width, height, channels: PNG_CHANNELS[colorType], bytesPerSample: bitDepth === 16 ? 2 : 1 }, name, limits);
  if (!ended) throw new Error(`${name}: truncated png (no IEND chunk${cut ? `; chunk ${cut} is cut off` : ""})`);
  const kept = [];
  for (const chunk of chunks) {
    const good = crc32(chunk.typed) === chunk.crc;
    // IEND's CRC aside: OpenCV stops at the last row and never checks it (found by tests/test_fuzz.py).
    if (!good && chunk.critical && chunk.type !== "IEND") throw new Error(`${name}: corrupt png (CRC error in the ${chunk.type} chunk)`);
    if (good) kept.push(chunk);
  }
  return { ihdr, chunks: kept };
}

/** A chunk type as text when it is four letters (as PNG requires), else its bytes in hex: a message
 * never carries control characters from a file. */
function chunkName(four) {
  const text = String.fromCharCode(...four);
  return /^[A-Za-z]{4}$/.test(text) ? text : `0x${Array.from(four, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}

/** The bytes of the filtered scanlines the header implies (all seven passes when interlaced). */
function rawSize({ width, height, bitDepth, colorType, interlace }) {
  const bitsPerPixel = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 }[colorType] * bitDepth;
  const line = (w) => 1 + Math.ceil((w * bitsPerPixel) / 8);
  if (interlace !== 1) return height * line(width);
  let total = 0;
  for (const [x0, y0, dx, dy] of ADAM7) {
    const sw = Math.ceil((width - x0) / dx);
    const sh = Math.ceil((height - y0) / dy);
    if (sw > 0 && sh > 0) total += sh * line(sw);
  }
  return total;
}

const ADAM7 = [
  [0, 0, 8, 8], [4, 0, 8, 8], [0, 4, 4, 8], [2, 0, 4, 4], [0, 2, 2, 4], [1, 0, 2, 2], [0, 1, 1, 2],
];
/** Compressed bytes handed to the inflater at a time: at deflate's 1032:1 at most ~17 MB out. */
const INFLATE_SLICE = 16384;

/**
 * Inflate the IDAT chunks into exactly `expected` bytes, streaming, and stop there: a small PNG
 * whose data inflates to gigabytes costs no more than its header declares (libpng, too, stops at
 * the last row and ignores the rest). Fewer bytes than expected are returned as they are (the
 * unfiltering then says the image data is truncated).
 */
async function inflateBounded(parts, expected) {
  const stream = new DecompressionStream("deflate");
  const writer = stream.writable.getWriter();
  const reader = stream.readable.getReader();
  const out = new Uint8Array(expected);
  let filled = 0;
  const writing = (async () => {
    for (const part of parts)
      for (let i = 0; i < part.length; i += INFLATE_SLICE) await writer.write(part.subarray(i, i + INFLATE_SLICE));
    await writer.close();
  })();
  writing.catch(() => {}); // a cancelled or corrupt stream: the reader's side reports it
  try {
    while (filled < expected) {
      const { value, done } = await reader.read();
      if (done) break;
      const n = Math.min(value.length, expected - filled);
      out.set(value.subarray(0, n), filled);
      filled += n;
    }
  } finally {
    reader.cancel().catch(() => {});
  }
  return filled < expected ? out.subarray(0, filled) : out;
}
function paeth(a, b, c) {
  const p = a + b - c;
  const pa = Math.abs(p - a);
  const pb = Math.abs(p - b);
  const pc = Math.abs(p - c);
  if (pa <= pb && pa <= pc) return a;
  return pb <= pc ? b : c;
}

function unfilter(raw, offset, width, height, bitsPerPixel, name) {
  // Unfilters the scanlines of one (sub)image in place (no second copy of the image data); each
  // line keeps its filter-type byte in front. Returns the offset after the last line.
  const bpp = Math.max(1, bitsPerPixel >> 3);
  const stride = Math.ceil((width * bitsPerPixel) / 8);
  let prev = -1; // offset of the previous line's first byte (-1: a line of zeros)
  for (let y = 0; y < height; y++) {
    if (offset + 1 + stride > raw.length)
      throw new Error(`${name}: corrupt png (not enough image data: the decompressed data ends early)`);
    const type = raw[offset];
    const cur = offset + 1;
    if (type > 4) throw new Error(`${name}: corrupt png (filter type ${type})`);
    for (let i = 0; i < stride; i++) {
      const a = i >= bpp ? raw[cur + i - bpp] : 0;
      const b = prev >= 0 ? raw[prev + i] : 0;
      const c = i >= bpp && prev >= 0 ? raw[prev + i - bpp] : 0;
      let v = raw[cur + i];
      if (type === 1) v += a;
      else if (type === 2) v += b;
      else if (type === 3) v += (a + b) >> 1;
      else if (type === 4) v += paeth(a, b, c);
      raw[cur + i] = v & 0xff;
    }
    prev = cur;
    offset += 1 + stride;
  }
  return offset;
}

function sample(raw, base, rowBytes, x, y, bitDepth, samplesPerPixel, s) {
  // One sample (channel s of pixel x of line y) of scanlines unfiltered in place, as an integer.
  const row = base + y * rowBytes + 1;
  const index = x * samplesPerPixel + s;
  if (bitDepth === 8) return raw[row + index];
  if (bitDepth === 16) return (raw[row + 2 * index] << 8) | raw[row + 2 * index + 1];
  const bitPos = index * bitDepth;
  const byte = raw[row + (bitPos >> 3)];
  return (byte >> (8 - bitDepth - (bitPos & 7))) & ((1 << bitDepth) - 1);
}

/** Decode PNG bytes to {width, height, channels, data (Uint8Array | Uint16Array)}, OpenCV's layout
 * (grey stays 1 channel; grey+alpha and palette/RGB with transparency become 4; 1/2/4-bit grey is
 * scaled to 8 bits), except that colour channels are RGB order (toGrey weighs them accordingly).
 * The header, the limits and completeness are checked (readPng) before anything is inflated. */
export async function decodePng(bytes, name, limits = LIMITS) {
  const { ihdr, chunks } = readPng(bytes, name, limits);
  const { width, height, bitDepth, colorType, interlace } = ihdr;
  const palette = chunks.find((c) => c.type === "PLTE")?.body || null;
  const trns = chunks.find((c) => c.type === "tRNS")?.body || null;
  if (colorType === 3 && !palette) throw new Error(`${name}: corrupt png (palette image without a palette)`);
  const samples = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 }[colorType];
  const idat = chunks.filter((c) => c.type === "IDAT").map((c) => c.body);
  if (!idat.length) throw new Error(`${name}: corrupt png (no image data)`);
  let raw;
  try {
    raw = await inflateBounded(idat, rawSize(ihdr));
  } catch (err) {
    throw new Error(`${name}: corrupt png (image data does not decompress)`);
  }
  const bitsPerPixel = samples * bitDepth;
  // Output layout, as OpenCV's PNG decoder with IMREAD_UNCHANGED.
  const transparentPalette = colorType === 3 && trns && trns.length > 0;
  const rgbTrns = colorType === 2 && trns && trns.length > 0;
  let channels = { 0: 1, 2: 3, 3: 3, 4: 4, 6: 4 }[colorType];
  if (transparentPalette || rgbTrns) channels = 4;
  const Out = bitDepth === 16 ? Uint16Array : Uint8Array;
  const put = (data, base, sw, sh, x0, y0, dx, dy) => {
    const rowBytes = 1 + Math.ceil((sw * bitsPerPixel) / 8);
    for (let y = 0; y < sh; y++) {
      for (let x = 0; x < sw; x++) {
        const d = ((y0 + y * dy) * width + (x0 + x * dx)) * channels;
        if (colorType === 3) {
          const idx = sample(raw, base, rowBytes, x, y, bitDepth, 1, 0);
          data[d] = palette[3 * idx];
          data[d + 1] = palette[3 * idx + 1];
          data[d + 2] = palette[3 * idx + 2];
          if (channels === 4) data[d + 3] = idx < trns.length ? trns[idx] : 255;
        } else if (colorType === 0) {
          const v = sample(raw, base, rowBytes, x, y, bitDepth, 1, 0);
          data[d] = bitDepth < 8 ? (v * 255) / ((1 << bitDepth) - 1) : v;
        } else if (colorType === 4) {
          const g = sample(raw, base, rowBytes, x, y, bitDepth, 2, 0);
          data[d] = g;
          data[d + 1] = g;
          data[d + 2] = g;
          data[d + 3] = sample(raw, base, rowBytes, x, y, bitDepth, 2, 1);
        } else {
          for (let s = 0; s < samples; s++) data[d + s] = sample(raw, base, rowBytes, x, y, bitDepth, samples, s);
          if (rgbTrns) data[d + 3] = 255;
        }
      }
    }
  };
  // Unfilter everything first: a short stream is refused before the output is allocated.
  const passes = [];
  let offset = 0;
  for (const [x0, y0, dx, dy] of interlace === 1 ? ADAM7 : [[0, 0, 1, 1]]) {
    const sw = Math.ceil((width - x0) / dx);
    const sh = Math.ceil((height - y0) / dy);
    if (sw <= 0 || sh <= 0) continue;
    passes.push([offset, sw, sh, x0, y0, dx, dy]);
    offset = unfilter(raw, offset, sw, sh, bitsPerPixel, name);
  }
  const data = new Out(width * height * channels);
  for (const [base, sw, sh, x0, y0, dx, dy] of passes) put(data, base, sw, sh, x0, y0, dx, dy);
  return { width, height, channels, data };
}

// --- JPEG --------------------------------------------------------------------------------------

// Start-of-frame markers (all coding processes); C4, C8 and CC are DHT, JPG and DAC.
const JPEG_SOF = new Set([0xc0, 0xc1, 0xc2, 0xc3, 0xc5, 0xc6, 0xc7, 0xc9, 0xca, 0xcb, 0xcd, 0xce, 0xcf]);

/** A segment length or frame header runs past the end of the file (Python's struct.error). */
class Cut extends Error {}

function u16(bytes, pos) {
  if (pos + 2 > bytes.length) throw new Cut();
  return (bytes[pos] << 8) | bytes[pos + 1];
}

/** After entropy-coded data: the offset of the FF before the next real marker (FF, fill bytes,
 * then anything but a stuffed zero or a restart marker), or -1. formats._JPEG_NEXT_MARKER. */
function nextMarker(bytes, pos) {
  for (let i = pos; i < bytes.length; i++) {
    if (bytes[i] !== 0xff) continue;
    let j = i;
    while (j + 1 < bytes.length && bytes[j + 1] === 0xff) j++;
    if (j + 1 >= bytes.length) return -1;
    const m = bytes[j + 1];
    if (m !== 0x00 && !(m >= 0xd0 && m <= 0xd7)) return j;
    i = j + 1;
  }
  return -1;
}

/** formats._jpeg_segments: [marker, payload offset] of every segment of the whole file, scans
 * skipped, up to and including the end-of-image marker (an EXIF thumbnail inside APP1 is skipped
 * with its segment, so its EOI never counts as the main image's). */
function* jpegSegments(bytes, name) {
  let pos = 2;
  const n = bytes.length;
  while (pos < n) {
    if (bytes[pos] !== 0xff) throw new Error(`${name}: corrupt jpeg (bad marker at byte ${pos})`);
    while (pos < n && bytes[pos] === 0xff) pos++;
    if (pos >= n) return;
    const marker = bytes[pos];
    pos++;
    if (marker === 0xd8 || marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) continue;
    yield [marker, pos];
    if (marker === 0xd9) return;
    const length = u16(bytes, pos);
    if (length < 2) throw new Error(`${name}: corrupt jpeg (segment length ${length} at byte ${pos})`);
    pos += length;
    if (marker === 0xda) {
      const next = nextMarker(bytes, pos);
      if (next < 0) return;
      pos = next;
    }
  }
}

/** formats._jpeg_header: the one frame header's size, read before anything is decoded. */
export function readJpegHeader(bytes, name) {
  let frame = null;
  try {
    for (const [marker, pos] of jpegSegments(bytes, name)) {
      if (JPEG_SOF.has(marker)) {
        if (frame) throw new Error(`${name}: corrupt jpeg (more than one frame header)`);
        if (pos + 8 > bytes.length) throw new Cut();
        frame = { precision: bytes[pos + 2], height: u16(bytes, pos + 3), width: u16(bytes, pos + 5), components: bytes[pos + 7] };
      } else if (marker === 0xda && !frame) break;
    }
  } catch (err) {
    if (err instanceof Cut) throw new Error(`${name}: truncated jpeg header`);
    throw err;
  }
  if (!frame) throw new Error(`${name}: corrupt or truncated jpeg (no frame header)`);
  const { width, height, components, precision } = frame;
  if (height === 0) throw new Error(`${name}: unsupported jpeg (height defined after the scan, DNL)`);
  if (![1, 3, 4].includes(components)) throw new Error(`${name}: corrupt jpeg (${components} colour components)`);
  return { width, height, channels: components, bytesPerSample: precision > 8 ? 2 : 1 };
}

/** formats._jpeg_has_eoi: a scan, and an end-of-image marker reached by walking every segment
 * and scan from the start (not "FF D9 somewhere near the end": a file cut mid-scan with FF D9
 * glued on has that too). Returns the offset of the marker's first FF, or -1. */
function jpegEoi(bytes, name) {
  const markers = [];
  let at = -1;
  try {
    for (const [marker, pos] of jpegSegments(bytes, name)) {
      markers.push(marker);
      at = pos - 2;
    }
  } catch (err) {
    if (err instanceof Cut) return -1;
    throw err;
  }
  if (!markers.includes(0xda) || markers[markers.length - 1] !== 0xd9) return -1;
  while (at > 0 && bytes[at - 1] === 0xff) at--; // fill bytes before the marker
  return at;
}

/** Rows read back from the decoded bitmap at a time (about 4 Mpx: 16 MB of RGBA). */
const STRIP_PIXELS = 1 << 22;

/** Decode JPEG bytes to {width, height, channels (1 or 3), data: Uint8Array}. The frame header is
 * checked against the limits before the browser decodes anything; the decoded bitmap is read back
 * a strip at a time into one channel (grey) or three (colour), never whole as RGBA. */
export async function decodeJpeg(bytes, name, limits = LIMITS) {
  const header = readJpegHeader(bytes, name);
  checkHeader(header, name, limits);
  const eoi = jpegEoi(bytes, name);
  if (eoi < 0) throw new Error(`${name}: truncated jpeg (no end-of-image marker)`);
  const plain = withoutIccProfile(bytes, name);
  const channels = header.channels === 1 ? 1 : 3;
  const data = new Uint8Array(header.width * header.height * channels);
  await browserDecode(plain, header, name, (strip, at) => data.set(strip, at));
  const image = { width: header.width, height: header.height, channels, data };
  if (endsOnGrey(image) && (await scanEndsEarly(plain, eoi - (bytes.length - plain.length), header, image, name)))
    throw new Error(`${name}: truncated jpeg (the scan ends before the last block; grey fill)`);
  return image;
}

/**
 * The same JPEG without its embedded ICC profile (APP2 "ICC_PROFILE" segments; the bytes as they
 * are when there is none). OpenCV ignores the profile; the browser would apply it unless told
 * `colorSpaceConversion: "none"`, and that option (like `premultiplyAlpha: "none"`) makes Chromium
 * hold a second full-size RGBA copy of the film: 400 MB more at the 100 Mpx limit (measured,
 * docs/page-memory.md). Without a profile the default conversion changes no pixel, with one copy.
 */
export function withoutIccProfile(bytes, name) {
  const drop = [];
  for (const [marker, pos] of jpegSegments(bytes, name)) {
    if (marker === 0xda) break;
    if (marker === 0xe2 && pos + 14 <= bytes.length && String.fromCharCode(...bytes.subarray(pos + 2, pos + 14)) === "ICC_PROFILE\0")
      drop.push([pos - 2, pos + u16(bytes, pos)]);
  }
  if (!drop.length) return bytes;
  const out = new Uint8Array(bytes.length - drop.reduce((n, [a, b]) => n + b - a, 0));
  let from = 0;
  let at = 0;
  for (const [a, b] of drop) {
    out.set(bytes.subarray(from, a), at);
    at += a - from;
    from = b;
  }
  out.set(bytes.subarray(from), at);
  return out;
}

/**
 * Decode with the browser and hand the pixels to `sink(strip, offset)` a strip of rows at a time,
 * one channel (grey) or three (colour), `offset` in the film's samples; `sink` returning false
 * stops the reading. The decoded bitmap is the one full-resolution RGBA copy there is (closed
 * before this returns). Its rows are read through a WebCodecs VideoFrame of it (`copyTo` a rect:
 * no other copy); drawing the bitmap into a canvas instead makes Chromium hold a second full-size
 * copy (+400 MB at the 100 Mpx limit, measured), so the canvas is only the fallback of a browser
 * without VideoFrame.
 */
async function browserDecode(bytes, header, name, sink) {
  let bitmap;
  try {
    // No colorSpaceConversion / premultiplyAlpha options (see withoutIccProfile; a JPEG is opaque).
    bitmap = await createImageBitmap(new Blob([bytes], { type: "image/jpeg" }), { imageOrientation: "none" });
  } catch (err) {
    throw new Error(`${name}: corrupt jpeg (the browser could not decode it)`);
  }
  const { width, height } = bitmap;
  let reader = null;
  try {
    if (width !== header.width || height !== header.height)
      throw new Error(`${name}: corrupt jpeg (decoded ${width}x${height}, header says ${header.width}x${header.height})`);
    const channels = header.channels === 1 ? 1 : 3;
    const rows = Math.max(1, Math.min(height, Math.floor(STRIP_PIXELS / width)));
    reader = frameReader(bitmap, rows) || canvasReader(bitmap, rows);
    const out = new Uint8Array(width * rows * channels);
    for (let top = 0; top < height; top += rows) {
      const h = Math.min(rows, height - top);
      const { px, stride, red, blue } = await reader.read(top, h);
      for (let y = 0, i = 0; y < h; y++)
        if (channels === 1) for (let o = y * stride, end = o + 4 * width; o < end; o += 4) out[i++] = px[o + red];
        else
          for (let o = y * stride, end = o + 4 * width; o < end; o += 4) {
            out[i++] = px[o + red];
            out[i++] = px[o + 1];
            out[i++] = px[o + blue];
          }
      if (sink(out.subarray(0, width * h * channels), top * width * channels) === false) break;
    }
  } finally {
    if (reader) reader.close();
    bitmap.close();
  }
}

/** Rows of the bitmap through a VideoFrame (8-bit RGB layouts only), or null where there is none. */
function frameReader(bitmap, rows) {
  if (typeof VideoFrame !== "function") return null;
  let frame;
  try {
    frame = new VideoFrame(bitmap, { timestamp: 0 });
  } catch (err) {
    return null;
  }
  const order = { RGBA: [0, 2], RGBX: [0, 2], BGRA: [2, 0], BGRX: [2, 0] }[frame.format];
  if (!order) {
    frame.close();
    return null;
  }
  const [red, blue] = order;
  const px = new Uint8Array(bitmap.width * rows * 4);
  return {
    async read(top, h) {
      const rect = { x: 0, y: top, width: bitmap.width, height: h };
      const [plane] = await frame.copyTo(px, { rect, layout: [{ offset: 0, stride: 4 * bitmap.width }] });
      return { px, stride: plane.stride, red, blue };
    },
    close: () => frame.close(),
  };
}

/** Rows of the bitmap drawn into a canvas of `rows` rows (the fallback: see browserDecode). */
function canvasReader(bitmap, rows) {
  const { width } = bitmap;
  const canvas = new OffscreenCanvas(width, rows);
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.imageSmoothingEnabled = false;
  return {
    async read(top, h) {
      ctx.clearRect(0, 0, width, rows);
      ctx.drawImage(bitmap, 0, top, width, h, 0, 0, width, h);
      return { px: ctx.getImageData(0, 0, width, h).data, stride: 4 * width, red: 0, blue: 2 };
    },
    close() {
      canvas.width = canvas.height = 0; // its backing store goes now, not at the next GC
    },
  };
}

/** The last 8 x 8 block is exactly mid-grey (128) in every channel: what libjpeg fills the blocks
 * of a scan cut short with (formats.check_jpeg_scan's first test). */
function endsOnGrey({ width, height, channels, data }) {
  for (let y = Math.max(0, height - 8); y < height; y++)
    for (let x = Math.max(0, width - 8); x < width; x++)
      for (let c = 0; c < channels; c++) if (data[(y * width + x) * channels + c] !== 128) return false;
  return true;
}

/** Bytes put before the end-of-image marker to tell a cut scan from a film that ends on grey. */
const SCAN_PADDING = Uint8Array.from({ length: 256 }, (_, i) => [0x5a, 0xa5, 0x3c, 0xc3][i % 4]);

/**
 * formats.check_jpeg_scan's second test, without libjpeg's "premature end" warning (which Python
 * captures and a page cannot see): the file is decoded again with entropy-coded padding put just
 * before its end-of-image marker. A complete scan ignores bytes after its last block, so the image
 * is the same; a scan cut short decodes the padding into the blocks it had filled with grey, so
 * the image changes. Only ever run on a film whose last block is exactly mid-grey (rare); the
 * second decode is compared a strip at a time, never held whole next to the first.
 */
async function scanEndsEarly(bytes, eoi, header, image, name) {
  const padded = new Uint8Array(bytes.length + SCAN_PADDING.length);
  padded.set(bytes.subarray(0, eoi));
  padded.set(SCAN_PADDING, eoi);
  padded.set(bytes.subarray(eoi), eoi + SCAN_PADDING.length);
  let changed = false;
  try {
    await browserDecode(padded, header, name, (strip, at) => {
      for (let i = 0; i < strip.length; i++)
        if (strip[i] !== image.data[at + i]) {
          changed = true;
          return false;
        }
      return true;
    });
  } catch (err) {
    return true;
  }
  return changed;
}

/**
 * Any file the page accepts -> decoded image, or an Error with a one-line message, under the same
 * contract as Python's read_image. `minSide`: the smallest side accepted (the page's films use
 * LIMITS.min_side as spinescan-predict does; 1 is read_image's default).
 */
export async function decodeFile(bytes, name, { minSide = LIMITS.min_side, limits = LIMITS } = {}) {
  const format = checkHead(bytes.subarray(0, HEAD), bytes.length, name, limits);
  const image = format === "png" ? await decodePng(bytes, name, limits) : await decodeJpeg(bytes, name, limits);
  checkPixels(image, name, minSide);
  return image;
}

/** The checks a dropped or chosen file gets before its bytes are read: its first HEAD bytes and
 * its size (a 3 GB file is refused without being loaded). */
export async function checkFile(file, limits = LIMITS) {
  const head = new Uint8Array(await file.slice(0, HEAD).arrayBuffer());
  return checkHead(head, file.size, file.name, limits);
}
