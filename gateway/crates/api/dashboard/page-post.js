// Taza dashboard page `#/post/{id}`: one post. Live values with QA flags, its registry data
// and config state, the commissioning card (operator token), charts of the last day, 30 days
// and 12 months with the data capture, and the latest readings.

import { t, has, fmtNum, fmtPct, fmtQ, unit } from './i18n.js';
import { HOUR, DAY, q2i, iso, fmtDateTime, fmtTime, fmtHour, fmtDay, fmtDate, fmtMonth } from './time.js';
import { api, store, loadBase, limitOf, riverOf, commission } from './api.js';
import { h, clear, loading, errorBox, svgEl, pageRoot, card, tokenField } from './dom.js';
import { postLevel, levelBadge, districtEl } from './levels.js';
import { live } from './live.js';
import { drawChart } from './charts.js';

const CHARTABLE_AIR = ['pm2_5', 'pm10', 'no2', 'pm1', 'temperature', 'humidity', 'pressure'];
const CHARTABLE_RIVER = ['water_level', 'water_temperature', 'dissolved_oxygen', 'ph', 'conductivity', 'turbidity'];

export async function pagePost(ctx, id) {
  const { root, h1 } = pageRoot('post', 'post.title', { name: id });
  root.dataset.postId = id;
  ctx.mount(root);
  root.prepend(h('a', { href: '#/', class: 'back', i18n: 'common.back' }));
  const body = h('div', {}, loading());
  root.append(body);
  live.open(id);
  try {
    await loadBase(ctx.signal);
  } catch (e) {
    if (e.name === 'AbortError') return;
    clear(body); body.append(errorBox(e)); root.dataset.loaded = 'true';
    return;
  }
  const p = store.posts.find((x) => x.id === id);
  if (!p) {
    clear(body); body.append(h('p', { class: 'error', i18n: 'post.notfound' })); root.dataset.loaded = 'true';
    return;
  }
  h1.dataset.i18nArgs = JSON.stringify({ name: p.name });
  h1.textContent = t('post.title', { name: p.name });
  clear(body);

  const mine = [...store.latest.values()].filter((r) => r.post === id).map((r) => r.quantity);
  const quantities = [...new Set([...(p.sensors || []).filter((s) => has(`q.${s}`)), ...mine])];
  const st = p.status;
  const lv = postLevel(p);
  body.append(h('div', { class: 'post-head' },
    h('span', { class: 'tag', i18n: `common.kind.${p.kind}` }),
    levelBadge(lv),
    h('span', { class: `tag ${st && st.online ? 'ok' : 'bad'}`, i18n: st && st.online ? 'common.online' : 'common.offline' }),
    h('span', { class: 'muted', text: p.id })));

  const meta = h('dl', { class: 'meta' },
    h('dt', { i18n: 'common.district' }), h('dd', {}, districtEl(p.district)),
    p.river ? [h('dt', { i18n: 'common.river' }), h('dd', { text: p.river })] : null,
    h('dt', { i18n: 'post.coords' }), h('dd', { text: p.latitude != null ? `${fmtNum(p.latitude, 4)}, ${fmtNum(p.longitude, 4)}` : '—' }),
    h('dt', { i18n: 'post.sensors' }), h('dd', { text: (p.sensors || []).join(', ') || '—' }),
    h('dt', { i18n: 'post.cadence' }), h('dd', { i18n: 'post.sec', args: { n: p.cadence_s } }),
    h('dt', { i18n: 'post.firmware' }), h('dd', { text: st ? st.firmware : '—' }),
    h('dt', { i18n: 'post.config' }), h('dd', {}, p.config
      ? h('span', { class: `tag ${p.config.state === 'current' ? 'ok' : p.config.state === 'outdated' ? 'bad' : ''}`,
        dataset: { configState: p.config.state }, i18n: `post.config.${p.config.state}` })
      : '—'),
    h('dt', { i18n: 'post.connection' }), h('dd', { text: st && st.received_at ? fmtDateTime(st.received_at) : '—' }));

  // live cards
  const grid = h('div', { class: 'live-grid' });
  const flagEls = new Map();
  for (const q of quantities) {
    const r = store.latest.get(`${id}:${q}`);
    const flags = h('div', { class: 'flags' });
    flagEls.set(q, flags);
    grid.append(h('div', { class: 'live-card' },
      h('div', { class: 'lc-q', i18n: `q.${q}` }),
      h('div', { class: 'lc-v' }, h('span', { class: 'val', dataset: { live: `${id}:${q}` }, text: r ? fmtQ(q, r.value) : '—' }), ' ', h('span', { class: 'unit', text: unit(r ? r.unit : '') })),
      h('div', { class: 'lc-t muted', dataset: { liveTime: `${id}:${q}` }, text: r ? fmtTime(r.time) : '—' }),
      flags));
  }
  const renderFlags = () => {
    for (const [q, el] of flagEls) {
      const r = store.latest.get(`${id}:${q}`);
      clear(el);
      const f = r && r.flags ? r.flags : [];
      if (f.length) for (const x of f) el.append(h('span', { class: `flag flag-${x}`, i18n: has(`flag.${x}`) ? `flag.${x}` : undefined, text: has(`flag.${x}`) ? undefined : x }));
    }
  };
  renderFlags();

  body.append(h('div', { class: 'post-grid' },
    card('post.live', grid),
    card('post.meta', meta)));

  // Commissioning, for the technician at the post (operator token).
  const report = h('pre', { class: 'commission-report', role: 'status', 'aria-live': 'polite' });
  const run = h('button', { type: 'button', class: 'btn', id: 'commission-run', i18n: 'post.commission.run', on: { click: async () => {
    run.disabled = true;
    delete report.dataset.verdict;
    report.textContent = t('post.commission.waiting');
    try {
      const text = await commission(id);
      report.textContent = text;
      report.dataset.verdict = text.startsWith('PASS') ? 'pass' : 'fail';
    } catch (e) {
      report.textContent = t(e.status === 401 || e.status === 403 ? 'alerts.ackdenied' : 'common.error', { msg: e.message });
    }
    run.disabled = false;
  } } });
  body.append(card('post.commission.title', h('div', { class: 'token-row' },
    h('p', { class: 'muted small', i18n: 'post.commission.help' }),
    h('label', { for: 'commission-token', i18n: 'alerts.token' }), tokenField('commission-token'),
    run, report)));

  // charts
  const chartable = (p.kind === 'river' ? CHARTABLE_RIVER : CHARTABLE_AIR).filter((q) => quantities.includes(q));
  if (!chartable.length) chartable.push(...quantities.slice(0, 1));
  let current = chartable[0];
  const picker = h('div', { class: 'seg', role: 'group', 'aria-label': t('post.show') });
  const charts = {
    day: svgEl('svg', { 'data-chart': 'day' }),
    month: svgEl('svg', { 'data-chart': 'month' }),
    year: svgEl('svg', { 'data-chart': 'year' }),
  };
  const recent = h('div', {});
  const chartCards = h('div', { class: 'charts' },
    h('figure', { class: 'card chart-card' }, h('figcaption', { class: 'h2', i18n: 'post.chart.day' }), charts.day, chartLegend(p, 'hour')),
    h('figure', { class: 'card chart-card' }, h('figcaption', { class: 'h2', i18n: 'post.chart.month' }), charts.month, chartLegend(p, 'day')),
    h('figure', { class: 'card chart-card wide' }, h('figcaption', { class: 'h2', i18n: 'post.chart.year' }), charts.year, chartLegend(p, 'day')));
  const drawAll = async () => {
    for (const b of picker.querySelectorAll('button')) b.setAttribute('aria-pressed', String(b.dataset.q === current));
    await Promise.all([
      drawRollups(charts.day, p, current, 'hour', Date.now() - DAY, ctx.signal),
      drawRollups(charts.month, p, current, 'day', Date.now() - 30 * DAY, ctx.signal),
      drawRollups(charts.year, p, current, 'day', Date.now() - 365 * DAY, ctx.signal),
      loadRecent(recent, p, current, ctx.signal),
    ]);
  };
  for (const q of chartable) {
    picker.append(h('button', { type: 'button', dataset: { q }, i18n: `q.${q}`, on: { click: () => { current = q; drawAll(); } } }));
  }
  body.append(h('div', { class: 'toolbar' }, h('span', { class: 'muted', i18n: 'post.show' }), picker), chartCards,
    card('post.recent', recent));
  ctx.hook((post, rows) => {
    if (post && post !== id) return;
    renderFlags();
    if (rows.some((r) => r.quantity === current)) appendRecent(recent, rows.filter((r) => r.quantity === current));
  });
  await drawAll();
  root.dataset.loaded = 'true';
}

