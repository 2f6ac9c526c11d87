// The bidder app: mounts the shell and the screen of the current route.
import { html, render, useState, useEffect } from "./html.js";
import { t, useLanguage, language, loadLanguage } from "./i18n.js";
import { useStore } from "./store.js";
import { auth, refreshMe } from "./api.js";
import { start } from "./live.js";
import { route, match } from "./router.js";
import { Shell } from "./shell.js";
import { ErrorBox, Loading } from "./ui.js";
import { routes as auctionRoutes, watchPersonalFrames } from "./auction.js";
import { routes as signinRoutes } from "./signin.js";

let routes = [...signinRoutes, ...auctionRoutes];

// Screen groups loaded on their first visit: the auction screens (where people arrive) come with
// the page; the account's and the course shop's when needed, each page with only what it shows.
const lazyGroups = [
  ...[
    // The account: its home, wallet, deposits and coupons; orders with payment; addresses.
    [/^\/me(\/(wallet|deposits|coupons))?$/, () => import("./account.js")],
    [/^\/(me\/orders(\/|$)|payment\/)/, () => import("./account-orders.js")],
    [/^\/me\/addresses$/, () => import("./account-addresses.js")],
    [/^\/course/, () => import("./shop.js")],
    [/^\/(cart|checkout)$/, () => import("./shop-buy.js")],
    [/^\/shop\//, () => import("./shop-orders.js")],
    [/^\/(learn\/|me\/courses$)/, () => import("./shop-learn.js")],
    // The degree path: its page, my degrees, one homework, the mentor's workspace.
    [/^\/degree\//, () => import("./degree.js")],
    [/^\/me\/degree(s|\/\d+)$/, () => import("./degree-me.js")],
    [/^\/me\/degree\/\d+\/homework\//, () => import("./degree-homework.js")],
    [/^\/mentor(\/|$)/, () => import("./degree-mentor.js")],
    [/^\/community(\/topic\/\d+)?$/, () => import("./community.js")],
    [/^\/community\/post\//, () => import("./community-post.js")],
    [/^\/community\/new$/, () => import("./community-new.js")],
    [/^\/(community\/user\/|me\/profile$)/, () => import("./community-user.js")],
    [/^\/community\/article/, () => import("./community-articles.js")],
    [/^\/me\/collections$/, () => import("./community-collections.js")],
  ].map(([pattern, load]) => ({ wants: (path) => pattern.test(path), load, loaded: false })),
];

function useLazyRoutes(path) {
  const [, loaded] = useState(0);
  const [failure, setFailure] = useState(null);
  const group = lazyGroups.find((candidate) => !candidate.loaded && candidate.wants(path));
  useEffect(() => {
    if (!group) return;
    group.load().then(
      (module) => {
        group.loaded = true;
        routes = [...module.routes, ...routes];
        loaded((n) => n + 1);
      },
      setFailure,
    );
  }, [group]);
  return { pending: !!group, failure };
}

function App() {
  useLanguage();
  const { path, query } = useStore(route);
  const lazy = useLazyRoutes(path);
  if (lazy.failure) return html`<${Shell}><${ErrorBox} error=${lazy.failure} retry=${() => location.reload()} /><//>`;
  if (lazy.pending) return html`<${Shell}><${Loading} /><//>`;
  const found = match(routes, path);
  const View = found ? found.view : NotFound;
  // The key remounts a screen when its route changes, so no state leaks from lot 1 into lot 2.
  return html`<${Shell}><${View} key=${path} params=${found ? found.params : []} query=${query} /><//>`;
}

function NotFound() {
  return html`<p class="state">${t("common.not_found")} <a href="#/">${t("nav.auctions")}</a></p>`;
}

if (auth.get().token) refreshMe().catch(() => {});
start();
watchPersonalFrames();
const root = document.getElementById("app");
loadLanguage(language.get().lang).then(() => {
  root.textContent = ""; // the boot message
  render(html`<${App} />`, root);
});
