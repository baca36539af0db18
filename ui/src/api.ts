// How the page reaches the Runwatch API.
//
// - In a browser the page is served by `runwatch start`, so the API is on the same origin;
//   the token comes from the URL fragment (`#token=…`, see route.ts) and is kept in
//   localStorage.
// - In the desktop app, the app injects `window.__RUNWATCH__ = { api, token }` before the
//   page loads; when present it wins (base URL and token).

import type { ErrorBody } from "./generated/ErrorBody";
import { API_PREFIX, client, paths, type Method } from "./generated/operations";

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

async function request<T>(method: Method, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { Accept: "application/json" };
  if (conn.token) headers.Authorization = `Bearer ${conn.token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let res: Response;
  try {
    res = await fetch(`${conn.base}${API_PREFIX}${path}`, {
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

/** Every operation of the API, generated from the server's declaration of its routes. */
export const api = client(request);

/** The change stream's URL (EventSource cannot send headers, so the token rides in the query). */
export function streamUrl(): string {
  return `${conn.base}${API_PREFIX}${paths.stream}?token=${encodeURIComponent(conn.token ?? "")}`;
}

/** A message for any thrown value. */
export function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