function chartLegend(p, period) {
  const items = [h('li', {}, h('span', { class: 'key line', 'aria-hidden': 'true' }), h('span', { i18n: 'chart.mean' }))];
  items.push(h('li', {}, h('span', { class: 'key band', 'aria-hidden': 'true' }), h('span', { i18n: 'chart.range' })));
  if (p.kind === 'river') items.push(h('li', {}, h('span', { class: 'key ref critical', 'aria-hidden': 'true' }), h('span', { i18n: 'chart.critical' })));
  else items.push(h('li', {}, h('span', { class: `key ref ${period === 'hour' ? 'onetime' : 'daily'}`, 'aria-hidden': 'true' }), h('span', { i18n: period === 'hour' ? 'chart.onetime' : 'chart.daily' })));
  items.push(h('li', {}, h('span', { class: 'key cap-ok', 'aria-hidden': 'true' }), h('span', { i18n: 'chart.capture' })));
  items.push(h('li', {}, h('span', { class: 'key cap-low', 'aria-hidden': 'true' }), h('span', { i18n: 'chart.lowcapture' })));
  return h('ul', { class: 'chart-legend' }, items);
}

function refsFor(p, q, period) {
  if (q === 'water_level') {
    const rs = riverOf(p.id);
    const c = rs && rs.level ? rs.level.critical_level_cm : null;
    return c != null ? [{ value: c, label: t('chart.critical.short'), cls: 'critical', always: true }] : [];
  }
  const v = limitOf(q, period === 'hour' ? 'one_time' : 'daily');
  return v != null ? [{ value: v, label: t(period === 'hour' ? 'chart.onetime.short' : 'chart.daily.short'), cls: period === 'hour' ? 'onetime' : 'daily' }] : [];
}

