// Taza dashboard page `#/alerts` (and `#/alerts/{id}`, which highlights one): open alerts with
// the acknowledge button, recently resolved ones, and the operator token field.

import { h, clear, pageRoot, card, tokenField } from './dom.js';
import { loadAlerts } from './alert-list.js';

export async function pageAlerts(ctx, id) {
  const { root } = pageRoot('alerts', 'alerts.title');
  ctx.mount(root);
  const highlight = id ? Number(id) : null;
  const token = tokenField('operator-token');
  const active = h('div', { class: 'alerts-panel', 'aria-live': 'polite' });
  const recent = h('div', { class: 'alerts-panel' });
  const reload = async () => {
    clear(active); clear(recent);
    await Promise.all([
      loadAlerts(active, ctx.signal, { query: '?state=open', withAck: true, highlight, onChange: reload }),
      loadAlerts(recent, ctx.signal, { query: '?state=resolved&limit=50', highlight, emptyKey: 'alerts.emptyrecent' }),
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
