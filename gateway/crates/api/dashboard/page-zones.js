// Taza dashboard page `#/zones`: the low-emission zones on the map, inside vs outside daily
// means (computed here from the daily rollups of the air posts) and the before/after effect
// with its 95 % interval.

import { t, fmtNum, unit, qname } from './i18n.js';
import { DAY, q2i, iso, fmtDay, fmtDate } from './time.js';
import { api, store, loadBase, limitOf } from './api.js';
import { h, clear, loading, errorBox, svgEl, pageRoot } from './dom.js';
import { buildMap } from './map.js';
import { drawChart } from './charts.js';

export async function pageZones(ctx) {
  const { root } = pageRoot('zones', 'z.title');
  ctx.mount(root);
  root.append(h('p', { class: 'muted', i18n: 'z.desc' }));
  const body = h('div', {}, loading());
  root.append(body);
  let zones;
  try {
    [zones] = await Promise.all([api('/api/v1/zones', ctx.signal), loadBase(ctx.signal)]);
  } catch (e) {
    if (e.name === 'AbortError') return;
    clear(body); body.append(errorBox(e)); root.dataset.loaded = 'true';
    return;
  }
  clear(body);
  const inside = new Set(zones.flatMap((z) => z.posts_inside || []));
  const map = buildMap(store.posts, { zones, highlight: inside, id: 'zones-map' });
  body.append(h('section', { class: 'card map-card small-map' }, h('h2', { i18n: 'z.map' }), map.svg, h('p', { class: 'caption', i18n: 'ov.caption' })));
  if (!zones.length) {
    body.append(h('section', { class: 'card' }, h('p', { class: 'empty-title', i18n: 'z.none' })));
    root.dataset.loaded = 'true';
    return;
  }
  const jobs = [];
  for (const z of zones) {
    const effBox = h('div', {}, loading());
    const seriesBox = h('div', { class: 'charts two' });
    const insideNames = (z.posts_inside || []).map((id) => (store.posts.find((p) => p.id === id) || { name: id }).name);
    body.append(h('section', { class: 'card zone' },
      h('h2', { text: z.name }),
      h('p', {}, h('span', { i18n: 'z.start', args: { date: fmtDate(`${z.start_date}T00:00:00+05:00`) } })),
      h('p', {}, insideNames.length ? h('span', { i18n: 'z.inside', args: { list: insideNames.join(', ') } }) : h('span', { class: 'warn', i18n: 'z.noinside' })),
      h('h3', { i18n: 'z.effect' }), effBox, seriesBox));
    jobs.push(loadEffect(effBox, z, ctx.signal), loadZoneSeries(seriesBox, z, ctx.signal));
  }
  await Promise.allSettled(jobs);
  root.dataset.loaded = 'true';
}

async function loadEffect(box, z, signal) {
  let eff;
  try { eff = await api(`/api/v1/zones/${encodeURIComponent(z.id)}/effect`, signal); } catch (e) {
    if (e.name === 'AbortError') return;
    clear(box); box.append(h('p', { class: 'muted', i18n: 'z.eff.err', args: { msg: e.message } })); return;
  }
  clear(box);
  const list = Array.isArray(eff) ? eff : [eff];
  const tbody = h('tbody');
  for (const e of list) {
    const has = e.effect != null;
    // interval bar: from ci_low to ci_high on a symmetric scale
    const span = Math.max(1, ...list.map((x) => Math.max(Math.abs(x.ci_low || 0), Math.abs(x.ci_high || 0), Math.abs(x.effect || 0))));
    const sv = svgEl('svg', { viewBox: '0 0 200 24', class: 'ci', role: 'img', 'aria-label': has ? `${fmtNum(e.effect, 1)} [${fmtNum(e.ci_low, 1)}; ${fmtNum(e.ci_high, 1)}]` : t('z.eff.na') });
    const sx = (v) => 100 + (v / span) * 90;
    svgEl('line', { x1: 100, x2: 100, y1: 2, y2: 22, class: 'ci-zero' }, sv);
    if (has && e.ci_low != null && e.ci_high != null) {
      svgEl('line', { x1: sx(e.ci_low), x2: sx(e.ci_high), y1: 12, y2: 12, class: `ci-range${e.significant ? ' sig' : ''}` }, sv);
      svgEl('circle', { cx: sx(e.effect), cy: 12, r: 4, class: `ci-pt${e.significant ? ' sig' : ''}` }, sv);
    }
    tbody.append(h('tr', {},
      h('th', { scope: 'row', i18n: `q.${e.quantity}` }),
      h('td', { class: 'num' }, has ? `${e.effect > 0 ? '+' : ''}${fmtNum(e.effect, 1)} ` : '—', has ? h('span', { class: 'unit', text: unit('ug/m3') }) : null),
      h('td', { class: 'num', text: has && e.ci_low != null ? `${fmtNum(e.ci_low, 1)} … ${fmtNum(e.ci_high, 1)}` : '—' }),
      h('td', {}, sv),
      h('td', {}, has ? h('span', { class: `tag ${e.significant ? 'ok' : ''}`, i18n: e.significant ? 'common.yes' : 'common.no' }) : h('span', { class: 'muted', i18n: 'z.eff.na' })),
      h('td', { class: 'num', text: `${e.days_before ?? '—'} / ${e.days_after ?? '—'}` }),
      h('td', { class: 'num', text: `${(e.posts_inside || []).length ?? '—'} / ${e.posts_outside ?? '—'}` })));
  }
  box.append(h('div', { class: 'table-wrap' }, h('table', { class: 'data' },
    h('thead', {}, h('tr', {},
      h('th', { scope: 'col', i18n: 'z.eff.q' }), h('th', { scope: 'col', class: 'num', i18n: 'z.eff.effect' }),
      h('th', { scope: 'col', class: 'num', i18n: 'z.eff.ci' }), h('th', { scope: 'col' }, h('span', { class: 'sr-only', i18n: 'z.eff.ci' })),
      h('th', { scope: 'col', i18n: 'z.eff.sig' }), h('th', { scope: 'col', class: 'num', i18n: 'z.eff.days' }),
      h('th', { scope: 'col', class: 'num', i18n: 'z.eff.posts' }))),
    tbody)), h('p', { class: 'muted small', i18n: 'z.eff.reading' }));
}

