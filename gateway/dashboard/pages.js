// Taza dashboard: the pages other than the overview and alerts (post, targets, zones, rivers),
// loaded on first visit so the overview stays light. Helpers come from app.js.

import {
  t, has, fmtNum, fmtPct, fmtDateTime, fmtTime, fmtHour, fmtDay, fmtDate, fmtMonth, unit, qname,
} from './i18n.js';
import { drawChart, svgEl } from './charts.js';
import {
  HOUR, DAY, h, clear, loading, errorBox, api, cached, store, limitOf, q2i, iso, fmtQ, riverOf,
  riverLevel, postLevel, levelBadge, districtEl, live, buildMap, pageRoot, card, loadBase,
  tokenField, commission,
} from './app.js';

// ---- post
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

// ---- targets
const METRIC_KEYS = { pm2_5_city_annual_mean: 'pm2_5', no2_city_annual_mean: 'no2', iza5_city: 'iza5' };
const STATUS_GLYPH = { met: '✓', not_met: '✗', not_enough_data: '…', in_progress: '◔' };

export async function pageTargets(ctx) {
  const { root } = pageRoot('targets', 'tg.title');
  ctx.mount(root);
  const thisYear = new Date().getFullYear();
  const sel = h('select', { id: 'tg-year' });
  for (let y = thisYear; y >= 2019; y--) sel.append(h('option', { value: y, text: String(y) }));
  sel.value = String(ctx.year || thisYear);
  const body = h('div', {}, loading('common.slow'));
  root.append(h('p', { class: 'muted', i18n: 'tg.desc' }),
    h('div', { class: 'toolbar' }, h('label', { for: 'tg-year', i18n: 'common.year' }), sel), body);
  const load = async () => {
    clear(body); body.append(loading('common.slow'));
    let card; let targets;
    try {
      [card, targets] = await Promise.all([api(`/api/v1/scores/city?year=${sel.value}`, ctx.signal), cached('/api/v1/targets', 60e3, ctx.signal)]);
    } catch (e) {
      if (e.name === 'AbortError') return;
      clear(body); body.append(errorBox(e)); return;
    }
    clear(body);
    const traj = card.trajectory || [];
    for (const m of targets.metrics || []) {
      const rows = traj.filter((r) => r.metric === m.id).sort((a, b) => a.year - b.year);
      const key = METRIC_KEYS[m.id];
      const name = key ? qname(key) : m.name;
      const u = m.unit === 'index' ? '' : unit(m.unit);
      const svg = svgEl('svg', { 'data-chart': `target-${m.id}` });
      const years = rows.map((r) => r.year);
      const sec = h('section', { class: 'card target' },
        h('h2', {}, key ? h('span', { i18n: `q.${key}` }) : h('span', { text: m.name }), m.status === 'unconfirmed' ? h('span', { class: 'tag warn', i18n: 'tg.unconfirmed' }) : null),
        h('p', { class: 'muted small' }, h('span', { i18n: 'common.source' }), `: ${m.source}`),
        h('div', { class: 'target-grid' },
          h('figure', { class: 'chart-fig' }, svg,
            h('ul', { class: 'chart-legend' },
              h('li', {}, h('span', { class: 'key line plan', 'aria-hidden': 'true' }), h('span', { i18n: 'tg.legend.plan' })),
              h('li', {}, h('span', { class: 'key dot measured', 'aria-hidden': 'true' }), h('span', { i18n: 'tg.legend.measured' })))),
          targetTable(rows, u)));
      body.append(sec);
      if (years.length) {
        drawChart(svg, {
          title: t('tg.chart', { name }),
          series: [
            { cls: 's-plan', step: 1, dots: true, points: rows.map((r) => ({ x: r.year, v: r.plan_value, label: `${r.year}: ${t('tg.plan')} ${fmtNum(r.plan_value, 1)} (${t(`tg.kind.${r.kind}`)})` })) },
            { cls: 's-measured', step: 1, dots: true, points: rows.filter((r) => r.measured != null).map((r) => ({ x: r.year, v: r.measured, capture: r.capture, label: `${r.year}: ${t('tg.measured')} ${fmtNum(r.measured, 1)}` })) },
          ],
          xMin: Math.min(...years) - 0.3,
          xMax: Math.max(...years) + 0.3,
          xTicks: years,
          xFormat: (x) => String(x),
          yFormat: (v) => fmtNum(v, 0),
          unit: u,
          captureFrom: 1,
          captureLabel: t('chart.capture'),
          emptyLabel: t('common.nodata'),
          summary: (n, lo, hi) => t('chart.summary', { title: t('tg.chart', { name }), n, min: fmtNum(lo, 1), max: fmtNum(hi, 1), unit: u }),
        });
      }
    }
    const notes = card.notes || [];
    if (notes.length) body.append(h('section', { class: 'card' }, h('h2', { i18n: 'common.note' }), h('ul', { class: 'notes' }, notes.map((n) => h('li', { text: n })))));
  };
  sel.addEventListener('change', load);
  await load();
  root.dataset.loaded = 'true';
}

