// What every tab shares: the unread summary and a counter bumped on every change the
// server reports over its event stream (`GET /api/v1/stream`, events named `change`).

import { api, streamUrl } from "./api";
import type { Change } from "./generated/Change";
import type { UnreadSummary } from "./generated/UnreadSummary";

export const live = $state({
  summary: null as UnreadSummary | null,
  /** Bumped on every `change` event: tabs reload what they show. */
  version: 0,
  connected: false,
  /** The time, ticking every second, for relative times and deadlines. */
  now: Date.now(),
});

/** Starts the one-second clock; returns its stop function. */
export function startClock(): () => void {
  const t = setInterval(() => (live.now = Date.now()), 1000);
  return () => clearInterval(t);
}

/** After a local action: reload now, without waiting for the stream's event. */
export function changed(): void {
  live.version++;
  api.summary().then(
    (s) => (live.summary = s),
    () => {},
  );
}

let source: EventSource | null = null;

// A burst of changes (a batch ingest, the dispatcher working through its outbox) becomes at
// most one reload per 250 ms: the first change reloads at once, the rest once at the end.
const THROTTLE_MS = 250;
let lastBump = 0;
let trailing: ReturnType<typeof setTimeout> | null = null;
function bump(): void {
  const wait = lastBump + THROTTLE_MS - Date.now();
  if (wait <= 0) {
    lastBump = Date.now();
    live.version++;
  } else if (!trailing) {
    trailing = setTimeout(() => {
      trailing = null;
      lastBump = Date.now();
      live.version++;
    }, wait);
  }
}

/** Opens the stream (EventSource reconnects by itself after errors). */
export function connect(): () => void {
  source?.close();
  const es = new EventSource(streamUrl());
  source = es;
  es.addEventListener("open", () => (live.connected = true));
  es.addEventListener("error", () => (live.connected = es.readyState === EventSource.OPEN));
  es.addEventListener("change", (ev) => {
    live.connected = true;
    try {
      live.summary = (JSON.parse((ev as MessageEvent<string>).data) as Change).summary;
    } catch {
      // a malformed event still means something changed
    }
    bump();
  });
  return () => {
    es.close();
    if (source === es) source = null;
    live.connected = false;
  };
}
