// Taza dashboard page `#/`: the overview. The map of every post coloured by its level, the
// city card (loads on its own, never blocks the map), open alerts and the live table.

import { fmtNum, fmtPct, fmtQ, unit, qname } from './i18n.js';
import { fmtTime, fmtDateTime } from './time.js';
import { api, store, loadBase } from './api.js';
import { h, clear, loading, errorBox, pageRoot } from './dom.js';
import { postLevel, mainQuantity, levelBadge, districtEl } from './levels.js';
import { live } from './live.js';
import { buildMap, mapLegend } from './map.js';
import { loadAlerts } from './alert-list.js';

export async function pageOverview(ctx) {
  const { root } = pageRoot('overview', 'ov.title');
  ctx.mount(root);
  const mapBox = h('div', { class: 'map-box' }, loading());
  const cityBox = h('div', { class: 'city' }, loading('common.slow'));
  const alertBox = h('div', { class: 'alerts-panel', 'aria-live': 'polite' });
  const liveBox = h('div', { class: 'live-box' }, loading());
  root.append(h('div', { class: 'ov-grid' },
    h('section', { class: 'card map-card' }, h('h2', { i18n: 'ov.map' }), mapBox,
      h('p', { class: 'caption', i18n: 'ov.caption' }), mapLegend()),
    h('div', { class: 'side' },
      h('section', { class: 'card city-card' }, h('h2', { i18n: 'ov.city', args: { year: new Date().getFullYear() } }), cityBox),
      h('section', { class: 'card' }, h('h2', { i18n: 'ov.alerts' }), alertBox))),
  h('section', { class: 'card' }, h('h2', { i18n: 'ov.live' }), h('p', { class: 'muted', i18n: 'ov.livedesc' }), liveBox));

  live.open(null);
  loadAlerts(alertBox, ctx.signal);
  const cityP = loadCity(cityBox, ctx.signal);

  try {
    await loadBase(ctx.signal);
  } catch (e) {
    if (e.name === 'AbortError') return;
    clear(mapBox); mapBox.append(errorBox(e));
    root.dataset.loaded = 'true';
    return;
  }
  const posts = store.posts;
  const map = buildMap(posts);
  clear(mapBox); mapBox.append(map.svg);

  // live table
  const tbody = h('tbody');
  const levelCells = new Map();
  for (const p of posts) {
    const q = mainQuantity(p);
    const r = store.latest.get(`${p.id}:${q}`);
    const lvCell = h('td', {});
    levelCells.set(p.id, { cell: lvCell, p });
    tbody.append(h('tr', {},
      h('th', { scope: 'row' }, h('a', { href: `#/post/${encodeURIComponent(p.id)}`, text: p.name }), h('div', { class: 'muted small', text: p.id })),
      h('td', {}, districtEl(p.district)),
      h('td', {}, h('span', { i18n: `q.${q}` })),
      h('td', { class: 'num' }, h('span', { class: 'val', dataset: { live: `${p.id}:${q}` }, text: r ? fmtQ(q, r.value) : '—' }), ' ', h('span', { class: 'unit', text: unit(r ? r.unit : (q === 'water_level' ? 'cm' : 'ug/m3')) })),
      h('td', { class: 'num' }, p.kind === 'air'
        ? [h('span', { class: 'val', dataset: { live: `${p.id}:no2` }, text: store.latest.has(`${p.id}:no2`) ? fmtQ('no2', store.latest.get(`${p.id}:no2`).value) : '—' }), ' ', h('span', { class: 'unit', text: unit('ug/m3') })]
        : h('span', { class: 'muted', text: '—' })),
      lvCell,
      h('td', { class: 'num muted', dataset: { liveTime: `${p.id}:${q}` }, text: r ? fmtTime(r.time) : '—' })));
  }
  const table = h('table', { class: 'data live-table' },
    h('caption', { class: 'sr-only', i18n: 'ov.live' }),
    h('thead', {}, h('tr', {},
      h('th', { scope: 'col', i18n: 'common.post' }), h('th', { scope: 'col', i18n: 'common.district' }),
      h('th', { scope: 'col', i18n: 'post.quantity' }), h('th', { scope: 'col', class: 'num', i18n: 'common.value' }),
      h('th', { scope: 'col', class: 'num', i18n: 'q.no2' }), h('th', { scope: 'col', i18n: 'common.level' }),
      h('th', { scope: 'col', class: 'num', i18n: 'common.time' }))),
    tbody);
  clear(liveBox); liveBox.append(h('div', { class: 'table-wrap' }, table));
  const renderLevels = (only) => {
    for (const { cell, p } of levelCells.values()) {
      if (only && only !== p.id) continue;
      clear(cell); cell.append(levelBadge(postLevel(p)));
    }
  };
  renderLevels();
  ctx.hook((post) => { map.update(); renderLevels(post); });
  root.dataset.loaded = 'true';
  await cityP;
}