function targetTable(rows, u) {
  const tbody = h('tbody');
  for (const r of rows) {
    tbody.append(h('tr', { class: `k-${r.kind}` },
      h('th', { scope: 'row', text: String(r.year) }),
      h('td', { i18n: `tg.kind.${r.kind}` }),
      h('td', { class: 'num', text: `${fmtNum(r.plan_value, 1)}` }),
      h('td', { class: 'num', text: r.measured != null ? fmtNum(r.measured, 1) : '—' }),
      h('td', { class: 'num', text: fmtPct(r.capture) }),
      h('td', {}, h('span', { class: `status st-${r.status}` }, h('span', { 'aria-hidden': 'true', text: `${STATUS_GLYPH[r.status] || ''} ` }), h('span', { i18n: `tg.st.${r.status}` })),
        r.note ? h('div', { class: 'muted small', text: r.note }) : null)));
  }
  return h('div', { class: 'table-wrap' }, h('table', { class: 'data' },
    h('thead', {}, h('tr', {},
      h('th', { scope: 'col', i18n: 'common.year' }), h('th', { scope: 'col', i18n: 'tg.kind' }),
      h('th', { scope: 'col', class: 'num' }, h('span', { i18n: 'tg.plan' }), u ? `, ${u}` : ''),
      h('th', { scope: 'col', class: 'num' }, h('span', { i18n: 'tg.measured' }), u ? `, ${u}` : ''),
      h('th', { scope: 'col', class: 'num', i18n: 'tg.capture' }), h('th', { scope: 'col', i18n: 'common.status' }))),
    tbody));
}

// ---- zones
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

