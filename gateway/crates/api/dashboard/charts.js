// Taza dashboard (core): small inline-SVG time charts (no library): mean line, min–max band,
// data-capture strip, limit lines. Presentation through CSS classes only (the
// Content-Security-Policy forbids inline styles). Loaded only by the pages that draw charts.

import { svgEl } from './dom.js';

/** Round tick values covering [lo, hi]. */
export function niceTicks(lo, hi, count = 5) {
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) return [0, 1];
  if (hi - lo < 1e-9) { hi = lo + 1; }
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
  const out = [];
  for (let v = Math.floor(lo / step) * step; v <= hi + step * 0.5; v += step) out.push(Math.round(v / step) * step);
  return out;
}

const M = { l: 52, r: 96, t: 26, b: 44 };
const STRIP = 7; // capture strip height

/**
 * Draw a time chart into `svg`.
 * opts: {
 *   series: [{ points: [{x, v, min?, max?, capture?, label?}], cls, label, band?: bool, step?: number, dots?: bool }],
 *   refs: [{ value, label, cls }], marks: [{ x, label }],
 *   xMin, xMax, xTicks: [x...] | null, xFormat(x), yFormat(v), unit, title, captureFrom: index of the series whose capture is drawn,
 *   captureLabel, lowCaptureLabel, emptyLabel, yZero: bool
 * }
 * Sets data-ready="true" when at least one series path is drawn, "empty" otherwise.
 */
