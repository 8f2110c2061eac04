// Drawing of 2-D samples, shared by the page (app.js) and the widget (widget.js): the same axes,
// colours and point size everywhere. Colours come from CSS custom properties of the element
// passed as styleFrom (the page's root, or the widget's host inside its shadow DOM).

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