// ---- rivers
export async function pageRivers(ctx) {
  const { root } = pageRoot('rivers', 'rv.title');
  ctx.mount(root);
  root.append(h('p', { class: 'muted', i18n: 'rv.desc' }));
  const body = h('div', {}, loading());
  root.append(body);
  live.open(null);
  try { await loadBase(ctx.signal); } catch (e) {
    if (e.name === 'AbortError') return;
    clear(body); body.append(errorBox(e)); root.dataset.loaded = 'true';
    return;
  }
  clear(body);
  const rivers = store.rivers;
  if (!rivers.length) { body.append(h('p', { class: 'empty-title', i18n: 'rv.none' })); root.dataset.loaded = 'true'; return; }
  if (rivers.some((r) => r.provisional)) {
    body.append(h('div', { class: 'banner warn', role: 'note' }, h('strong', { i18n: 'common.provisional' }), ': ', h('span', { i18n: 'rv.provisional' })));
  }
  const grid = h('div', { class: 'river-grid' });
  body.append(grid);
  for (const r of rivers) {
    const p = store.posts.find((x) => x.id === r.post) || { id: r.post, name: r.post, kind: 'river' };
    const lv = r.level;
    const lvl = riverLevel(r.post);
    const cls = r.overall_class;
    const clsText = cls == null ? null : cls >= 6 ? h('span', { i18n: 'rv.class6' }) : h('span', { i18n: 'rv.classn', args: { n: cls } });
    const latestLevel = store.latest.get(`${r.post}:water_level`);
    let gauge = null;
    if (lv && lv.critical_level_cm) {
      const pct = Math.max(0, Math.min(100, Math.round((lv.level_cm / lv.critical_level_cm) * 20) * 5));
      gauge = h('div', { class: 'gauge', role: 'img', 'aria-label': `${fmtNum(lv.level_cm, 0)} / ${fmtNum(lv.critical_level_cm, 0)} ${unit('cm')}` },
        h('div', { class: `gauge-fill lvl-${lvl.level} w${pct}` }));
    }
    grid.append(h('section', { class: 'card river-card' },
      h('h2', {}, h('a', { href: `#/post/${encodeURIComponent(r.post)}`, text: p.name })),
      h('p', { class: 'muted small' }, r.river || p.river || '', ' · ', r.post),
      h('div', { class: 'river-row' },
        h('div', { class: 'kpi' },
          h('div', { class: 'kpi-label', i18n: 'rv.level' }),
          h('div', { class: 'kpi-value' }, h('span', { dataset: { live: `${r.post}:water_level` }, text: latestLevel ? fmtQ('water_level', latestLevel.value) : (lv ? fmtQ('water_level', lv.level_cm) : '—') }), ' ', h('span', { class: 'unit', text: unit('cm') })),
          gauge,
          h('div', { class: 'kpi-sub' }, levelBadge(lvl))),
        h('dl', { class: 'meta' },
          h('dt', { i18n: 'rv.critical' }), h('dd', { text: lv && lv.critical_level_cm != null ? `${fmtNum(lv.critical_level_cm, 0)} ${unit('cm')}` : '—' }),
          h('dt', { i18n: 'rv.margin' }), h('dd', { text: lv && lv.below_critical_cm != null ? `${fmtNum(lv.below_critical_cm, 0)} ${unit('cm')}` : '—' }),
          h('dt', { i18n: 'rv.rise' }), h('dd', {}, lv && lv.rise_cm_per_h != null ? h('span', { i18n: 'rv.cmh', args: { v: `${lv.rise_cm_per_h > 0 ? '+' : ''}${fmtNum(lv.rise_cm_per_h, 1)}` } }) : '—',
            lv && lv.rising_fast ? h('span', { class: 'tag bad', i18n: 'rv.risefast' }) : null),
          h('dt', { i18n: 'common.time' }), h('dd', { text: lv ? fmtDateTime(lv.at) : '—' }))),
      h('div', { class: 'river-row' },
        h('div', { class: 'kpi' },
          h('div', { class: 'kpi-label', i18n: 'rv.class' }),
          h('div', { class: 'kpi-value' }, clsText || '—', r.provisional ? h('span', { class: 'tag warn', i18n: 'common.provisional' }) : null),
          r.overall_wording ? h('div', { class: 'kpi-sub', lang: 'ru', text: r.overall_wording }) : null),
        h('div', {},
          h('h3', { i18n: 'rv.params' }),
          h('ul', { class: 'params' }, (r.parameters || []).map((pc) => h('li', {},
            h('span', { i18n: `q.${pc.quantity}` }), `: ${fmtQ(pc.quantity, pc.value)} ${unit(pc.quantity === 'dissolved_oxygen' ? 'mg/L' : '')} — `,
            pc.class >= 6 ? h('span', { i18n: 'rv.class6' }) : h('span', { i18n: 'rv.classn', args: { n: pc.class } })))),
          h('p', { class: 'small' }, h('span', { i18n: 'rv.izv' }), ': ',
            r.izv && r.izv.status === 'computed' ? `${fmtNum(r.izv.value, 2)} ${r.izv.class || ''}` : h('span', { class: 'muted', i18n: 'rv.izv.na' })),
          r.oxygen_below_fishery_min ? h('p', { class: 'tag bad', i18n: 'rv.oxygen' }) : null,
          r.oxygen_pollution ? h('p', { class: 'tag bad', i18n: `rv.oxy.${r.oxygen_pollution}` }) : null))));
  }
  root.dataset.loaded = 'true';
}

