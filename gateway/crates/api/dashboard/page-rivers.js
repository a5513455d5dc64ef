// Taza dashboard page `#/rivers`: each river post's class (marked provisional), water level
// against the critical level, rise rate, ИЗВ and oxygen.

import { fmtNum, fmtQ, unit } from './i18n.js';
import { fmtDateTime } from './time.js';
import { store, loadBase } from './api.js';
import { h, clear, loading, errorBox, pageRoot } from './dom.js';
import { riverLevel, levelBadge } from './levels.js';
import { live } from './live.js';

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
