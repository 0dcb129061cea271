// Decode a film the way spinescan/edge/imageio.py does, in the browser, never sending it anywhere.
//
// PNG is decoded here (chunks, zlib via the browser's DecompressionStream, the five filters,
// Adam7, 1-16 bit, palette): it is lossless, so the result is OpenCV's bit for bit, 16-bit
// films included (a canvas would cut them to 8 bits and premultiply alpha). JPEG goes through
// the browser's own decoder (libjpeg-turbo in Chromium, like OpenCV) read back without colour
// management; tests/test_web.py measures that the probabilities still match spinescan-predict.
// Every failure is an Error whose message the page shows as is.

const PNG_MAGIC = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
export const MAX_PIXELS = 100_000_000; // imageio.MAX_PIXELS

export function sniff(bytes) {
  if (bytes.length >= 8 && PNG_MAGIC.every((b, i) => bytes[i] === b)) return "png";
  if (bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return "jpeg";
  if (bytes.length >= 2 && bytes[0] === 0x42 && bytes[1] === 0x4d) return "bmp";
  if (bytes.length >= 4 && ((bytes[0] === 0x49 && bytes[1] === 0x49) || (bytes[0] === 0x4d && bytes[1] === 0x4d))) return "tiff";
  if (bytes.length >= 132 && String.fromCharCode(...bytes.subarray(128, 132)) === "DICM") return "dicom";
  return null;
}

async function inflate(data) {
  const stream = new Blob([data]).stream().pipeThrough(new DecompressionStream("deflate"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

function paeth(a, b, c) {
  const p = a + b - c;
  const pa = Math.abs(p - a);
  const pb = Math.abs(p - b);
  const pc = Math.abs(p - c);
  if (pa <= pb && pa <= pc) return a;
  return pb <= pc ? b : c;
}

function unfilter(raw, offset, width, height, bitsPerPixel) {
  // Returns the unfiltered scanlines of one (sub)image and the offset after it.
  const bpp = Math.max(1, bitsPerPixel >> 3);
  const stride = Math.ceil((width * bitsPerPixel) / 8);
  const out = new Uint8Array(stride * height);
  let prev = new Uint8Array(stride);
  for (let y = 0; y < height; y++) {
    if (offset + 1 + stride > raw.length) throw new Error("truncated PNG image data");
    const type = raw[offset];
    const line = raw.subarray(offset + 1, offset + 1 + stride);
    const cur = out.subarray(y * stride, (y + 1) * stride);
    for (let i = 0; i < stride; i++) {
      const a = i >= bpp ? cur[i - bpp] : 0;
      const b = prev[i];
      const c = i >= bpp ? prev[i - bpp] : 0;
      let v = line[i];
      if (type === 1) v += a;
      else if (type === 2) v += b;
      else if (type === 3) v += (a + b) >> 1;
      else if (type === 4) v += paeth(a, b, c);
      else if (type !== 0) throw new Error(`corrupt PNG (filter type ${type})`);
      cur[i] = v & 0xff;
    }
    prev = cur;
    offset += 1 + stride;
  }
  return [out, offset];
}

function sample(lines, stride, x, y, bitDepth, samplesPerPixel, s) {
  // One sample (channel s of pixel x) of an unfiltered scanline, as an integer.
  const index = x * samplesPerPixel + s;
  if (bitDepth === 8) return lines[y * stride + index];
  if (bitDepth === 16) return (lines[y * stride + 2 * index] << 8) | lines[y * stride + 2 * index + 1];
  const bitPos = index * bitDepth;
  const byte = lines[y * stride + (bitPos >> 3)];
  return (byte >> (8 - bitDepth - (bitPos & 7))) & ((1 << bitDepth) - 1);
}

/** Decode PNG bytes to {width, height, channels, data (Uint8Array | Uint16Array)}, OpenCV's layout
 * (grey stays 1 channel; grey+alpha and palette/RGB with transparency become 4; 1/2/4-bit grey is
 * scaled to 8 bits), except that colour channels are RGB order (toGrey weighs them accordingly). */
export async function decodePng(bytes, name) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = 8;
  let ihdr = null;
  let palette = null;
  let trns = null;
  const idat = [];
  let ended = false;
  while (pos + 8 <= bytes.length) {
    const length = view.getUint32(pos);
    const type = String.fromCharCode(...bytes.subarray(pos + 4, pos + 8));
    const start = pos + 8;
    if (start + length + 4 > bytes.length) throw new Error(`${name}: truncated PNG (chunk ${type} is cut off)`);
    const body = bytes.subarray(start, start + length);
    if (type === "IHDR") {
      ihdr = {
        width: view.getUint32(start),
        height: view.getUint32(start + 4),
        bitDepth: body[8],
        colorType: body[9],
        interlace: body[12],
      };
    } else if (type === "PLTE") palette = body;
    else if (type === "tRNS") trns = body;
    else if (type === "IDAT") idat.push(body);
    else if (type === "IEND") {
      ended = true;
      break;
    }
    pos = start + length + 4;
  }
  if (!ihdr) throw new Error(`${name}: corrupt PNG (no IHDR header)`);
  const { width, height, bitDepth, colorType, interlace } = ihdr;
  if (!width || !height) throw new Error(`${name}: corrupt header (size ${width}x${height})`);
  if (width * height > MAX_PIXELS)
    throw new Error(`${name}: ${width}x${height} pixels exceeds the limit of ${MAX_PIXELS.toLocaleString("en")}`);
  if (!ended) throw new Error(`${name}: truncated PNG (no IEND chunk; the file is cut off)`);
  const samples = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 }[colorType];
  if (!samples) throw new Error(`${name}: corrupt PNG (colour type ${colorType})`);
  if (colorType === 3 && !palette) throw new Error(`${name}: corrupt PNG (palette image without a palette)`);
  const total = idat.reduce((n, c) => n + c.length, 0);
  const joined = new Uint8Array(total);
  let o = 0;
  for (const c of idat) {
    joined.set(c, o);
    o += c.length;
  }
  let raw;
  try {
    raw = await inflate(joined);
  } catch (err) {
    throw new Error(`${name}: corrupt PNG (image data does not decompress)`);
  }
  const bitsPerPixel = samples * bitDepth;
  // Output layout, as OpenCV's PNG decoder with IMREAD_UNCHANGED.
  const transparentPalette = colorType === 3 && trns && trns.length > 0;
  const rgbTrns = colorType === 2 && trns && trns.length > 0;
  let channels = { 0: 1, 2: 3, 3: 3, 4: 4, 6: 4 }[colorType];
  if (transparentPalette || rgbTrns) channels = 4;
  const Out = bitDepth === 16 ? Uint16Array : Uint8Array;
  const data = new Out(width * height * channels);
  const put = (lines, stride, sw, sh, x0, y0, dx, dy) => {
    for (let y = 0; y < sh; y++) {
      for (let x = 0; x < sw; x++) {
        const d = ((y0 + y * dy) * width + (x0 + x * dx)) * channels;
        if (colorType === 3) {
          const idx = sample(lines, stride, x, y, bitDepth, 1, 0);
          data[d] = palette[3 * idx];
          data[d + 1] = palette[3 * idx + 1];
          data[d + 2] = palette[3 * idx + 2];
          if (channels === 4) data[d + 3] = idx < trns.length ? trns[idx] : 255;
        } else if (colorType === 0) {
          const v = sample(lines, stride, x, y, bitDepth, 1, 0);
          data[d] = bitDepth < 8 ? (v * 255) / ((1 << bitDepth) - 1) : v;
        } else if (colorType === 4) {
          const g = sample(lines, stride, x, y, bitDepth, 2, 0);
          data[d] = g;
          data[d + 1] = g;
          data[d + 2] = g;
          data[d + 3] = sample(lines, stride, x, y, bitDepth, 2, 1);
        } else {
          for (let s = 0; s < samples; s++) data[d + s] = sample(lines, stride, x, y, bitDepth, samples, s);
          if (rgbTrns) data[d + 3] = 255;
        }
      }
    }
  };
  try {
    if (interlace === 1) {
      const passes = [
        [0, 0, 8, 8], [4, 0, 8, 8], [0, 4, 4, 8], [2, 0, 4, 4], [0, 2, 2, 4], [1, 0, 2, 2], [0, 1, 1, 2],
      ];
      let offset = 0;
      for (const [x0, y0, dx, dy] of passes) {
        const sw = Math.ceil((width - x0) / dx);
        const sh = Math.ceil((height - y0) / dy);
        if (sw <= 0 || sh <= 0) continue;
        const [lines, next] = unfilter(raw, offset, sw, sh, bitsPerPixel);
        put(lines, Math.ceil((sw * bitsPerPixel) / 8), sw, sh, x0, y0, dx, dy);
        offset = next;
      }
    } else {
      const [lines] = unfilter(raw, 0, width, height, bitsPerPixel);
      put(lines, Math.ceil((width * bitsPerPixel) / 8), width, height, 0, 0, 1, 1);
    }
  } catch (err) {
    throw new Error(`${name}: ${err.message}`);
  }
  return { width, height, channels, data };
}

function jpegHasEoi(bytes) {
  for (let i = bytes.length - 1; i >= Math.max(0, bytes.length - 64); i--) {
    if (bytes[i] === 0xd9 && bytes[i - 1] === 0xff) return true;
  }
  return false;
}

export async function decodeJpeg(bytes, name) {
  if (!jpegHasEoi(bytes)) throw new Error(`${name}: truncated JPEG (no end-of-image marker; the file is cut off)`);
  let bitmap;
  try {
    bitmap = await createImageBitmap(new Blob([bytes], { type: "image/jpeg" }), {
      colorSpaceConversion: "none",
      premultiplyAlpha: "none",
      imageOrientation: "none",
    });
  } catch (err) {
    throw new Error(`${name}: corrupt JPEG (the browser could not decode it)`);
  }
  const { width, height } = bitmap;
  if (width * height > MAX_PIXELS) throw new Error(`${name}: ${width}x${height} pixels exceeds the limit`);
  const canvas = new OffscreenCanvas(width, height);
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(bitmap, 0, 0);
  bitmap.close();
  const rgba = ctx.getImageData(0, 0, width, height).data;
  return { width, height, channels: 4, data: new Uint8Array(rgba.buffer, rgba.byteOffset, rgba.byteLength) };
}

/** Any file the page accepts -> decoded image, or an Error with a one-line message. */
export async function decodeFile(bytes, name) {
  if (!bytes.length) throw new Error(`${name}: empty file (0 bytes)`);
  const format = sniff(bytes);
  if (format === "png") return decodePng(bytes, name);
  if (format === "jpeg") return decodeJpeg(bytes, name);
  if (format)
    throw new Error(`${name}: ${format.toUpperCase()} films are not read by this page (PNG or JPEG); use spinescan-predict`);
  throw new Error(`${name}: not an image this page can read (PNG or JPEG expected)`);
}
