// Taza dashboard (core): the SVG map of Almaty. Schematic basemap (basemap.js), optional
// low-emission zones, one marker per post coloured and marked by its level; and the legend.

import { t, has, qname, unit, fmtQ } from './i18n.js';
import { store } from './api.js';
import { h, svgEl } from './dom.js';
import { LEVEL_GLYPH, postLevel, mainQuantity, districtName } from './levels.js';
import { DISTRICTS, RIVERS, EXTENT } from './basemap.js';

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

/** The legend of the overview map. */
export function mapLegend() {
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
