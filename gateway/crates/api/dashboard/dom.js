// Taza dashboard (core): DOM helpers shared by every page: elements with translated text,
// SVG elements, loading and error boxes, the page and card scaffolding, the operator token
// field. Presentation through CSS classes only (the CSP forbids inline styles).

import { t } from './i18n.js';
import { getToken, setToken } from './api.js';

export const SVGNS = 'http://www.w3.org/2000/svg';

export function svgEl(tag, attrs = {}, parent) {
  const el = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs)) if (v != null) el.setAttribute(k, String(v));
  if (parent) parent.appendChild(el);
  return el;
}

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


/** A page's root `section[data-page=name]` with its `h1` (focused after navigation). */
export function pageRoot(name, titleKey, titleArgs) {
  const root = h('section', { class: `page page-${name}`, dataset: { page: name } });
  const h1 = h('h1', { tabindex: '-1', i18n: titleKey, args: titleArgs });
  root.append(h1);
  return { root, h1 };
}

export function card(titleKey, ...children) {
  return h('section', { class: 'card' }, titleKey ? h('h2', { i18n: titleKey }) : null, ...children);
}

/** The operator token field (kept for this browser tab), shared by alerts and commissioning. */
export function tokenField(id) {
  return h('input', { type: 'password', id, autocomplete: 'off', value: getToken(),
    on: { change: (ev) => setToken(ev.target.value.trim()) } });
}
