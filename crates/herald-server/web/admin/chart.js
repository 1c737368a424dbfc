// A small line chart on <canvas>: rates over time for a campaign. Drawn by hand so the console
// needs no charting library (and no CDN).

const COLORS = ['#2563eb', '#16a34a', '#d97706'];
const PADDING = { left: 56, right: 12, top: 24, bottom: 24 };

export class RateChart {
  /** @param {HTMLCanvasElement} canvas @param {string[]} series names, in legend order */
  constructor(canvas, series, { keep = 300 } = {}) {
    this.canvas = canvas;
    this.series = series;
    this.keep = keep;
    this.samples = []; // { t: ms, values: number[] }
  }

  clear() { this.samples = []; this.draw(); }

  add(t, values) {
    this.samples.push({ t, values });
    if (this.samples.length > this.keep) this.samples.shift();
    this.draw();
  }

  draw() {
    const canvas = this.canvas;
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth || canvas.width;
    const height = canvas.clientHeight || canvas.height;
    if (canvas.width !== Math.round(width * ratio)) canvas.width = Math.round(width * ratio);
    if (canvas.height !== Math.round(height * ratio)) canvas.height = Math.round(height * ratio);
    const g = canvas.getContext('2d');
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    g.clearRect(0, 0, width, height);
    g.font = '12px system-ui, sans-serif';

    const plotW = width - PADDING.left - PADDING.right;
    const plotH = height - PADDING.top - PADDING.bottom;
    const samples = this.samples;
    // Four grid steps of a round size (1, 2 or 5 times a power of ten).
    const max = 4 * niceCeiling(Math.max(4, ...samples.flatMap((s) => s.values)) / 4);
    const t0 = samples[0]?.t ?? 0;
    const span = Math.max(10_000, (samples.at(-1)?.t ?? 0) - t0);
    const x = (t) => PADDING.left + ((t - t0) / span) * plotW;
    const y = (v) => PADDING.top + plotH - (v / max) * plotH;

    // Grid and value axis.
    g.strokeStyle = '#e5e7eb';
    g.fillStyle = '#6b7280';
    g.textAlign = 'right';
    g.textBaseline = 'middle';
    for (let i = 0; i <= 4; i += 1) {
      const v = (max / 4) * i;
      g.beginPath();
      g.moveTo(PADDING.left, y(v));
      g.lineTo(width - PADDING.right, y(v));
      g.stroke();
      g.fillText(formatRate(v), PADDING.left - 6, y(v));
    }
    g.textAlign = 'left';
    g.textBaseline = 'alphabetic';
    g.fillText(`last ${Math.round(span / 1000)} s`, PADDING.left, height - 6);

    // One line per series.
    this.series.forEach((name, index) => {
      g.strokeStyle = COLORS[index % COLORS.length];
      g.lineWidth = 2;
      g.beginPath();
      samples.forEach((s, i) => {
        const px = x(s.t);
        const py = y(s.values[index] ?? 0);
        if (i === 0) g.moveTo(px, py); else g.lineTo(px, py);
      });
      g.stroke();
      g.lineWidth = 1;
      // Legend.
      const lx = PADDING.left + index * 150;
      g.fillStyle = COLORS[index % COLORS.length];
      g.fillRect(lx, 8, 10, 10);
      g.fillStyle = '#111827';
      g.fillText(name, lx + 14, 17);
    });
    if (samples.length === 0) {
      g.fillStyle = '#6b7280';
      g.textAlign = 'center';
      g.fillText('waiting for samples…', PADDING.left + plotW / 2, PADDING.top + plotH / 2);
    }
  }
}

function niceCeiling(v) {
  const power = 10 ** Math.floor(Math.log10(v));
  for (const step of [1, 2, 5, 10]) if (v <= step * power) return step * power;
  return 10 * power;
}

function formatRate(v) {
  if (v >= 1_000_000) return `${(v / 1_000_000).toFixed(1)}M/s`;
  if (v >= 1000) return `${(v / 1000).toFixed(1)}k/s`;
  return `${Math.round(v)}/s`;
}
