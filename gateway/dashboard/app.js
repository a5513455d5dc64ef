// Taza dashboard: hash router, pages, live stream. Plain ES modules, no framework, no network
// beyond this gateway. Presentation through CSS classes (the CSP forbids inline styles).

import {
  t, has, applyI18n, setLang, initialLang, lang, LANGS,
  fmtNum, fmtPct, fmtDateTime, fmtTime, fmtHour, fmtDay, fmtDate, fmtMonth, unit, qname,
} from './i18n.js';
import { DISTRICTS, RIVERS, EXTENT } from './basemap.js';
import { drawChart, svgEl } from './charts.js';

const HOUR = 3600e3;
const DAY = 86400e3;

// ---------------------------------------------------------------- DOM helpers

/** Element: h('p', {class: 'x', i18n: 'key', args: {...}}, ...children). */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k === 'i18n') { el.dataset.i18n = v; el.textContent = t(v, attrs.args); }
    else if (k === 'args') { el.dataset.i18nArgs = JSON.stringify(v); }
    else if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else if (k === 'on') for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  if (attrs && attrs.i18n && attrs.args) el.textContent = t(attrs.i18n, attrs.args);
  for (const c of children.flat()) if (c != null && c !== false) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

function clear(el) { while (el.firstChild) el.removeChild(el.firstChild); }

function loading(extraKey) {
  return h('div', { class: 'loading', role: 'status' },
    h('span', { class: 'spinner', 'aria-hidden': 'true' }),
    h('span', { i18n: 'common.loading' }),
    extraKey ? h('span', { class: 'muted', i18n: extraKey }) : null);
}

function errorBox(err) {
  return h('p', { class: 'error', role: 'alert', i18n: 'common.error', args: { msg: err && err.message ? err.message : String(err) } });
}

// ---------------------------------------------------------------- data

class HttpError extends Error {
  constructor(status, msg) { super(msg); this.status = status; }
}

async function api(path, signal) {
  const r = await fetch(path, { signal, headers: { Accept: 'application/json' } });
  if (!r.ok) {
    let msg = `HTTP ${r.status}`;
    try { const j = await r.json(); if (j && j.error) msg = `${msg}: ${j.error}`; } catch { /* not JSON */ }
    throw new HttpError(r.status, msg);
  }
  return r.json();
}

const cache = new Map();
/** Fetch once per `ttl` ms (posts, limits: they rarely change). */
function cached(path, ttl, signal) {
  const hit = cache.get(path);
  if (hit && Date.now() - hit.at < ttl) return hit.promise;
  const promise = api(path, signal).catch((e) => { cache.delete(path); throw e; });
  cache.set(path, { at: Date.now(), promise });
  return promise;
}

const store = {
  latest: new Map(), // "post:quantity" -> {post, quantity, time, value, unit, flags}
  posts: [],
  limits: null,
  rivers: [],
};

function setLatest(list) {
  for (const r of list) store.latest.set(`${r.post}:${r.quantity}`, r);
}

async function loadLatest(signal) {
  setLatest(await api('/api/v1/latest', signal));
}

function limitOf(q, kind) {
  const s = store.limits && store.limits.substances && store.limits.substances[q];
  const v = s && s[kind === 'one_time' ? 'one_time_ug_m3' : 'daily_ug_m3'];
  return v && typeof v.value === 'number' ? v.value : null;
}

const q2i = (s) => new Date(s).getTime();
const iso = (ms) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');

function digits(q) {
  if (q === 'ph') return 2;
  if (q === 'pressure' || q === 'rssi') return 0;
  if (q === 'supply_voltage' || q === 'dissolved_oxygen') return 2;
  return 1;
}
const fmtQ = (q, v) => fmtNum(v, digits(q));

// ---------------------------------------------------------------- levels

const LEVEL_GLYPH = { good: '✓', moderate: '!', high: '‼', nodata: '?' };

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

function riverOf(post) { return store.rivers.find((r) => r.post === post); }

