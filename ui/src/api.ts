// How the page reaches the Runwatch API.
//
// - In a browser the page is served by `runwatch start`, so the API is on the same origin;
//   the token comes from the URL fragment (`#token=…`, see route.ts) and is kept in
//   localStorage.
// - In the desktop app, the app injects `window.__RUNWATCH__ = { api, token }` before the
//   page loads; when present it wins (base URL and token).

import type { AckResult } from "./generated/AckResult";
import type { Health } from "./generated/Health";
import type { NewNotifier } from "./generated/NewNotifier";
import type { NotificationDetails } from "./generated/NotificationDetails";
import type { NotifierPatch } from "./generated/NotifierPatch";
import type { NotifierView } from "./generated/NotifierView";
import type { Page } from "./generated/Page";
import type { ListQuery } from "./generated/ListQuery";
import type { Run } from "./generated/Run";
import type { Settings } from "./generated/Settings";
import type { SettingsPatch } from "./generated/SettingsPatch";
import type { TestResult } from "./generated/TestResult";
import type { UnreadSummary } from "./generated/UnreadSummary";
import type { ErrorBody } from "./generated/ErrorBody";

declare global {
  interface Window {
    /** Injected by the desktop app before the page loads. */
    __RUNWATCH__?: { api?: string; token?: string };
  }
}

const TOKEN_KEY = "runwatch.token";

/** Where the UI runs: in the desktop app's window, or in a browser against the daemon. */
export function shell(): "desktop" | "browser" {
  return window.__RUNWATCH__ || "__TAURI_INTERNALS__" in window ? "desktop" : "browser";
}

/** The API's base URL ("" for same origin) and the token, if known. */
export const conn = { base: "", token: null as string | null };

/** Sets up `conn` from the desktop app's injection, a token just read from the URL, or storage. */
export function initConnection(tokenFromUrl: string | null): void {
  const injected = window.__RUNWATCH__;
  if (injected?.token) {
    conn.base = (injected.api ?? "").replace(/\/+$/, "");
    conn.token = injected.token;
    return;
  }
  if (tokenFromUrl) {
    conn.token = tokenFromUrl;
    try {
      localStorage.setItem(TOKEN_KEY, tokenFromUrl);
    } catch {
      // Storage may be disabled: the token still works for this page's life.
    }
    return;
  }
  try {
    conn.token = localStorage.getItem(TOKEN_KEY);
  } catch {
    conn.token = null;
  }
}

/** Forgets a token the server refused. */
export function forgetToken(): void {
  conn.token = null;
  try {
    localStorage.removeItem(TOKEN_KEY);
  } catch {
    // nothing to forget
  }
}

/** An error answer from the API (or a network failure, with status 0). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = "ApiError";
  }
}

async function request<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { Accept: "application/json" };
  if (conn.token) headers.Authorization = `Bearer ${conn.token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let res: Response;
  try {
    res = await fetch(`${conn.base}/api/v1${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
  } catch (e) {
    throw new ApiError(0, `Cannot reach Runwatch: ${e instanceof Error ? e.message : String(e)}`);
  }
  if (!res.ok) {
    let message = `HTTP ${res.status}`;
    try {
      const err = (await res.json()) as ErrorBody;
      if (err?.error) message = err.error;
    } catch {
      // not JSON: keep the status
    }
    if (res.status === 401) onUnauthorized?.(message);
    throw new ApiError(res.status, message);
  }
  if (res.status === 204) return undefined as T;
  return (await res.json()) as T;
}

/** Called when the server refuses the token (the app shows the sign-in screen). */
let onUnauthorized: ((message: string) => void) | null = null;
export function whenUnauthorized(f: (message: string) => void): void {
  onUnauthorized = f;
}

function query(q: Partial<ListQuery>): string {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(q)) if (v !== null && v !== undefined && v !== "") p.set(k, String(v));
  const s = p.toString();
  return s ? `?${s}` : "";
}

export const api = {
  health: () => request<Health>("GET", "/health"),
  notifications: (q: Partial<ListQuery>) => request<Page>("GET", `/notifications${query(q)}`),
  summary: () => request<UnreadSummary>("GET", "/notifications/summary"),
  notification: (id: string) => request<NotificationDetails>("GET", `/notifications/${encodeURIComponent(id)}`),
  ack: (id: string) => request<AckResult>("POST", `/notifications/${encodeURIComponent(id)}/ack`),
  ackAll: () => request<AckResult>("POST", "/notifications/ack", { all: true }),
  runs: () => request<Run[]>("GET", "/runs"),
  notifiers: () => request<NotifierView[]>("GET", "/notifiers"),
  addNotifier: (n: NewNotifier) => request<NotifierView>("POST", "/notifiers", n),
  patchNotifier: (id: string, p: Partial<NotifierPatch>) =>
    request<NotifierView>("PATCH", `/notifiers/${encodeURIComponent(id)}`, p),
  removeNotifier: (id: string) => request<void>("DELETE", `/notifiers/${encodeURIComponent(id)}`),
  testNotifier: (id: string) => request<TestResult>("POST", `/notifiers/${encodeURIComponent(id)}/test`),
  settings: () => request<Settings>("GET", "/settings"),
  patchSettings: (p: Partial<SettingsPatch>) => request<Settings>("PATCH", "/settings", p),
};

/** The change stream's URL (EventSource cannot send headers, so the token rides in the query). */
export function streamUrl(): string {
  return `${conn.base}/api/v1/stream?token=${encodeURIComponent(conn.token ?? "")}`;
}

/** A message for any thrown value. */
export function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
