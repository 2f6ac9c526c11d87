// Times come from the server as epoch milliseconds; countdowns use the server's clock (skew
// measured from server_time in hello/snapshot/pong) and show in the viewer's time zone.
import { createStore } from "./store.js";
import { t, language } from "./i18n.js";

export const clock = createStore({ skew: 0, now: Date.now() });

export function serverNow() {
  return Date.now() + clock.get().skew;
}

export function learnServerTime(serverTime) {
  if (Number.isFinite(serverTime)) clock.set({ skew: serverTime - Date.now() });
}

// One timer for every countdown on the page: ticks each second, aligned to the second.
function tick() {
  clock.set({ now: serverNow() });
  setTimeout(tick, 1000 - (serverNow() % 1000));
}
tick();

/** Days+hours, then hours:minutes, then seconds in the last minute. */
export function formatCountdown(ms) {
  if (ms <= 0) return t("time.ended");
  const totalSeconds = Math.ceil(ms / 1000);
  if (totalSeconds <= 60) return t("time.seconds", { s: totalSeconds });
  const minutes = Math.floor(totalSeconds / 60) % 60;
  const hours = Math.floor(totalSeconds / 3600) % 24;
  const days = Math.floor(totalSeconds / 86400);
  if (days > 0) return t("time.days", { d: days, h: hours });
  if (hours > 0) return t("time.hours", { h: hours, m: String(minutes).padStart(2, "0") });
  return t("time.minutes", { m: minutes + (totalSeconds % 60 ? 1 : 0) });
}

const formats = new Map();
function format(kind) {
  const key = language.get().lang + kind;
  if (!formats.has(key)) {
    const options =
      kind === "time"
        ? { hour: "2-digit", minute: "2-digit", second: "2-digit" }
        : kind === "date"
          ? { dateStyle: "medium" }
          : { month: "short", day: "numeric", weekday: "short", hour: "2-digit", minute: "2-digit" };
    formats.set(key, new Intl.DateTimeFormat(language.get().lang, options));
  }
  return formats.get(key);
}

/** "12月6日 周日 20:00" / "Sun, Dec 6, 20:00" in the viewer's time zone. */
export function formatWhen(ms) {
  return Number.isFinite(ms) ? format("when").format(new Date(ms)) : "—";
}

export function formatTime(ms) {
  return Number.isFinite(ms) ? format("time").format(new Date(ms)) : "—";
}

export function formatDate(ms) {
  return Number.isFinite(ms) ? format("date").format(new Date(ms)) : "—";
}

/** Epoch ms of an ISO string from the REST API (which gives UTC "...Z"). */
export function parseIso(iso) {
  const ms = iso ? Date.parse(iso) : NaN;
  return Number.isFinite(ms) ? ms : null;
}
