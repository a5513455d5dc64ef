// Taza dashboard page `#/targets`: the city's plan trajectory 2019–2025 (PM2.5, NO₂, ИЗА5)
// beside the measured values and their status, by year.

import { t, fmtNum, fmtPct, unit, qname } from './i18n.js';
import { api, cached } from './api.js';
import { h, clear, loading, errorBox, svgEl, pageRoot } from './dom.js';
import { drawChart } from './charts.js';

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
