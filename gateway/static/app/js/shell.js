// The frame around every screen: app bar with title, back and language, the offline banner, the
// tab bar (bottom on phones, in the header on wide screens) and the toasts.
import { html, useEffect } from "./html.js";
import { t, LANGUAGES, setLanguage, useLanguage } from "./i18n.js";
import { createStore, useStore } from "./store.js";
import { live, onFrame } from "./live.js";
import { formatYuan } from "./money.js";
import { auth } from "./api.js";
import { Toasts, toast } from "./ui.js";
import { route } from "./router.js";

const titles = createStore({ title: "", back: null });

/** Sets the app bar's title (and the document's) and where "back" goes (null: no back button). */
export function useTitle(title, back = null) {
  useEffect(() => {
    titles.set({ title, back });
    document.title = title ? `${title} · Gavel` : "Gavel";
  }, [title, back]);
}

function LanguageSwitch() {
  const lang = useLanguage();
  const next = LANGUAGES.find((item) => item.code !== lang);
  return html`<button class="lang" type="button" onClick=${() => setLanguage(next.code)}
    aria-label=${t("nav.language") + ": " + next.label} lang=${next.code}>${next.label}</button>`;
}

/** The personal notice that the auction house voided one of your bids, on whatever screen is open. */
function useVoidedBidNotice() {
  useEffect(
    () =>
      onFrame("your_bid_voided", (frame) =>
        toast(t(frame.leading ? "lot.your_bid_voided_leading" : "lot.your_bid_voided", { price: formatYuan(frame.price) }), "warn", 8000),
      ),
    [],
  );
}

function OfflineBanner() {
  const status = useStore(live, (state) => state.status);
  if (status !== "offline") return null;
  return html`<div class="offline" role="alert">${t("net.offline")}</div>`;
}

function Tabs() {
  const path = useStore(route, (state) => state.path);
  const me = useStore(auth, (state) => state.token);
  const tab = /^\/(course|cart|checkout|shop\/|learn\/|me\/courses|degree)/.test(path) ? 1 : /^\/(community|me\/(profile|collections))/.test(path) ? 3 : /^\/(me|signin)/.test(path) ? 2 : 0;
  const on = (n) => ({ class: tab === n ? "active" : "", "aria-current": tab === n ? "page" : undefined });
  return html`<nav class="tabbar" aria-label="Gavel">
    <a href="#/" ...${on(0)}><span aria-hidden="true" class="tab-icon">⚖</span>${t("nav.auctions")}</a>
    <a href="#/courses" ...${on(1)}><span aria-hidden="true" class="tab-icon">✎</span>${t("nav.courses")}</a>
    <a href="#/community" ...${on(3)}><span aria-hidden="true" class="tab-icon">✦</span>${t("nav.community")}</a>
    <a href=${me ? "#/me" : "#/signin"} ...${on(2)}>
      <span aria-hidden="true" class="tab-icon">☺</span>${me ? t("nav.account") : t("nav.signin")}</a>
  </nav>`;
}

export function Shell({ children }) {
  useLanguage();
  useVoidedBidNotice();
  const { title, back } = useStore(titles);
  return html`<div class="shell">
    <header class="appbar">
      ${back
        ? html`<a class="back" href=${"#" + back} aria-label=${t("nav.back")}><span aria-hidden="true">‹</span></a>`
        : html`<a class="brand" href="#/">Gavel</a>`}
      <h1 class="title">${title}</h1>
      <${Tabs} />
      <${LanguageSwitch} />
    </header>
    <${OfflineBanner} />
    <main id="main" class="content">${children}</main>
    <${Toasts} />
  </div>`;
}
