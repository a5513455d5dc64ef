// Taza dashboard: hash router, pages, live stream. Plain ES modules, no framework, no network
// beyond this gateway. Presentation through CSS classes (the CSP forbids inline styles).

import {
  t, has, applyI18n, setLang, initialLang, lang, LANGS,
  fmtNum, fmtPct, fmtDateTime, fmtTime, fmtHour, fmtDay, fmtDate, fmtMonth, unit, qname,
} from './i18n.js';
import { DISTRICTS, RIVERS, EXTENT } from './basemap.js';
const SVGNS = 'http://www.w3.org/2000/svg';
function svgEl(tag, attrs = {}, parent) {
  const el = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs)) if (v != null) el.setAttribute(k, String(v));
  if (parent) parent.appendChild(el);
  return el;
}

export const HOUR = 3600e3;
export const DAY = 86400e3;

// ---------------------------------------------------------------- DOM helpers

/** Element: h('p', {class: 'x', i18n: 'key', args: {...}}, ...children). */
export function h(tag, attrs = {}, ...children) {
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

export function clear(el) { while (el.firstChild) el.removeChild(el.firstChild); }

export function loading(extraKey) {
  return h('div', { class: 'loading', role: 'status' },
    h('span', { class: 'spinner', 'aria-hidden': 'true' }),
    h('span', { i18n: 'common.loading' }),
    extraKey ? h('span', { class: 'muted', i18n: extraKey }) : null);
}

export function errorBox(err) {
  return h('p', { class: 'error', role: 'alert', i18n: 'common.error', args: { msg: err && err.message ? err.message : String(err) } });
}

// ---------------------------------------------------------------- data

class HttpError extends Error {
  constructor(status, msg) { super(msg); this.status = status; }
}

export async function api(path, signal) {
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
export function cached(path, ttl, signal) {
  const hit = cache.get(path);
  if (hit && Date.now() - hit.at < ttl) return hit.promise;
  const promise = api(path, signal).catch((e) => { cache.delete(path); throw e; });
  cache.set(path, { at: Date.now(), promise });
  return promise;
}

export const store = {
  latest: new Map(), // "post:quantity" -> {post, quantity, time, value, unit, flags}
  posts: [],
  limits: null,
  rivers: [],
};

function setLatest(list) {
  for (const r of list) store.latest.set(`${r.post}:${r.quantity}`, r);
}

export async function loadLatest(signal) {
  setLatest(await api('/api/v1/latest', signal));
}

export function limitOf(q, kind) {
  const s = store.limits && store.limits.substances && store.limits.substances[q];
  const v = s && s[kind === 'one_time' ? 'one_time_ug_m3' : 'daily_ug_m3'];
  return v && typeof v.value === 'number' ? v.value : null;
}

export const q2i = (s) => new Date(s).getTime();
export const iso = (ms) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');

function digits(q) {
  if (q === 'ph') return 2;
  if (q === 'pressure' || q === 'rssi') return 0;
  if (q === 'supply_voltage' || q === 'dissolved_oxygen') return 2;
  return 1;
}
export const fmtQ = (q, v) => fmtNum(v, digits(q));

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

export function riverOf(post) { return store.rivers.find((r) => r.post === post); }

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
function mainQuantity(p) {
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

function districtName(d) { return d ? (has(`d.${d}`) ? t(`d.${d}`) : d) : '—'; }
export function districtEl(d) { return d && has(`d.${d}`) ? h('span', { i18n: `d.${d}` }) : h('span', { text: d || '—' }); }

// ---------------------------------------------------------------- live stream

export const live = {
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
    es.onopen = () => {
      setConn('live');
      // Also on the first open: a reading committed between the page's /latest and this
      // subscription would otherwise stay hidden until the post's next reading.
      loadLatest().then(refreshAllLive).catch(() => {});
    };
    es.onerror = () => { setConn('lost'); };
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
export function buildMap(posts, { zones = [], highlight = new Set(), id = 'map' } = {}) {
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

// ---------------------------------------------------------------- alerts

const TOKEN_KEY = 'taza.operatorToken';

/** The operator token field (kept for this browser tab), shared by alerts and commissioning. */
export function tokenField(id) {
  return h('input', { type: 'password', id, autocomplete: 'off', value: sessionStorage.getItem(TOKEN_KEY) || '',
    on: { change: (ev) => sessionStorage.setItem(TOKEN_KEY, ev.target.value.trim()) } });
}

/** Runs commissioning of `post` (waits for the post, up to a few minutes); the text report. */
export async function commission(post) {
  const token = sessionStorage.getItem(TOKEN_KEY) || '';
  const r = await fetch(`/api/v1/posts/${encodeURIComponent(post)}/commission?format=text&lang=${lang()}`,
    { method: 'POST', headers: { Authorization: `Bearer ${token}` } });
  if (!r.ok) {
    let msg = `${r.status}`;
    try { msg = (await r.json()).error || msg; } catch (_) { /* keep the status */ }
    throw new HttpError(r.status, msg);
  }
  return r.text();
}

const Alerts = {
  /** null when the gateway has no alerts endpoint (404), else the list. */
  async fetch(signal, query = '?state=open') {
    try { return await api(`/api/v1/alerts${query}`, signal); } catch (e) {
      if (e.status === 404) return null;
      throw e;
    }
  },
  /** Acknowledges alert `id` with the operator token kept for this browser session. */
  async ack(id) {
    const token = sessionStorage.getItem(TOKEN_KEY) || '';
    const r = await fetch(`/api/v1/alerts/${id}/ack`, { method: 'POST', headers: { Authorization: `Bearer ${token}`, Accept: 'application/json' } });
    if (!r.ok) {
      let msg = `${r.status}`;
      try { msg = (await r.json()).error || msg; } catch (_) { /* keep the status */ }
      throw new HttpError(r.status, msg);
    }
  },
  /** Rows of /api/v1/alerts into `el`; `withAck` adds the acknowledge button to firing ones. */
  renderList(el, items, { withAck = false, highlight = null, onChange = null, emptyKey = 'alerts.empty' } = {}) {
    clear(el);
    if (items == null) {
      el.append(h('div', { class: 'empty-state' },
        h('p', { class: 'empty-title', i18n: 'alerts.none' }),
        h('p', { class: 'muted', i18n: 'alerts.nonedesc' })));
      return;
    }
    if (!items.length) { el.append(h('p', { class: 'muted', i18n: emptyKey })); return; }
    const ul = h('ul', { class: 'alert-list' });
    for (const a of items) {
      const status = h('span', { class: 'alert-status', role: 'status' });
      const button = withAck && a.state === 'firing'
        ? h('button', { type: 'button', class: 'btn', dataset: { ack: String(a.id) }, i18n: 'alerts.ack', on: { click: async () => {
          button.disabled = true; clear(status);
          try { await Alerts.ack(a.id); if (onChange) onChange(); } catch (e) {
            button.disabled = false;
            status.append(h('span', { class: 'error', i18n: e.status === 401 || e.status === 403 ? 'alerts.ackdenied' : 'common.error', args: { msg: e.message } }));
          }
        } } })
        : null;
      ul.append(h('li', { class: `alert-item sev-${a.severity || 'none'}${highlight === a.id ? ' highlight' : ''}`, id: `alert-${a.id}`, dataset: { alertId: String(a.id), alertState: a.state } },
        h('span', { class: `tag ${a.severity === 'critical' ? 'bad' : 'warn'}`, i18n: `alerts.sev.${a.severity}` }),
        h('span', { class: 'alert-msg', text: a.message || a.rule }),
        h('a', { href: `#/post/${encodeURIComponent(a.post)}`, text: a.post }),
        h('span', { class: 'muted', i18n: 'alerts.since', args: { time: fmtDateTime(a.fired_at) } }),
        h('span', { class: `tag ${a.state === 'firing' ? 'bad' : 'ok'}`, i18n: `alerts.state.${a.state}` }),
        a.acked_by ? h('span', { class: 'muted small', i18n: 'alerts.by', args: { who: a.acked_by } }) : null,
        button, status));
    }
    el.append(ul);
  },
  async load(el, signal, opts = {}) {
    el.append(loading());
    try { this.renderList(el, await this.fetch(signal, opts.query), opts); } catch (e) {
      if (e.name === 'AbortError') return;
      clear(el); el.append(errorBox(e));
    }
  },
};

// ---------------------------------------------------------------- pages

export function pageRoot(name, titleKey, titleArgs) {
  const root = h('section', { class: `page page-${name}`, dataset: { page: name } });
  const h1 = h('h1', { tabindex: '-1', i18n: titleKey, args: titleArgs });
  root.append(h1);
  return { root, h1 };
}

export function card(titleKey, ...children) {
  return h('section', { class: 'card' }, titleKey ? h('h2', { i18n: titleKey }) : null, ...children);
}

export async function loadBase(signal) {
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

// ---- alerts
async function pageAlerts(ctx, id) {
  const { root } = pageRoot('alerts', 'alerts.title');
  ctx.mount(root);
  const highlight = id ? Number(id) : null;
  const token = tokenField('operator-token');
  const active = h('div', { class: 'alerts-panel', 'aria-live': 'polite' });
  const recent = h('div', { class: 'alerts-panel' });
  const reload = async () => {
    clear(active); clear(recent);
    await Promise.all([
      Alerts.load(active, ctx.signal, { query: '?state=open', withAck: true, highlight, onChange: reload }),
      Alerts.load(recent, ctx.signal, { query: '?state=resolved&limit=50', highlight, emptyKey: 'alerts.emptyrecent' }),
    ]);
  };
  root.append(
    card('alerts.active', active),
    card('alerts.recent', recent),
    card('alerts.tokentitle', h('div', { class: 'token-row' },
      h('label', { for: 'operator-token', i18n: 'alerts.token' }), token,
      h('p', { class: 'muted small', i18n: 'alerts.tokenhelp' }))));
  await reload();
  if (highlight) document.getElementById(`alert-${highlight}`)?.scrollIntoView({ block: 'center' });
  root.dataset.loaded = 'true';
}

// ---------------------------------------------------------------- router

/** Pages other than the overview load on first visit (keeps the overview light). */
const lazy = (name) => (ctx, arg) => import('./pages.js').then((m) => m[name](ctx, arg));

const ROUTES = [
  [/^#?\/?$/, 'overview', pageOverview],
  [/^#\/post\/([^/?]+)$/, 'post', lazy('pagePost')],
  [/^#\/targets$/, 'targets', lazy('pageTargets')],
  [/^#\/zones$/, 'zones', lazy('pageZones')],
  [/^#\/rivers$/, 'rivers', lazy('pageRivers')],
  [/^#\/alerts$/, 'alerts', pageAlerts],
  [/^#\/alerts\/(\d+)$/, 'alerts', pageAlerts],
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

async function switchLang(l) {
  await setLang(l);
  for (const b of document.querySelectorAll('button[data-lang]')) b.setAttribute('aria-pressed', String(b.dataset.lang === lang()));
  applyI18n(document);
  route();
}

async function init() {
  await setLang(initialLang());
  for (const b of document.querySelectorAll('button[data-lang]')) {
    b.setAttribute('aria-pressed', String(b.dataset.lang === lang()));
    b.addEventListener('click', () => switchLang(b.dataset.lang));
  }
  applyI18n(document);
  window.addEventListener('hashchange', route);
  route();
}

if (LANGS.includes(lang())) init();