function latestTarget(traj, metric) {
  const rows = traj.filter((r) => r.metric === metric && r.kind === 'target');
  return rows.sort((a, b) => b.year - a.year)[0] || null;
}

async function loadCity(box, signal) {
  let card;
  try {
    card = await api('/api/v1/scores/city?view=summary', signal);
  } catch (e) {
    if (e.name === 'AbortError') return;
    clear(box); box.append(errorBox(e)); box.dataset.loaded = 'true';
    return;
  }
  clear(box);
  const lv = card.level || {};
  const grade = lv.level;
  box.append(h('div', { class: 'kpi-row' },
    h('div', { class: `kpi grade-${grade || 'none'}` },
      h('div', { class: 'kpi-label', i18n: 'ov.grade' }),
      h('div', { class: 'kpi-value' }, grade ? h('span', { i18n: `grade.${grade}` }) : '—'),
      h('div', { class: 'kpi-sub' },
        h('span', { i18n: 'ov.si' }), ` ${fmtNum(lv.si, 1)} · `, h('span', { i18n: 'ov.np' }), ` ${fmtNum(lv.np_percent, 1)} %`)),
    h('div', { class: 'kpi' },
      h('div', { class: 'kpi-label', i18n: 'ov.iza' }),
      h('div', { class: 'kpi-value' }, card.iza && card.iza.summed && card.iza.summed.length ? fmtNum(card.iza.value, 1) : '—',
        card.iza && card.iza.summed && card.iza.summed.length ? [' ', h('span', { class: 'small', i18n: `grade.${card.iza.grade}` })] : null),
      card.iza && !card.iza.complete ? h('div', { class: 'kpi-sub warn', i18n: 'ov.izaincomplete' }) : null)));
  const metrics = { pm2_5: 'pm2_5_city_annual_mean', no2: 'no2_city_annual_mean' };
  for (const q of ['pm2_5', 'no2']) {
    const cp = (card.pollutants || []).find((p) => p.quantity === q) || {};
    let v = cp.annual_mean_ug_m3;
    let indicative = false;
    let capture = cp.mean_capture;
    if (v == null) {
      // Not enough capture for a valid annual mean yet: show the mean of the posts' means so far.
      const ms = (card.posts || []).flatMap((p) => p.pollutants.filter((x) => x.quantity === q && x.annual && x.annual.mean != null).map((x) => x.annual));
      if (ms.length) {
        v = ms.reduce((s, m) => s + m.mean, 0) / ms.length;
        capture = ms.reduce((s, m) => s + (m.capture || 0), 0) / ms.length;
        indicative = true;
      }
    }
    const target = latestTarget(card.trajectory || [], metrics[q]);
    const above = target && v != null && v > target.plan_value;
    const ratio = target && v != null ? Math.min(1.5, v / target.plan_value) : 0;
    const bar = h('div', { class: 'tbar', 'aria-hidden': 'true' }, h('div', { class: `tbar-fill ${above ? 'over' : 'under'} w${Math.round((ratio / 1.5) * 20) * 5}` }), h('div', { class: 'tbar-target w67' }));
    box.append(h('div', { class: 'kpi-wide' },
      h('div', { class: 'kpi-label', i18n: 'ov.annual', args: { q: qname(q) } }),
      h('div', { class: 'kpi-value' }, fmtNum(v, 1), ' ', h('span', { class: 'unit', text: unit('ug/m3') }),
        indicative ? h('span', { class: 'tag warn', i18n: 'ov.indicative' }) : null,
        target && v != null ? h('span', { class: `tag ${above ? 'bad' : 'ok'}`, i18n: above ? 'ov.above' : 'ov.below' }) : null),
      bar,
      h('div', { class: 'kpi-sub' },
        target ? h('span', { i18n: 'ov.plan', args: { year: target.year, v: `${fmtNum(target.plan_value, 0)} ${unit('ug/m3')}` } }) : null,
        ' · ', h('span', { i18n: 'ov.capture', args: { v: fmtPct(capture) } }), ' · ', h('span', { i18n: 'ov.citysofar' }))));
  }
  box.append(h('p', { class: 'muted small', i18n: 'common.updated', args: { time: fmtDateTime(card.generated_at) } }));
  box.dataset.loaded = 'true';
}
