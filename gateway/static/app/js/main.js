// The bidder app: mounts the shell and the screen of the current route.
import { html, render } from "./html.js";
import { t, useLanguage } from "./i18n.js";
import { useStore } from "./store.js";
import { auth, refreshMe } from "./api.js";
import { start } from "./live.js";
import { route, match } from "./router.js";
import { Shell } from "./shell.js";
import { routes as auctionRoutes, watchPersonalFrames } from "./auction.js";
import { routes as accountRoutes } from "./account.js";
import { routes as signinRoutes } from "./signin.js";

const routes = [...signinRoutes, ...accountRoutes, ...auctionRoutes];

function App() {
  useLanguage();
  const { path, query } = useStore(route);
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
root.textContent = ""; // the boot message
render(html`<${App} />`, root);
