// Taza dashboard (core): the level of a post against the limits (air: latest PM2.5 and NO₂
// against ПДК с.с. / ПДК м.р.; river: water level against the critical level), its badge, and
// district names.

import { t, has } from './i18n.js';
import { store, limitOf, riverOf } from './api.js';
import { h } from './dom.js';

export const LEVEL_GLYPH = { good: '✓', moderate: '!', high: '‼', nodata: '?' };

/** Air level of a post from its latest PM2.5 and NO₂: good | moderate | high | nodata. */
function airLevel(post) {
  let worst = 'nodata';
  const rank = { nodata: 0, good: 1, moderate: 2, high: 3 };
  for (const q of ['pm2_5', 'no2']) {
    const r = store.latest.get(`${post}:${q}`);
    if (!r || r.value == null) continue;
    const daily = limitOf(q, 'daily');
    const once = limitOf(q, 'one_time');
    let l = 'good';
    if (once != null && r.value > once) l = 'high';
    else if (daily != null && r.value > daily) l = 'moderate';
    if (rank[l] > rank[worst]) worst = l;
  }
  return worst;
}

/** River level: good | moderate | high | nodata, with the wording key. */
export function riverLevel(post) {
  const rs = riverOf(post);
  const crit = rs && rs.level ? rs.level.critical_level_cm : null;
  const r = store.latest.get(`${post}:water_level`);
  if (r && crit != null) {
    if (r.value >= crit) return { level: 'high', key: 'lvl.river.critical' };
    if (r.value >= crit * 0.85) return { level: 'moderate', key: 'lvl.river.near_critical' };
    return { level: 'good', key: 'lvl.river.normal' };
  }
  if (rs && rs.level) {
    const st = rs.level.state;
    const map = { normal: 'good', near_critical: 'moderate', critical: 'high', no_critical_level: 'nodata' };
    return { level: map[st] || 'nodata', key: `lvl.river.${st}` };
  }
  return { level: 'nodata', key: 'lvl.nodata' };
}

export function postLevel(p) {
  if (p.kind === 'river') return riverLevel(p.id);
  const l = airLevel(p.id);
  return { level: l, key: `lvl.${l}` };
}

/** The quantity shown for a post on the overview. */
export function mainQuantity(p) {
  if (p.kind === 'river') return 'water_level';
  if (p.kind === 'air') return 'pm2_5';
  for (const q of ['pm2_5', 'water_level', 'no2']) if (store.latest.has(`${p.id}:${q}`)) return q;
  const any = [...store.latest.values()].find((r) => r.post === p.id);
  return any ? any.quantity : 'pm2_5';
}

export function levelBadge(lv) {
  return h('span', { class: `badge lvl-${lv.level}` },
    h('span', { class: 'glyph', 'aria-hidden': 'true', text: LEVEL_GLYPH[lv.level] }),
    h('span', { i18n: lv.key }));
}

export function districtName(d) { return d ? (has(`d.${d}`) ? t(`d.${d}`) : d) : '—'; }
export function districtEl(d) { return d && has(`d.${d}`) ? h('span', { i18n: `d.${d}` }) : h('span', { text: d || '—' }); }
