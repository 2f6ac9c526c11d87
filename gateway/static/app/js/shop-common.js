// What the course shop's screens share: optional endpoints, course labels, cards, coupon words.
import { html } from "./html.js";
import { t, groupStrings, loadLanguage, language } from "./i18n.js";
import { formatYuan } from "./money.js";
import { Picture } from "./ui.js";

// The shop's strings and styles come with its screens: the first screen does not carry them.
const STYLES = "/static/app/shop.css";
await Promise.all([
  groupStrings.push(async (lang) => (await import(`./lang/shop.${lang}.js`)).default) && loadLanguage(language.get().lang),
  document.querySelector(`link[href="${STYLES}"]`) ||
    new Promise((resolve) => {
      const link = Object.assign(document.createElement("link"), { rel: "stylesheet", href: STYLES, onload: resolve, onerror: resolve });
      document.head.append(link);
    }),
]);

// Endpoints that answered 404/405 (not deployed here yet; the callers ask only about things that
// exist, such as the reviews of a course on screen): their feature hides.
const missing = new Set();
export const absent = (feature) => missing.has(feature);

/** `request()`, or null when its endpoint does not exist here (the feature then hides). */
export async function optional(feature, request) {
  if (missing.has(feature)) return null;
  try {
    return await request();
  } catch (error) {
    if (!missingFeature(feature, error)) throw error;
    return null;
  }
}

/** A failed action on an endpoint that does not exist yet: hide it and say so. */
export function missingFeature(feature, error) {
  if (error.status !== 405 && !(error.status === 404 && ["HTTP_404", "NOT_FOUND"].includes(error.code))) return false;
  missing.add(feature);
  return true;
}

export const days = (n) => t("shop.days", { n });
export const level = (value) => (value ? t("shop.level." + value) : "");
export const courseType = (value) => (value ? t("shop.type." + value) : "");

/** "★ 4.6 (12)" or nothing without reviews. */
export function Rating({ average, count }) {
  if (!average) return null;
  return html`<span class="shop-rating" aria-label=${t("shop.rating", { avg: average, n: count })}>★ ${average}
    <span class="muted">(${count})</span></span>`;
}

export function CourseCard({ course }) {
  return html`<li class="shop-card"><a href=${"#/course/" + course.id}>
    <${Picture} picture=${course.picture || course.image || null} alt=${course.name} sizes="(min-width: 900px) 25vw, 50vw" className="shop-thumb" />
    <div class="shop-card-body">
      <h3 class="shop-card-title">${course.name}</h3>
      <p class="muted small">${[level(course.level), course.hours != null && t("shop.hours", { n: course.hours })].filter(Boolean).join(" · ")}</p>
      <p class="spread"><span class="price-small">${course.lowest_price != null ? t("shop.from", { price: formatYuan(course.lowest_price) }) : t("shop.no_price")}</span>
        <${Rating} average=${course.review_average} count=${course.review_count} /></p>
    </div></a></li>`;
}

/** A coupon's terms in words: "¥20.00 off", "¥20.00 off ¥99.00", "15% off". */
export function couponTerms(c) {
  if (c.kind === "percent") return t("shop.coupon.percent", { n: c.off_percent });
  if (c.kind === "threshold") return t("shop.coupon.threshold", { value: formatYuan(c.value), min: formatYuan(c.minimum) });
  return t("shop.coupon.flat", { value: formatYuan(c.value) });
}

/** Older orders say "cancelled": the timeout's. */
export const orderStatus = (status) => (status === "cancelled" ? "cancelled_by_timeout" : status);

export function Progress({ progress }) {
  const { done = 0, total = 0 } = progress || {};
  return html`<div class="shop-progress"><progress max=${total || 1} value=${done} aria-label=${t("shop.progress", { done, total })}></progress>
    <span class="small muted">${t("shop.progress", { done, total })}</span></div>`;
}

/** A line of a totals table; `minus` shows a discount. */
export function Row({ label, fen, minus, strong }) {
  return html`<tr class=${strong ? "acct-total" : ""}><th scope="row">${label}</th>
    <td class=${minus ? "acct-minus" : ""}>${minus && fen ? "−" : ""}${formatYuan(fen)}</td></tr>`;
}