/** Mean of the daily means of a group of posts, by day. */
function groupDaily(results) {
  const byDay = new Map();
  for (const rows of results) {
    for (const r of rows) {
      if (r.mean == null || (r.data_capture != null && r.data_capture < 0.75)) continue;
      const k = r.day || r.start;
      const e = byDay.get(k) || { x: (q2i(r.start) + q2i(r.end)) / 2, sum: 0, n: 0 };
      e.sum += r.mean; e.n += 1;
      byDay.set(k, e);
    }
  }
  return [...byDay.values()].map((e) => ({ x: e.x, v: e.sum / e.n })).sort((a, b) => a.x - b.x);
}

async function loadZoneSeries(box, z, signal) {
  const start = q2i(`${z.start_date}T00:00:00+05:00`);
  const to = Date.now();
  const from = Math.max(to - 365 * DAY, Math.min(start - 60 * DAY, to - 30 * DAY));
  const ins = new Set(z.posts_inside || []);
  const air = store.posts.filter((p) => p.kind === 'air');
  for (const q of ['pm2_5', 'no2']) {
    const svg = svgEl('svg', { 'data-chart': `zone-${z.id}-${q}` });
    const title = t('z.series', { q: qname(q) });
    box.append(h('figure', { class: 'chart-fig' }, h('figcaption', { class: 'h3', i18n: 'z.series', args: { q: qname(q) } }), svg,
      h('ul', { class: 'chart-legend' },
        h('li', {}, h('span', { class: 'key line inside', 'aria-hidden': 'true' }), h('span', { i18n: 'chart.inside' })),
        h('li', {}, h('span', { class: 'key line outside', 'aria-hidden': 'true' }), h('span', { i18n: 'chart.outside' })),
        h('li', {}, h('span', { class: 'key ref daily', 'aria-hidden': 'true' }), h('span', { i18n: 'chart.daily' })))));
    svg.classList.add('busy');
    const fetchRows = (p) => api(`/api/v1/posts/${encodeURIComponent(p.id)}/rollups?quantity=${q}&period=day&from=${encodeURIComponent(iso(from))}`, signal)
      .then((r) => r.rollups || []).catch(() => []);
    const inside = await Promise.all(air.filter((p) => ins.has(p.id)).map(fetchRows));
    const outside = await Promise.all(air.filter((p) => !ins.has(p.id)).map(fetchRows));
    if (signal.aborted) return;
    svg.classList.remove('busy');
    const dv = limitOf(q, 'daily');
    drawChart(svg, {
      title,
      series: [
        { cls: 's-inside', step: DAY, dots: false, points: groupDaily(inside) },
        { cls: 's-outside', step: DAY, dots: false, points: groupDaily(outside) },
      ],
      refs: dv != null ? [{ value: dv, label: t('chart.daily.short'), cls: 'daily' }] : [],
      marks: [{ x: start, label: t('chart.start') }],
      xMin: from, xMax: to, xFormat: fmtDay, yFormat: (v) => fmtNum(v, 0), unit: unit('ug/m3'),
      emptyLabel: t('common.nodata'),
      summary: (n, lo, hi) => t('chart.summary', { title, n, min: fmtNum(lo, 1), max: fmtNum(hi, 1), unit: unit('ug/m3') }),
    });
  }
}