async function drawRollups(svg, p, q, period, from, signal) {
  svg.removeAttribute('data-ready');
  svg.classList.add('busy');
  const url = `/api/v1/posts/${encodeURIComponent(p.id)}/rollups?quantity=${q}&period=${period}&from=${encodeURIComponent(iso(from))}`;
  let rows = [];
  let u = '';
  try {
    const res = await api(url, signal);
    rows = res.rollups || [];
    u = res.unit;
  } catch (e) {
    if (e.name === 'AbortError') return;
  }
  svg.classList.remove('busy');
  const title = t(period === 'hour' ? 'post.chart.day' : (Date.now() - from > 40 * DAY ? 'post.chart.year' : 'post.chart.month'));
  const long = Date.now() - from > 40 * DAY;
  const fmtX = period === 'hour' ? fmtHour : (long ? fmtMonth : fmtDay);
  drawChart(svg, {
    width: long ? 1440 : 720,
    height: long ? 270 : 250,
    title,
    series: [{
      cls: 's-main',
      band: true,
      step: period === 'hour' ? HOUR : DAY,
      points: rows.map((r) => {
        const x = (q2i(r.start) + q2i(r.end)) / 2;
        return {
          x, v: r.mean, min: r.min, max: r.max, capture: r.data_capture,
          label: `${period === 'hour' ? fmtDateTime(r.start) : (r.day || fmtDate(r.start))}: ${fmtQ(q, r.mean)} ${unit(r.unit)} (${fmtQ(q, r.min)}–${fmtQ(q, r.max)}), ${t('chart.capture')} ${fmtPct(r.data_capture)}`,
        };
      }),
    }],
    refs: refsFor(p, q, period),
    xMin: from,
    xMax: Date.now(),
    xFormat: fmtX,
    yFormat: (v) => fmtNum(v, Math.abs(v) < 10 && v % 1 ? 1 : 0),
    unit: unit(u),
    yZero: q !== 'ph' && q !== 'pressure' && q !== 'temperature' && q !== 'water_temperature',
    captureLabel: t('chart.capture'),
    emptyLabel: t('common.nodata'),
    summary: (n, lo, hi) => t('chart.summary', { title, n, min: fmtQ(q, lo), max: fmtQ(q, hi), unit: unit(u) }),
  });
}

async function loadRecent(box, p, q, signal) {
  clear(box);
  box.append(loading());
  let rows = [];
  try {
    const res = await api(`/api/v1/posts/${encodeURIComponent(p.id)}/readings?quantity=${q}&from=${encodeURIComponent(iso(Date.now() - 3 * HOUR))}`, signal);
    rows = (res.readings || []).slice(-12).reverse();
  } catch (e) {
    if (e.name === 'AbortError') return;
    clear(box); box.append(errorBox(e)); return;
  }
  clear(box);
  const tbody = h('tbody', { class: 'recent-body' });
  box.append(h('div', { class: 'table-wrap' }, h('table', { class: 'data' },
    h('thead', {}, h('tr', {}, h('th', { scope: 'col', i18n: 'common.time' }), h('th', { scope: 'col', i18n: 'post.quantity' }),
      h('th', { scope: 'col', class: 'num', i18n: 'common.value' }), h('th', { scope: 'col', i18n: 'post.flags' }))),
    tbody)));
  if (!rows.length) tbody.append(h('tr', {}, h('td', { colspan: 4, class: 'muted', i18n: 'common.nodata' })));
  for (const r of rows) tbody.append(recentRow(r, q));
}

function recentRow(r, q) {
  const f = r.flags || [];
  return h('tr', { class: f.length ? 'flagged' : '' },
    h('td', { text: fmtDateTime(r.time) }),
    h('td', { i18n: `q.${r.quantity || q}` }),
    h('td', { class: 'num' }, fmtQ(q, r.value), ' ', h('span', { class: 'unit', text: unit(r.unit) })),
    h('td', {}, f.length ? f.map((x) => h('span', { class: `flag flag-${x}`, i18n: has(`flag.${x}`) ? `flag.${x}` : undefined, text: has(`flag.${x}`) ? undefined : x })) : h('span', { class: 'muted', i18n: 'post.noflags' })));
}

function appendRecent(box, rows) {
  const tbody = box.querySelector('.recent-body');
  if (!tbody) return;
  const empty = tbody.querySelector('td[colspan]');
  if (empty) clear(tbody);
  for (const r of rows) tbody.prepend(recentRow(r, r.quantity));
  while (tbody.children.length > 12) tbody.lastChild.remove();
}
