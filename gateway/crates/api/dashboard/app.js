// Taza dashboard entry: the hash router and the language buttons. Plain ES modules, no
// framework, no network beyond this gateway. Each page is its own module (page-*.js) built on
// the core modules (api, i18n, time, dom, levels, live, map, charts, alert-list); the imports
// only go one way: app.js -> pages -> core. The overview and alerts pages load with this file;
// the others on first visit (keeps the overview light).

import { applyI18n, setLang, initialLang, lang, LANGS } from './i18n.js';
import { clear } from './dom.js';
import { live } from './live.js';
import { pageOverview } from './page-overview.js';
import { pageAlerts } from './page-alerts.js';

/** A page loaded on first visit: `load` imports its module, `name` is the page function. */
const lazy = (load, name) => (ctx, arg) => load().then((m) => m[name](ctx, arg));

const ROUTES = [
  [/^#?\/?$/, 'overview', pageOverview],
  [/^#\/post\/([^/?]+)$/, 'post', lazy(() => import('./page-post.js'), 'pagePost')],
  [/^#\/targets$/, 'targets', lazy(() => import('./page-targets.js'), 'pageTargets')],
  [/^#\/zones$/, 'zones', lazy(() => import('./page-zones.js'), 'pageZones')],
  [/^#\/rivers$/, 'rivers', lazy(() => import('./page-rivers.js'), 'pageRivers')],
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
