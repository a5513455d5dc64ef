// Taza dashboard (core): the list of alerts with the acknowledge button, shown by the overview
// (open alerts) and the alerts page (open with acknowledge, and recently resolved).

import { fetchAlerts, ackAlert } from './api.js';
import { fmtDateTime } from './time.js';
import { h, clear, loading, errorBox } from './dom.js';

/** Rows of /api/v1/alerts into `el`; `withAck` adds the acknowledge button to firing ones. */
export function renderAlerts(el, items, { withAck = false, highlight = null, onChange = null, emptyKey = 'alerts.empty' } = {}) {
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
        try { await ackAlert(a.id); if (onChange) onChange(); } catch (e) {
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
}

/** Fetches alerts (`opts.query`, default open ones) and renders them into `el`. */
export async function loadAlerts(el, signal, opts = {}) {
  el.append(loading());
  try { renderAlerts(el, await fetchAlerts(signal, opts.query), opts); } catch (e) {
    if (e.name === 'AbortError') return;
    clear(el); el.append(errorBox(e));
  }
}
