// Shared pieces of the screens: loading and error states, money, countdowns, pictures, dialogs,
// toasts and the words for the server's error codes.
import { html, useState, useEffect, useRef } from "./html.js";
import { t } from "./i18n.js";
import { createStore, useStore } from "./store.js";
import { formatYuan } from "./money.js";
import { clock, formatCountdown } from "./time.js";

/** Load something asynchronously: { data, error, loading, reload }. Re-runs when `deps` change. */
export function useAsync(load, deps = []) {
  const [state, setState] = useState({ data: null, error: null, loading: true });
  const generation = useRef(0);
  const run = () => {
    const mine = ++generation.current;
    setState((previous) => ({ ...previous, loading: true, error: null }));
    Promise.resolve()
      .then(load)
      .then(
        (data) => mine === generation.current && setState({ data, error: null, loading: false }),
        (error) => mine === generation.current && setState({ data: null, error, loading: false }),
      );
  };
  useEffect(run, deps);
  return { ...state, reload: run };
}

/** A server error (ApiError code, or a websocket rejection code) in words. */
export function errorText(error) {
  const code = typeof error === "string" ? error : error && error.code;
  const key = "error." + code;
  const text = t(key);
  if (text !== key) {
    if (error && error.details && error.details.retry_after_s) return text + " " + t("error.retry_in", { s: error.details.retry_after_s });
    return text;
  }
  return t("common.error", { message: (error && error.message) || code || "?" });
}

export function Loading() {
  return html`<p class="state" role="status" aria-live="polite">${t("common.loading")}</p>`;
}

export function ErrorBox({ error, retry }) {
  return html`<div class="state error" role="alert">
    <p>${error && error.status === 404 ? t("common.not_found") : errorText(error)}</p>
    ${retry && html`<button class="button secondary" onClick=${retry}>${t("common.retry")}</button>`}
  </div>`;
}

export function Empty({ text }) {
  return html`<p class="state empty">${text || t("common.empty")}</p>`;
}

/** Renders `ready(data)` once `state` (from useAsync) has loaded; loading and errors otherwise. */
export function Async({ state, ready }) {
  if (state.error) return html`<${ErrorBox} error=${state.error} retry=${state.reload} />`;
  if (state.data === null) return html`<${Loading} />`;
  return ready(state.data);
}

export function Money({ fen, className = "money" }) {
  return html`<span class=${className}>${formatYuan(fen)}</span>`;
}

/** Time left until `endsAt` (server epoch ms), ticking each second; `urgent` in the last minute. */
export function Countdown({ endsAt, prefix }) {
  const now = useStore(clock, (state) => state.now);
  const left = endsAt - now;
  const urgent = left > 0 && left <= 60_000;
  return html`<span class=${"countdown" + (urgent ? " urgent" : "")} role="timer" aria-live=${urgent ? "polite" : "off"}
    >${prefix ? prefix + " " : ""}${formatCountdown(left)}</span
  >`;
}

/** A responsive picture from the API's `{url, srcset, thumb, width, height}` (or a bare URL). */
export function Picture({ picture, alt, sizes = "100vw", className = "picture", eager = false }) {
  if (!picture) return html`<div class=${className + " placeholder"} role="img" aria-label=${alt}></div>`;
  const value = typeof picture === "string" ? { url: picture } : picture;
  return html`<img
    class=${className}
    src=${value.thumb && sizes !== "100vw" ? value.thumb : value.url}
    srcset=${value.srcset || undefined}
    sizes=${value.srcset ? sizes : undefined}
    width=${value.width || undefined}
    height=${value.height || undefined}
    alt=${alt}
    loading=${eager ? "eager" : "lazy"}
    decoding="async"
  />`;
}

/** A modal dialog (a bottom sheet on phones). Escape or the backdrop closes it. */
export function Sheet({ title, onClose, children }) {
  const box = useRef(null);
  useEffect(() => {
    const previous = document.activeElement;
    const focusable = box.current && box.current.querySelector("button, input, select, textarea, a[href]");
    if (focusable) focusable.focus();
    const onKey = (event) => event.key === "Escape" && onClose();
    document.addEventListener("keydown", onKey);
    return () => {
      document.removeEventListener("keydown", onKey);
      if (previous && previous.focus) previous.focus();
    };
  }, []);
  return html`<div class="sheet-backdrop" onClick=${(event) => event.target === event.currentTarget && onClose()}>
    <div class="sheet" role="dialog" aria-modal="true" aria-label=${title} ref=${box}>
      <h2 class="sheet-title">${title}</h2>
      ${children}
    </div>
  </div>`;
}

// -- toasts -------------------------------------------------------------------------------------
const toasts = createStore({ items: [] });
let toastSeq = 0;

/** A short message at the bottom of the screen (also read by screen readers). */
export function toast(text, kind = "info", ms = 4000) {
  const id = ++toastSeq;
  toasts.set((state) => ({ items: [...state.items, { id, text, kind }] }));
  setTimeout(() => toasts.set((state) => ({ items: state.items.filter((item) => item.id !== id) })), ms);
}

export function Toasts() {
  const items = useStore(toasts, (state) => state.items);
  return html`<div class="toasts" role="status" aria-live="polite">
    ${items.map((item) => html`<p key=${item.id} class=${"toast " + item.kind}>${item.text}</p>`)}
  </div>`;
}

/** A labelled form field; `error` is shown under it and tied to it for screen readers. */
export function Field({ id, label, error, hint, children }) {
  return html`<div class="field">
    <label for=${id}>${label}</label>
    ${children}
    ${hint && !error && html`<p class="hint" id=${id + "-hint"}>${hint}</p>`}
    ${error && html`<p class="field-error" id=${id + "-error"} role="alert">${error}</p>`}
  </div>`;
}

export function link(path) {
  return "#" + path;
}
