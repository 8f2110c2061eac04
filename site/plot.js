// Drawing of samples, shared by the page (app.js) and the widget (widget.js): 2-D points with the
// same axes, colours and point size everywhere, and grids of images. Colours come from CSS custom
// properties of the element passed as styleFrom (the page's root, or the widget's host inside its
// shadow DOM). One module on purpose: the server sends CORS headers for the widget's files only
// (widget.js, plot.js, runtime.js), so a widget on another origin can import nothing else.
//
// Images are upscaled by an integer factor with nearest neighbour, so every model pixel is a crisp
// square. The scaling is done by hand into one ImageData rather than by drawImage, whose smoothing
// and rounding vary between browsers: the same floats give the same canvas pixels everywhere.

export const EXTENT = 4; // the canvas shows [−EXTENT, EXTENT]²

function cssColor(styleFrom, name, fallback) {
  const v = getComputedStyle(styleFrom || document.documentElement).getPropertyValue(name).trim();
  return v || fallback;
}

// drawAxes clears the canvas to the panel colour and draws the unit grid with labels.
export function drawAxes(canvas, styleFrom) {
  const ctx = canvas.getContext('2d');
  const w = canvas.width, h = canvas.height;
  ctx.fillStyle = cssColor(styleFrom, '--panel', '#fff');
  ctx.fillRect(0, 0, w, h);
  ctx.strokeStyle = 'rgba(128,128,128,0.25)';
  ctx.lineWidth = 1;
  ctx.font = '11px system-ui, sans-serif';
  ctx.fillStyle = 'rgba(128,128,128,0.9)';
  for (let v = -EXTENT; v <= EXTENT; v++) {
    const px = ((v + EXTENT) / (2 * EXTENT)) * w;
    const py = h - ((v + EXTENT) / (2 * EXTENT)) * h;
    ctx.beginPath(); ctx.moveTo(px + 0.5, 0); ctx.lineTo(px + 0.5, h); ctx.stroke();
    ctx.beginPath(); ctx.moveTo(0, py + 0.5); ctx.lineTo(w, py + 0.5); ctx.stroke();
    if (v !== -EXTENT && v !== EXTENT && v % 2 === 0) {
      ctx.fillText(String(v), px + 3, h / 2 - 3);
      if (v !== 0) ctx.fillText(String(v), w / 2 + 3, py - 3);
    }
  }
}

// drawPoints draws the axes and the points (x0, y0, x1, y1, …); it returns how many fell outside
// the view.
export function drawPoints(canvas, points, styleFrom) {
  drawAxes(canvas, styleFrom);
  const ctx = canvas.getContext('2d');
  const w = canvas.width, h = canvas.height;
  ctx.fillStyle = cssColor(styleFrom, '--accent', '#2f5fd0');
  ctx.globalAlpha = 0.7;
  let outside = 0;
  for (let i = 0; i + 1 < points.length; i += 2) {
    const x = points[i], y = points[i + 1];
    if (!(Math.abs(x) <= EXTENT && Math.abs(y) <= EXTENT)) { outside++; continue; }
    const px = ((x + EXTENT) / (2 * EXTENT)) * w;
    const py = h - ((y + EXTENT) / (2 * EXTENT)) * h;
    ctx.fillRect(px - 1.5, py - 1.5, 3, 3);
  }
  ctx.globalAlpha = 1;
  return outside;
}

// drawMessage writes text on the canvas, wrapped to its width, so a failure is never a blank plot.
export function drawMessage(canvas, text, styleFrom) {
  const ctx = canvas.getContext('2d');
  const w = canvas.width, h = canvas.height;
  ctx.fillStyle = cssColor(styleFrom, '--error-bg', '#fde8e6');
  ctx.fillRect(0, 0, w, h);
  ctx.fillStyle = cssColor(styleFrom, '--error-fg', '#8a1c12');
  ctx.font = '16px system-ui, sans-serif';
  const lines = [];
  let line = '';
  for (const word of text.split(/\s+/)) {
    const next = line ? line + ' ' + word : word;
    if (ctx.measureText(next).width > w - 48 && line) { lines.push(line); line = word; } else { line = next; }
  }
  if (line) lines.push(line);
  let y = Math.max(40, h / 2 - (lines.length * 22) / 2);
  for (const l of lines) { ctx.fillText(l, 24, y); y += 22; }
}

// --- images ---------------------------------------------------------------------------------

