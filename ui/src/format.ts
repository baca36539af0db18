// Time and level formatting shared by the tabs. Every time from the API is in milliseconds
// since the Unix epoch.

import type { Level } from "./generated/Level";

export const LEVELS: readonly Level[] = ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"];

/** "1m 40s", "2h 5m", "3d 4h": the two largest units. */
export function duration(ms: number): string {
  let s = Math.max(0, Math.round(ms / 1000));
  const d = Math.floor(s / 86400);
  s -= d * 86400;
  const h = Math.floor(s / 3600);
  s -= h * 3600;
  const m = Math.floor(s / 60);
  s -= m * 60;
  const parts: string[] = [];
  if (d) parts.push(`${d}d`);
  if (h) parts.push(`${h}h`);
  if (m) parts.push(`${m}m`);
  if (s || parts.length === 0) parts.push(`${s}s`);
  return parts.slice(0, 2).join(" ");
}

/** "just now", "5m ago", "in 1m 40s". */
export function relative(at: number, now: number): string {
  const diff = at - now;
  if (Math.abs(diff) < 1000) return "just now";
  return diff > 0 ? `in ${duration(diff)}` : `${duration(-diff)} ago`;
}

const timeOnly = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
const dateTime = new Intl.DateTimeFormat(undefined, {
  month: "short",
  day: "numeric",
  hour: "2-digit",
  minute: "2-digit",
});
const full = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });

/** Compact: the time for today, otherwise the date and time. */
export function shortTime(at: number, now = Date.now()): string {
  const d = new Date(at);
  return new Date(now).toDateString() === d.toDateString() ? timeOnly.format(d) : dateTime.format(d);
}

/** Full date and time, for details and tooltips. */
export function fullTime(at: number): string {
  return full.format(new Date(at));
}

/** The ISO form, for `<time datetime>`. */
export function iso(at: number): string {
  return new Date(at).toISOString();
}
