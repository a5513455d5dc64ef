// Taza dashboard (core): time. Every date and time is shown in Almaty time (Asia/Almaty,
// UTC+5) in the page language, whatever the browser's own zone; plus the small time arithmetic
// the pages share. Imports only i18n.js (for the locale).

import { lang, locale } from './i18n.js';

export const TZ = 'Asia/Almaty';
export const HOUR = 3600e3;
export const DAY = 86400e3;

/** Milliseconds since the epoch of an RFC 3339 string. */
export const q2i = (s) => new Date(s).getTime();
/** RFC 3339 (UTC, whole seconds) of milliseconds since the epoch, as the API takes it. */
export const iso = (ms) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');

const dfCache = new Map();
function df(opts) {
  const k = lang() + JSON.stringify(opts);
  if (!dfCache.has(k)) dfCache.set(k, new Intl.DateTimeFormat(locale(), { timeZone: TZ, ...opts }));
  return dfCache.get(k);
}
const asDate = (x) => (x instanceof Date ? x : new Date(typeof x === 'number' && x < 1e12 ? x * 1000 : x));
export function fmtDateTime(x) { return df({ day: '2-digit', month: '2-digit', year: 'numeric', hour: '2-digit', minute: '2-digit' }).format(asDate(x)); }
export function fmtTime(x) { return df({ hour: '2-digit', minute: '2-digit', second: '2-digit' }).format(asDate(x)); }
export function fmtHour(x) { return df({ hour: '2-digit', minute: '2-digit' }).format(asDate(x)); }
export function fmtDay(x) { return df({ day: 'numeric', month: 'short' }).format(asDate(x)); }
export function fmtDate(x) { return df({ day: 'numeric', month: 'long', year: 'numeric' }).format(asDate(x)); }
export function fmtMonth(x) { return df({ month: 'short', year: '2-digit' }).format(asDate(x)); }
