// Taza dashboard (core): translations (ru default, kk, en) and locale-aware number formatting.
// Every translated element carries data-i18n="key" (and data-i18n-args='{"n":1}' when the text
// has parameters); applyI18n() rewrites them all after a language switch. Dates and times are in
// time.js. Imports nothing but the Russian strings.

export const LANGS = ['ru', 'kk', 'en'];
const LOCALES = { ru: 'ru-RU', kk: 'kk-KZ', en: 'en-GB' };

import RU from './lang-ru.js';

// Strings by language; ru is always loaded, kk and en on first use (lang-kk.js, lang-en.js).
const DICTS = { ru: RU };

let current = 'ru';

export function lang() { return current; }
export function locale() { return LOCALES[current]; }

export function initialLang() {
  let saved = null;
  try { saved = localStorage.getItem('taza.lang'); } catch { /* storage off */ }
  return LANGS.includes(saved) ? saved : 'ru';
}

/** Switch to `l`, loading its strings on first use. */
export async function setLang(l) {
  if (!LANGS.includes(l)) return;
  if (!DICTS[l]) {
    try { DICTS[l] = (await import(`./lang-${l}.js`)).default; } catch { return; }
  }
  current = l;
  try { localStorage.setItem('taza.lang', l); } catch { /* storage off */ }
  document.documentElement.lang = l;
}

export function has(key) { return Object.prototype.hasOwnProperty.call(RU, key); }

/** Translate `key`, filling {name} placeholders from `args`. */
export function t(key, args) {
  const d = DICTS[current] || RU;
  let s = key in d ? d[key] : key in RU ? RU[key] : key;
  if (args) s = s.replace(/\{(\w+)\}/g, (m, k) => (k in args ? String(args[k]) : m));
  return s;
}

/** Re-translate every [data-i18n] element under `root`. */
export function applyI18n(root = document) {
  for (const el of root.querySelectorAll('[data-i18n]')) {
    let args;
    if (el.dataset.i18nArgs) { try { args = JSON.parse(el.dataset.i18nArgs); } catch { args = undefined; } }
    el.textContent = t(el.dataset.i18n, args);
  }
  for (const el of root.querySelectorAll('[data-i18n-aria]')) el.setAttribute('aria-label', t(el.dataset.i18nAria));
  document.title = t('app.title');
}

// ---- number formatting ----
const nfCache = new Map();
function nf(opts) {
  const k = current + JSON.stringify(opts);
  if (!nfCache.has(k)) nfCache.set(k, new Intl.NumberFormat(locale(), opts));
  return nfCache.get(k);
}
export function fmtNum(v, digits = 1) {
  if (v == null || !Number.isFinite(v)) return '—';
  return nf({ minimumFractionDigits: digits, maximumFractionDigits: digits }).format(v);
}
export function fmtPct(frac, digits = 0) {
  if (frac == null || !Number.isFinite(frac)) return '—';
  return nf({ style: 'percent', maximumFractionDigits: digits }).format(frac);
}

/** Unit label in the current language. */
export function unit(u) { return has('u.' + u) ? t('u.' + u) : (u || ''); }
/** Quantity label in the current language. */
export function qname(q) { return has('q.' + q) ? t('q.' + q) : q; }

function quantityDigits(q) {
  if (q === 'ph') return 2;
  if (q === 'pressure' || q === 'rssi') return 0;
  if (q === 'supply_voltage' || q === 'dissolved_oxygen') return 2;
  return 1;
}
/** Value of quantity `q` with the digits it is shown with. */
export const fmtQ = (q, v) => fmtNum(v, quantityDigits(q));
