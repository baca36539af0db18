// How the page reaches the Runwatch API: same origin in the browser (served by `runwatch start`).

export type Health = { status: string; version: string };

/** Where the UI runs: in the desktop app's window, or in a browser against the daemon. */
export function shell(): "desktop" | "browser" {
  return "__TAURI_INTERNALS__" in window ? "desktop" : "browser";
}

export async function health(): Promise<Health> {
  const res = await fetch("/api/v1/health");
  if (!res.ok) throw new Error(`health check failed: HTTP ${res.status}`);
  return (await res.json()) as Health;
}
