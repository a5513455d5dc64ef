// Taza dashboard (core): the live stream. One EventSource at a time (all posts, or one post);
// each `readings` event updates the store, every `[data-live="post:quantity"]` value and
// `[data-live-time]` time on the page, and calls the current page's hooks. The stream state is
// shown in `#conn`.

import { fmtQ } from './i18n.js';
import { fmtTime } from './time.js';
import { store, setLatest, loadLatest, liveStream } from './api.js';
import { h, clear } from './dom.js';

export const live = {
  es: null,
  filter: undefined,
  hooks: new Set(),
  open(post) {
    const f = post || '';
    if (this.es && this.filter === f) return;
    this.close();
    this.filter = f;
    const es = liveStream(f);
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
