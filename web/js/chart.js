// Inline SVG charts (no library): a bar chart of one series per day. Bars carry <title>s for
// hover, and the chart has a text summary for screen readers.

import { h } from './dom.js';

/**
 * `points`: [{label, value}] in order. Returns an <svg> that scales to its container width.
 */
export function barChart(points, { title = '', unit = '', height = 180 } = {}) {
  const W = 720;
  const H = height;
  const padL = 40;
  const padB = 24;
  const padT = 12;
  const max = Math.max(1, ...points.map((p) => p.value));
  const nice = niceMax(max);
  const n = Math.max(points.length, 1);
  const bw = (W - padL - 8) / n;
  const y = (v) => padT + (H - padT - padB) * (1 - v / nice);
  const total = points.reduce((a, p) => a + p.value, 0);
  const svg = h('svg', {
    viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img',
    'aria-label': `${title}: ${total} ${unit} over ${points.length} days, peak ${max}`,
  });
  for (const frac of [0, 0.5, 1]) {
    const v = Math.round(nice * frac);
    svg.append(h('line', { x1: padL, x2: W, y1: y(v), y2: y(v), class: 'grid' }));
    svg.append(h('text', { x: padL - 6, y: y(v) + 4, class: 'axis', 'text-anchor': 'end' }, String(v)));
  }
  points.forEach((p, i) => {
    const x = padL + i * bw + Math.max(1, bw * 0.15);
    const w = Math.max(1, bw * 0.7);
    const top = y(p.value);
    svg.append(h('rect', { x, y: top, width: w, height: Math.max(0, H - padB - top), class: p.value ? 'bar' : 'bar zero', rx: 2 },
      h('title', `${p.label}: ${p.value} ${unit}`)));
    // About eight evenly spaced date labels, counted back from the newest day.
    const every = Math.ceil(n / 8);
    if ((n - 1 - i) % every === 0) {
      svg.append(h('text', { x: x + w / 2, y: H - 6, class: 'axis', 'text-anchor': 'middle' }, p.label));
    }
  });
  return svg;
}

function niceMax(v) {
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

/** Days since the Unix epoch → "Mar 5". */
export function dayLabel(day) {
  return new Date(day * 86400000).toLocaleDateString(undefined, { month: 'short', day: 'numeric', timeZone: 'UTC' });
}

/** Fills missing days with zeros between from and to (inclusive). */
export function fillDays(rows, from, to, key) {
  const by = new Map(rows.map((r) => [r.day, r[key]]));
  const out = [];
  for (let d = from; d <= to; d++) out.push({ label: dayLabel(d), value: by.get(d) || 0 });
  return out;
}
