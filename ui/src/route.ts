// The URL fragment carries the API token (once) and the in-app route.
//
// Format: `#` followed by parts separated by `&`, in any order:
//   token=TOKEN          the API token (printed by `runwatch start`); the page stores it
//                        and removes it from the address bar at once
//   /notifications       the Notifications tab (the default)
//   /notifications/ID    ... with notification ID's details open (desktop popups link here)
//   /runs  /notifiers  /silences  /settings   the other tabs
// Examples: `#token=abc`, `#/runs`, `#token=abc&/notifications/0b6f…`.

export const TABS = ["notifications", "runs", "notifiers", "silences", "settings"] as const;
export type Tab = (typeof TABS)[number];

export type Route = { tab: Tab; id: string | null };

/** Splits a fragment into its token (if any) and its route part (may be ""). */
export function splitHash(hash: string): { token: string | null; path: string } {
  let token: string | null = null;
  let path = "";
  for (const part of hash.replace(/^#/, "").split("&")) {
    if (part.startsWith("token=")) {
      const t = safeDecode(part.slice("token=".length)).trim();
      if (t) token = t;
    } else if (part.startsWith("/") && !path) {
      path = part;
    }
  }
  return { token, path };
}

export function parseRoute(path: string): Route {
  const segs = path.split("/").filter(Boolean).map(safeDecode);
  const tab = (TABS as readonly string[]).includes(segs[0] ?? "") ? (segs[0] as Tab) : "notifications";
  const id = tab === "notifications" && segs[1] ? segs[1] : null;
  return { tab, id };
}

export function routeHash(r: Route): string {
  return r.id ? `#/${r.tab}/${encodeURIComponent(r.id)}` : `#/${r.tab}`;
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}
