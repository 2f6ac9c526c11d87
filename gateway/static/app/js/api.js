// The public REST API (docs/openapi*.yaml). The bearer token is kept in localStorage under
// "gavel-token" (the sandbox pay page reads the same key).
import { createStore } from "./store.js";

const TOKEN_KEY = "gavel-token";

function readToken() {
  try {
    return localStorage.getItem(TOKEN_KEY) || "";
  } catch {
    return "";
  }
}

/** { token, me }: me is the /api/v1/me answer once loaded (null when signed out or not yet). */
export const auth = createStore({ token: readToken(), me: null });

export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message || code || `HTTP ${status}`);
    this.status = status;
    this.code = code || `HTTP_${status}`;
    this.details = details || {};
  }
}

export async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  const { token } = auth.get();
  if (token) headers.Authorization = "Bearer " + token;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch {
    throw new ApiError(0, "NETWORK", "network");
  }
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = data.error || {};
    if (response.status === 401 && token && path !== "/api/v1/auth/login") signedOut();
    const details = { ...error };
    const retry = response.headers.get("Retry-After");
    if (retry) details.retry_after_s = Number(retry);
    throw new ApiError(response.status, error.code, error.message, details);
  }
  return data;
}

export const get = (path) => api("GET", path);
export const post = (path, body = {}) => api("POST", path, body);

export function signedIn(token) {
  try {
    localStorage.setItem(TOKEN_KEY, token);
  } catch {
    /* the session lasts for this page only */
  }
  auth.set({ token, me: null });
  return refreshMe();
}

/** The token was revoked or expired (or the user signed out): forget it here. */
export function signedOut() {
  try {
    localStorage.removeItem(TOKEN_KEY);
  } catch {
    /* nothing stored */
  }
  auth.set({ token: "", me: null });
}

export async function signOut() {
  try {
    await post("/api/v1/auth/logout");
  } catch {
    /* revoked already, or offline: forget it locally either way */
  }
  signedOut();
}

export async function refreshMe() {
  if (!auth.get().token) return null;
  const me = await get("/api/v1/me");
  auth.set({ me });
  return me;
}

/** A page of a paged list: { items, total, page, page_size }. */
export function page(path, number = 1, size = 20) {
  const separator = path.includes("?") ? "&" : "?";
  return get(`${path}${separator}page=${number}&page_size=${size}`);
}
