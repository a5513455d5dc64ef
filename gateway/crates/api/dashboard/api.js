// Taza dashboard (core): talking to the gateway. JSON fetches, the shared store of posts,
// limits, rivers and latest values, the operator token, the live stream (SSE) and the calls
// that need the token. Only same-origin `/api/v1/...` URLs. Imports only i18n.js (the page
// language sent with commissioning).

import { lang } from './i18n.js';

export class HttpError extends Error {
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

// ---------------------------------------------------------------- store

export const store = {
  latest: new Map(), // "post:quantity" -> {post, quantity, time, value, unit, flags}
  posts: [],
  limits: null,
  rivers: [],
};

export function setLatest(list) {
  for (const r of list) store.latest.set(`${r.post}:${r.quantity}`, r);
}

export async function loadLatest(signal) {
  setLatest(await api('/api/v1/latest', signal));
}

/** Posts, limits, rivers and the latest values, into `store`. */
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

export function limitOf(q, kind) {
  const s = store.limits && store.limits.substances && store.limits.substances[q];
  const v = s && s[kind === 'one_time' ? 'one_time_ug_m3' : 'daily_ug_m3'];
  return v && typeof v.value === 'number' ? v.value : null;
}

export function riverOf(post) { return store.rivers.find((r) => r.post === post); }

// ---------------------------------------------------------------- live stream

/** The server-sent event stream of new readings, of one post or (no `post`) of all. */
export function liveStream(post) {
  return new EventSource(post ? `/api/v1/live?post=${encodeURIComponent(post)}` : '/api/v1/live');
}

// ---------------------------------------------------------------- operator token

// Kept for this browser tab only (sessionStorage), sent as a Bearer header, never in a URL.
const TOKEN_KEY = 'taza.operatorToken';

export function getToken() { return sessionStorage.getItem(TOKEN_KEY) || ''; }
export function setToken(v) { sessionStorage.setItem(TOKEN_KEY, v); }

/** Runs commissioning of `post` (waits for the post, up to a few minutes); the text report. */
export async function commission(post) {
  const token = getToken();
  const r = await fetch(`/api/v1/posts/${encodeURIComponent(post)}/commission?format=text&lang=${lang()}`,
    { method: 'POST', headers: { Authorization: `Bearer ${token}` } });
  if (!r.ok) {
    let msg = `${r.status}`;
    try { msg = (await r.json()).error || msg; } catch (_) { /* keep the status */ }
    throw new HttpError(r.status, msg);
  }
  return r.text();
}

// ---------------------------------------------------------------- alerts

/** null when the gateway has no alerts endpoint (404), else the list. */
export async function fetchAlerts(signal, query = '?state=open') {
  try { return await api(`/api/v1/alerts${query}`, signal); } catch (e) {
    if (e.status === 404) return null;
    throw e;
  }
}

/** Acknowledges alert `id` with the operator token kept for this browser session. */
export async function ackAlert(id) {
  const token = getToken();
  const r = await fetch(`/api/v1/alerts/${id}/ack`, { method: 'POST', headers: { Authorization: `Bearer ${token}`, Accept: 'application/json' } });
  if (!r.ok) {
    let msg = `${r.status}`;
    try { msg = (await r.json()).error || msg; } catch (_) { /* keep the status */ }
    throw new HttpError(r.status, msg);
  }
}