export function drawChart(svg, opts) {
  const W = opts.width || 720;
  const H = opts.height || 250;
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  svg.setAttribute('role', 'img');
  svg.classList.add('chart');
  const titleEl = svgEl('title', {}, svg);
  titleEl.textContent = opts.title || '';

  const all = opts.series.flatMap((s) => s.points.filter((p) => p.v != null && Number.isFinite(p.v)));
  if (all.length === 0) {
    const t = svgEl('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle', class: 'chart-empty' }, svg);
    t.textContent = opts.emptyLabel || '—';
    svg.setAttribute('aria-label', `${opts.title || ''}: ${opts.emptyLabel || ''}`);
    svg.setAttribute('data-ready', 'empty');
    return;
  }

  const xs = all.map((p) => p.x);
  const xMin = opts.xMin ?? Math.min(...xs);
  const xMax = opts.xMax ?? Math.max(...xs);
  let yLo = Math.min(...opts.series.flatMap((s) => s.points.map((p) => (s.band && p.min != null ? p.min : p.v)).filter(Number.isFinite)));
  let yHi = Math.max(...opts.series.flatMap((s) => s.points.map((p) => (s.band && p.max != null ? p.max : p.v)).filter(Number.isFinite)));
  for (const r of opts.refs || []) {
    // Keep a limit in view when it is near the data (within 2x), so the reader sees the margin.
    if (r.value != null && (r.always || r.value <= Math.max(yHi, 1) * 2)) yHi = Math.max(yHi, r.value);
  }
  if (opts.yZero !== false) yLo = Math.min(0, yLo);
  const ticks = niceTicks(yLo, yHi + (yHi - yLo) * 0.05);
  const y0 = ticks[0];
  const y1 = ticks[ticks.length - 1];
  const pw = W - M.l - M.r;
  const ph = H - M.t - M.b - STRIP - 4;
  const sx = (x) => M.l + (xMax === xMin ? pw / 2 : ((x - xMin) / (xMax - xMin)) * pw);
  const sy = (v) => M.t + ph - ((v - y0) / (y1 - y0)) * ph;
  const yf = opts.yFormat || ((v) => String(v));

  // grid + y axis
  const grid = svgEl('g', { class: 'grid' }, svg);
  for (const v of ticks) {
    svgEl('line', { x1: M.l, x2: M.l + pw, y1: sy(v), y2: sy(v) }, grid);
    const t = svgEl('text', { x: M.l - 6, y: sy(v) + 4, 'text-anchor': 'end', class: 'tick' }, grid);
    t.textContent = yf(v);
  }
  if (opts.unit) {
    const u = svgEl('text', { x: M.l - 6, y: M.t - 12, 'text-anchor': 'end', class: 'tick unit' }, svg);
    u.textContent = opts.unit;
  }
  // x ticks
  const xt = opts.xTicks || defaultXTicks(xMin, xMax);
  for (const x of xt) {
    if (x < xMin || x > xMax) continue;
    svgEl('line', { x1: sx(x), x2: sx(x), y1: M.t + ph, y2: M.t + ph + 4, class: 'axis' }, svg);
    const t = svgEl('text', { x: sx(x), y: H - 8, 'text-anchor': 'middle', class: 'tick' }, svg);
    t.textContent = opts.xFormat ? opts.xFormat(x) : String(x);
  }
  svgEl('line', { x1: M.l, x2: M.l + pw, y1: M.t + ph, y2: M.t + ph, class: 'axis' }, svg);

  // vertical marks (e.g. a zone start)
  for (const m of opts.marks || []) {
    if (m.x < xMin || m.x > xMax) continue;
    svgEl('line', { x1: sx(m.x), x2: sx(m.x), y1: M.t, y2: M.t + ph, class: 'mark' }, svg);
    const t = svgEl('text', { x: sx(m.x) + 4, y: M.t + 10, class: 'mark-label' }, svg);
    t.textContent = m.label;
  }

  // reference lines
  for (const r of opts.refs || []) {
    if (r.value == null || r.value < y0 || r.value > y1) continue;
    svgEl('line', { x1: M.l, x2: M.l + pw, y1: sy(r.value), y2: sy(r.value), class: `ref ${r.cls || ''}` }, svg);
    const t = svgEl('text', { x: M.l + pw + 6, y: sy(r.value) + 4, class: `ref-label ${r.cls || ''}` }, svg);
    t.textContent = r.label;
  }

  let drawn = 0;
  const period = (s) => s.step || medianStep(s.points.map((p) => p.x));
  for (const s of opts.series) {
    const pts = s.points.filter((p) => p.v != null && Number.isFinite(p.v)).sort((a, b) => a.x - b.x);
    if (!pts.length) continue;
    const gap = period(s) * 1.5;
    const runs = [];
    let run = [];
    for (const p of pts) {
      if (run.length && p.x - run[run.length - 1].x > gap) { runs.push(run); run = []; }
      run.push(p);
    }
    runs.push(run);
    const g = svgEl('g', { class: `series-group ${s.cls || ''}` }, svg);
    if (s.band) {
      for (const r of runs) {
        const b = r.filter((p) => p.min != null && p.max != null);
        if (b.length < 2) continue;
        const d = b.map((p, i) => `${i ? 'L' : 'M'}${sx(p.x).toFixed(1)},${sy(p.max).toFixed(1)}`).join('')
          + b.slice().reverse().map((p) => `L${sx(p.x).toFixed(1)},${sy(p.min).toFixed(1)}`).join('') + 'Z';
        svgEl('path', { d, class: 'band' }, g);
      }
    }
    for (const r of runs) {
      const d = r.length === 1
        ? `M${(sx(r[0].x) - 2).toFixed(1)},${sy(r[0].v).toFixed(1)}h4`
        : r.map((p, i) => `${i ? 'L' : 'M'}${sx(p.x).toFixed(1)},${sy(p.v).toFixed(1)}`).join('');
      svgEl('path', { d, class: 'series' }, g);
      drawn++;
    }
    const dots = s.dots ?? pts.length <= 60;
    for (const p of pts) {
      const low = p.capture != null && p.capture < 0.75;
      const c = svgEl('circle', { cx: sx(p.x), cy: sy(p.v), r: dots ? 3 : 1.6, class: `pt${low ? ' low' : ''}` }, g);
      if (p.label) { const tt = svgEl('title', {}, c); tt.textContent = p.label; }
    }
  }

  // capture strip
  const cs = opts.series[opts.captureFrom ?? 0];
  if (cs && cs.points.some((p) => p.capture != null)) {
    const step = period(cs);
    const wBar = Math.max(1, (step / Math.max(1, xMax - xMin)) * pw - 0.5);
    const top = M.t + ph + 18;
    const g = svgEl('g', { class: 'capture' }, svg);
    for (const p of cs.points) {
      if (p.capture == null) continue;
      const lvl = p.capture >= 0.75 ? 'ok' : p.capture > 0 ? 'low' : 'none';
      const rect = svgEl('rect', { x: sx(p.x) - wBar / 2, y: top, width: wBar, height: STRIP, class: `cap ${lvl}` }, g);
      const tt = svgEl('title', {}, rect);
      tt.textContent = `${opts.captureLabel || ''}: ${Math.round(p.capture * 100)} %`;
    }
  }

  const vals = all.map((p) => p.v);
  svg.setAttribute('aria-label', opts.summary ? opts.summary(all.length, Math.min(...vals), Math.max(...vals)) : (opts.title || ''));
  svg.setAttribute('data-ready', drawn > 0 ? 'true' : 'empty');
}

function medianStep(xs) {
  if (xs.length < 2) return 1;
  const d = [];
  for (let i = 1; i < xs.length; i++) d.push(xs[i] - xs[i - 1]);
  d.sort((a, b) => a - b);
  return d[Math.floor(d.length / 2)] || 1;
}

function defaultXTicks(lo, hi) {
  const n = 6;
  const out = [];
  for (let i = 0; i <= n; i++) out.push(lo + ((hi - lo) * i) / n);
  return out;
}
