// Light, dark, or the system's choice (prefers-color-scheme); kept in localStorage.

export type Theme = "auto" | "light" | "dark";
const KEY = "runwatch.theme";

export function storedTheme(): Theme {
  try {
    const t = localStorage.getItem(KEY);
    return t === "light" || t === "dark" ? t : "auto";
  } catch {
    return "auto";
  }
}

/** Sets `data-theme` on <html> (app.css reads it) and remembers the choice. */
export function applyTheme(t: Theme): void {
  const root = document.documentElement;
  if (t === "auto") delete root.dataset.theme;
  else root.dataset.theme = t;
  try {
    if (t === "auto") localStorage.removeItem(KEY);
    else localStorage.setItem(KEY, t);
  } catch {
    // storage disabled: the choice lasts for this page
  }
}