/** River level: good | moderate | high | nodata, with the wording key. */
function riverLevel(post) {
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

function postLevel(p) {
  if (p.kind === 'river') return riverLevel(p.id);
  const l = airLevel(p.id);
  return { level: l, key: `lvl.${l}` };
}

/** The quantity shown for a post on the overview. */
function mainQuantity(p) {
  if (p.kind === 'river') return 'water_level';
  if (p.kind === 'air') return 'pm2_5';
  for (const q of ['pm2_5', 'water_level', 'no2']) if (store.latest.has(`${p.id}:${q}`)) return q;
  const any = [...store.latest.values()].find((r) => r.post === p.id);
  return any ? any.quantity : 'pm2_5';
}

function levelBadge(lv) {
  return h('span', { class: `badge lvl-${lv.level}` },
    h('span', { class: 'glyph', 'aria-hidden': 'true', text: LEVEL_GLYPH[lv.level] }),
    h('span', { i18n: lv.key }));
}

function districtName(d) { return d ? (has(`d.${d}`) ? t(`d.${d}`) : d) : '—'; }
function districtEl(d) { return d && has(`d.${d}`) ? h('span', { i18n: `d.${d}` }) : h('span', { text: d || '—' }); }

// ---------------------------------------------------------------- live stream

const live = {
  es: null,
  filter: undefined,
  hooks: new Set(),
  open(post) {
    const f = post || '';
    if (this.es && this.filter === f) return;
    this.close();
    this.filter = f;
    const url = f ? `/api/v1/live?post=${encodeURIComponent(f)}` : '/api/v1/live';
    const es = new EventSource(url);
    this.es = es;
    setConn('connecting');
    let hadError = false;
    es.onopen = () => {
      setConn('live');
      if (hadError) loadLatest().then(refreshAllLive).catch(() => {});
    };
    es.onerror = () => { hadError = true; setConn('lost'); };
    es.addEventListener('readings', (ev) => {
      let data;
      try { data = JSON.parse(ev.data); } catch { return; }
      const rows = (data.readings || []).map((r) => ({ ...r, post: data.post }));
      setLatest(rows);
      for (const r of rows) updateLive(r.post, r.quantity);
      for (const fn of this.hooks) fn(data.post, rows);
    });
    es.addEventListener('lagged', () => { loadLatest().then(refreshAllLive).catch(() => {}); });
  },
  close() {
    if (this.es) this.es.close();
    this.es = null;
    this.filter = undefined;
    setConn('');
  },
};

function setConn(state) {
  const el = document.getElementById('conn');
  if (!el) return;
  el.className = `conn ${state}`;
  clear(el);
  if (state) el.append(h('span', { i18n: `conn.${state}` }));
}

function updateLive(post, q) {
  const r = store.latest.get(`${post}:${q}`);
  if (!r) return;
  for (const el of document.querySelectorAll(`[data-live="${CSS.escape(`${post}:${q}`)}"]`)) {
    el.textContent = fmtQ(q, r.value);
    el.classList.remove('flash');
    void el.offsetWidth; // restart the highlight
    el.classList.add('flash');
  }
  for (const el of document.querySelectorAll(`[data-live-time="${CSS.escape(`${post}:${q}`)}"]`)) el.textContent = fmtTime(r.time);
}

function refreshAllLive() {
  for (const key of store.latest.keys()) {
    const i = key.indexOf(':');
    updateLive(key.slice(0, i), key.slice(i + 1));
  }
  for (const fn of live.hooks) fn(null, []);
}

// ---------------------------------------------------------------- map

const LAT0 = (EXTENT.latMin + EXTENT.latMax) / 2;
const KX = Math.cos((LAT0 * Math.PI) / 180);
const MAP_W = 1000;
const SCALE = MAP_W / ((EXTENT.lonMax - EXTENT.lonMin) * KX);
const MAP_H = Math.round((EXTENT.latMax - EXTENT.latMin) * SCALE);
const STRIP_H = 46; // row for posts without coordinates
/** Equirectangular projection around Almaty. */
function project(lon, lat) {
  return [(lon - EXTENT.lonMin) * KX * SCALE, (EXTENT.latMax - lat) * SCALE];
}
const pathOf = (ring, close) => ring.map(([lon, lat], i) => {
  const [x, y] = project(lon, lat);
  return `${i ? 'L' : 'M'}${x.toFixed(1)},${y.toFixed(1)}`;
}).join('') + (close ? 'Z' : '');

/**
 * The map: basemap, optional zones, one marker per post. Returns {svg, update()}.
 */
function buildMap(posts, { zones = [], highlight = new Set(), id = 'map' } = {}) {
  const noCoords = posts.filter((p) => p.latitude == null || p.longitude == null);
  const H = MAP_H + (noCoords.length ? STRIP_H : 0);
  const svg = svgEl('svg', { id, viewBox: `0 0 ${MAP_W} ${H}`, class: 'map', role: 'group', 'aria-labelledby': `${id}-title ${id}-desc` });
  const title = svgEl('title', { id: `${id}-title`, 'data-i18n': 'ov.map' }, svg);
  title.textContent = t('ov.map');
  const desc = svgEl('desc', { id: `${id}-desc`, 'data-i18n': 'ov.mapdesc' }, svg);
  desc.textContent = t('ov.mapdesc');

  svgEl('rect', { x: 0, y: 0, width: MAP_W, height: MAP_H, class: 'map-bg' }, svg);
  const gd = svgEl('g', { class: 'districts', 'aria-hidden': 'true' }, svg);
  for (const d of DISTRICTS) svgEl('path', { d: pathOf(d.ring, true), class: 'district' }, gd);
  const gr = svgEl('g', { class: 'rivers', 'aria-hidden': 'true' }, svg);
  for (const r of RIVERS) svgEl('path', { d: pathOf(r.line, false), class: 'river' }, gr);
  const gl = svgEl('g', { class: 'labels', 'aria-hidden': 'true' }, svg);
  for (const d of DISTRICTS) {
    const [x, y] = project(...d.label);
    const tx = svgEl('text', { x, y, 'text-anchor': 'middle', class: 'district-label', 'data-i18n': has(`d.${d.key}`) ? `d.${d.key}` : null }, gl);
    tx.textContent = districtName(d.key);
  }
  for (const r of RIVERS) {
    const [x, y] = project(...r.label);
    const tx = svgEl('text', { x: x + 6, y, class: 'river-label', 'data-i18n': `r.${r.key}` }, gl);
    tx.textContent = t(`r.${r.key}`);
  }
  const gz = svgEl('g', { class: 'zones' }, svg);
  for (const z of zones) {
    const g = z.geometry || {};
    const polys = g.type === 'Polygon' ? [g.coordinates] : g.type === 'MultiPolygon' ? g.coordinates : [];
    const d = polys.flatMap((poly) => poly.map((ring) => pathOf(ring, true))).join('');
    if (!d) continue;
    const p = svgEl('path', { d, class: 'map-zone', 'fill-rule': 'evenodd' }, gz);
    const tt = svgEl('title', {}, p);
    tt.textContent = z.name;
    const c = polys[0] && polys[0][0];
    if (c) {
      const [x, y] = project(Math.min(...c.map((v) => v[0])), Math.max(...c.map((v) => v[1])));
      const lab = svgEl('text', { x: x + 4, y: y - 6, class: 'map-zone-label' }, gz);
      lab.textContent = z.name;
    }
  }

  const gp = svgEl('g', { class: 'posts' }, svg);
  const markers = new Map();
  let i = 0;
  for (const p of posts) {
    let x;
    let y;
    if (p.latitude != null && p.longitude != null) [x, y] = project(p.longitude, p.latitude);
    else { x = 30 + (i++) * 34; y = MAP_H + STRIP_H / 2; }
    const a = svgEl('a', { href: `#/post/${encodeURIComponent(p.id)}`, 'data-post': p.id, class: `post-marker kind-${p.kind}${highlight.has(p.id) ? ' hl' : ''}` }, gp);
    const g = svgEl('g', { transform: `translate(${x.toFixed(1)},${y.toFixed(1)})` }, a);
    if (p.kind === 'river') svgEl('rect', { x: -11, y: -11, width: 22, height: 22, transform: 'rotate(45)', class: 'mk' }, g);
    else svgEl('circle', { r: p.kind === 'unregistered' ? 10 : 13, class: 'mk' }, g);
    const glyph = svgEl('text', { y: 5.5, 'text-anchor': 'middle', class: 'mk-glyph', 'aria-hidden': 'true' }, g);
    const tt = svgEl('title', {}, a);
    markers.set(p.id, { a, glyph, tt, p });
  }
  if (noCoords.length) {
    svgEl('line', { x1: 0, x2: MAP_W, y1: MAP_H, y2: MAP_H, class: 'strip-line' }, svg);
  }
  function update() {
    for (const { a, glyph, tt, p } of markers.values()) {
      const lv = postLevel(p);
      a.setAttribute('class', `post-marker kind-${p.kind} lvl-${lv.level}${highlight.has(p.id) ? ' hl' : ''}`);
      glyph.textContent = LEVEL_GLYPH[lv.level];
      const q = mainQuantity(p);
      const r = store.latest.get(`${p.id}:${q}`);
      const val = r ? `${qname(q)} ${fmtQ(q, r.value)} ${unit(r.unit)}` : t('lvl.nodata');
      const label = `${p.name} (${p.id}): ${val}; ${t(lv.key)}`;
      tt.textContent = label;
      a.setAttribute('aria-label', label);
    }
  }
  update();
  return { svg, update };
}

function mapLegend() {
  const item = (lvl, key) => h('li', {}, h('span', { class: `sw lvl-${lvl}`, 'aria-hidden': 'true', text: LEVEL_GLYPH[lvl] }), h('span', { i18n: key }));
  return h('div', { class: 'legend' },
    h('h3', { i18n: 'ov.legend' }),
    h('div', { class: 'legend-cols' },
      h('div', {},
        h('h4', { i18n: 'lvl.air' }),
        h('ul', {}, item('good', 'lvl.good'), item('moderate', 'lvl.moderate'), item('high', 'lvl.high'), item('nodata', 'lvl.nodata'))),
      h('div', {},
        h('h4', { i18n: 'lvl.riverhead' }),
        h('ul', {}, item('good', 'lvl.river.normal'), item('moderate', 'lvl.river.near_critical'), item('high', 'lvl.river.critical'))),
      h('div', {},
        h('ul', { class: 'shapes' }, h('li', { i18n: 'lvl.marker.air' }), h('li', { i18n: 'lvl.marker.river' })))));
}

// ---------------------------------------------------------------- alerts (next issue: list + acknowledge)

const Alerts = {
  /** null when the gateway has no alerts yet (404), else the list. */
  async fetch(signal) {
    try { return await api('/api/v1/alerts', signal); } catch (e) {
      if (e.status === 404) return null;
      throw e;
    }
  },
  /** Render `items` into `el` (rows of /api/v1/alerts: {id, rule, post, severity, state, message, fired_at, acked_at}). */
  renderList(el, items) {
    clear(el);
    if (items == null) {
      el.append(h('div', { class: 'empty-state' },
        h('p', { class: 'empty-title', i18n: 'alerts.none' }),
        h('p', { class: 'muted', i18n: 'alerts.nonedesc' })));
      return;
    }
    if (!items.length) { el.append(h('p', { class: 'muted', i18n: 'alerts.empty' })); return; }
    const ul = h('ul', { class: 'alert-list' });
    for (const a of items) {
      const since = a.fired_at || a.since;
      ul.append(h('li', { class: `alert-item sev-${a.severity || 'none'}` },
        a.severity ? h('span', { class: `tag ${a.severity === 'critical' ? 'bad' : 'warn'}`, text: a.severity }) : null,
        h('span', { class: 'alert-msg', text: a.message || a.rule || a.id }),
        a.post ? h('a', { href: `#/post/${encodeURIComponent(a.post)}`, text: a.post }) : null,
        since ? h('span', { class: 'muted', i18n: 'alerts.since', args: { time: fmtDateTime(since) } }) : null,
        a.acked_at ? h('span', { class: 'tag ok', i18n: 'alerts.acked' }) : null));
    }
    el.append(ul);
  },
  async load(el, signal) {
    el.append(loading());
    try { this.renderList(el, await this.fetch(signal)); } catch (e) {
      if (e.name === 'AbortError') return;
      clear(el); el.append(errorBox(e));
    }
  },
};

// ---------------------------------------------------------------- pages

function pageRoot(name, titleKey, titleArgs) {
  const root = h('section', { class: `page page-${name}`, dataset: { page: name } });
  const h1 = h('h1', { tabindex: '-1', i18n: titleKey, args: titleArgs });
  root.append(h1);
  return { root, h1 };
}

function card(titleKey, ...children) {
  return h('section', { class: 'card' }, titleKey ? h('h2', { i18n: titleKey }) : null, ...children);
}

async function loadBase(signal) {
  const [posts, limits, rivers] = await Promise.all([
    cached('/api/v1/posts', 30e3, signal),
    cached('/api/v1/limits', 300e3, signal),
    api('/api/v1/rivers', signal).catch(() => []),
  ]);
  store.posts = posts;
  store.limits = limits;
  store.rivers = rivers;
  await loadLatest(signal);
}

// ---- overview
async function pageOverview(ctx) {
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
  Alerts.load(alertBox, ctx.signal);
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
    card = await api('/api/v1/scores/city', signal);
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

// ---- post
const CHARTABLE_AIR = ['pm2_5', 'pm10', 'no2', 'pm1', 'temperature', 'humidity', 'pressure'];
const CHARTABLE_RIVER = ['water_level', 'water_temperature', 'dissolved_oxygen', 'ph', 'conductivity', 'turbidity'];

async function pagePost(ctx, id) {
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

async function pageTargets(ctx) {
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
async function pageZones(ctx) {
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
async function pageRivers(ctx) {
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

// ---- alerts
async function pageAlerts(ctx) {
  const { root } = pageRoot('alerts', 'alerts.title');
  ctx.mount(root);
  const box = h('div', { class: 'alerts-panel', 'aria-live': 'polite' });
  root.append(card(null, box));
  await Alerts.load(box, ctx.signal);
  root.dataset.loaded = 'true';
}

// ---------------------------------------------------------------- router

const ROUTES = [
  [/^#?\/?$/, 'overview', pageOverview],
  [/^#\/post\/([^/?]+)$/, 'post', pagePost],
  [/^#\/targets$/, 'targets', pageTargets],
  [/^#\/zones$/, 'zones', pageZones],
  [/^#\/rivers$/, 'rivers', pageRivers],
  [/^#\/alerts$/, 'alerts', pageAlerts],
];

let active = null;
let first = true;

function route() {
  if (active) { active.abort.abort(); live.hooks.clear(); }
  const hash = location.hash || '#/';
  let found = ROUTES[0];
  let arg;
  for (const r of ROUTES) {
    const m = hash.match(r[0]);
    if (m) { found = r; arg = m[1] ? decodeURIComponent(m[1]) : undefined; break; }
  }
  const [, name, fn] = found;
  const main = document.getElementById('main');
  const abort = new AbortController();
  const ctx = {
    signal: abort.signal,
    abort,
    mount(root) {
      clear(main); main.append(root);
      if (!first) { const h1 = root.querySelector('h1'); if (h1) h1.focus({ preventScroll: false }); }
    },
    hook(fn2) { live.hooks.add(fn2); },
  };
  active = ctx;
  if (name !== 'overview' && name !== 'post' && name !== 'rivers') live.close();
  for (const a of document.querySelectorAll('a[data-nav]')) {
    const on = a.dataset.nav === name || (name === 'post' && a.dataset.nav === 'overview');
    if (on) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  fn(ctx, arg).catch((e) => { if (e && e.name !== 'AbortError') console.error(e); });
  first = false;
}

function switchLang(l) {
  setLang(l);
  for (const b of document.querySelectorAll('button[data-lang]')) b.setAttribute('aria-pressed', String(b.dataset.lang === l));
  applyI18n(document);
  route();
}

function init() {
  setLang(initialLang());
  for (const b of document.querySelectorAll('button[data-lang]')) {
    b.setAttribute('aria-pressed', String(b.dataset.lang === lang()));
    b.addEventListener('click', () => switchLang(b.dataset.lang));
  }
  applyI18n(document);
  window.addEventListener('hashchange', route);
  route();
}

if (LANGS.includes(lang())) init();
