// Hash routes (#/lot/12): deep links work with one static page and no server fallback.
import { createStore } from "./store.js";

function current() {
  const raw = location.hash.replace(/^#/, "") || "/";
  const [path, search = ""] = raw.split("?");
  return { path: path || "/", query: Object.fromEntries(new URLSearchParams(search)) };
}

export const route = createStore(current());
window.addEventListener("hashchange", () => {
  route.set(current());
  window.scrollTo(0, 0);
});

export function navigate(path, { replace = false } = {}) {
  if (replace) location.replace("#" + path);
  else location.hash = path;
}

/** The first route whose pattern matches: { view, params }; params are the pattern's groups. */
export function match(routes, path) {
  for (const entry of routes) {
    const found = entry.pattern.exec(path);
    if (found) return { ...entry, params: found.slice(1) };
  }
  return null;
}

/** The current hash path, to come back to after signing in or paying. */
export function here() {
  return location.hash.replace(/^#/, "") || "/";
}