// toByte maps a model value in [−1, 1] to 0…255 (values outside are clipped, NaN is black).
export function toByte(v) {
  const b = Math.round((v + 1) * 127.5);
  return b > 255 ? 255 : b >= 0 ? b : 0;
}

// gridLayout returns the canvas size for n images of H×W in `cols` columns, scaled by the largest
// integer that fits `target` pixels across (at least 1), with `gap` pixels between images.
export function gridLayout(shape, cols, target, gap) {
  const [n, , H, W] = shape;
  cols = Math.max(1, Math.min(cols, n));
  const rows = Math.ceil(n / cols);
  const scale = Math.max(1, Math.floor((target - (cols - 1) * gap) / (cols * W)));
  return {
    cols, rows, scale,
    width: cols * W * scale + (cols - 1) * gap,
    height: rows * H * scale + (rows - 1) * gap,
  };
}

// panelRGB is the panel colour (the gaps between images) as [r, g, b].
function panelRGB(styleFrom) {
  const probe = document.createElement('canvas').getContext('2d');
  probe.fillStyle = cssColor(styleFrom, '--panel', '#ffffff');
  probe.fillRect(0, 0, 1, 1);
  const d = probe.getImageData(0, 0, 1, 1).data;
  return [d[0], d[1], d[2]];
}

// drawImages draws the grid on canvas, resizing it to the grid (see gridLayout). shape is
// [n, C, H, W]; C = 1 is grey, C ≥ 3 uses the first three channels as RGB, C = 2 shows channel 0.
// Options: cols (default √n rounded up), target (width in CSS pixels the grid should fill, default
// the canvas's current width), gap (default 2). It returns the layout.
export function drawImages(canvas, images, shape, { cols, target, gap = 2, styleFrom } = {}) {
  const [n, C, H, W] = shape;
  if (!(n >= 1 && C >= 1 && H >= 1 && W >= 1) || images.length < n * C * H * W) {
    throw new Error(`drawImages: ${images.length} values do not hold ${shape.join('×')} images`);
  }
  const layout = gridLayout(shape, cols || Math.ceil(Math.sqrt(n)), target || canvas.width, gap);
  if (canvas.width !== layout.width) canvas.width = layout.width;
  if (canvas.height !== layout.height) canvas.height = layout.height;
  const ctx = canvas.getContext('2d');
  const img = ctx.createImageData(layout.width, layout.height);
  const px = img.data;
  const [pr, pg, pb] = panelRGB(styleFrom);
  for (let i = 0; i < px.length; i += 4) { px[i] = pr; px[i + 1] = pg; px[i + 2] = pb; px[i + 3] = 255; }
  const { scale: s, width: cw } = layout;
  const plane = H * W;
  const rgb = C >= 3;
  const row = new Uint8ClampedArray(W * s * 4); // one upscaled image row, copied s times
  for (let k = 0; k < n; k++) {
    const base = k * C * plane;
    const x0 = (k % layout.cols) * (W * s + gap);
    const y0 = Math.floor(k / layout.cols) * (H * s + gap);
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) {
        const o = y * W + x;
        const r = toByte(images[base + o]);
        const g = rgb ? toByte(images[base + plane + o]) : r;
        const b = rgb ? toByte(images[base + 2 * plane + o]) : r;
        for (let j = 0; j < s; j++) {
          const q = (x * s + j) * 4;
          row[q] = r; row[q + 1] = g; row[q + 2] = b; row[q + 3] = 255;
        }
      }
      for (let j = 0; j < s; j++) px.set(row, ((y0 + y * s + j) * cw + x0) * 4);
    }
  }
  ctx.putImageData(img, 0, 0);
  return layout;
}

// drawPlaceholder clears canvas to the panel colour at size w×h and writes a hint in the middle.
export function drawPlaceholder(canvas, text, w, h, styleFrom) {
  if (canvas.width !== w) canvas.width = w;
  if (canvas.height !== h) canvas.height = h;
  const ctx = canvas.getContext('2d');
  ctx.fillStyle = cssColor(styleFrom, '--panel', '#fff');
  ctx.fillRect(0, 0, w, h);
  ctx.strokeStyle = 'rgba(128,128,128,0.35)';
  ctx.setLineDash([6, 6]);
  ctx.strokeRect(8.5, 8.5, w - 17, h - 17);
  ctx.setLineDash([]);
  ctx.fillStyle = 'rgba(128,128,128,0.9)';
  ctx.font = '14px system-ui, sans-serif';
  ctx.textAlign = 'center';
  ctx.fillText(text, w / 2, h / 2 + 5);
  ctx.textAlign = 'start';
}
