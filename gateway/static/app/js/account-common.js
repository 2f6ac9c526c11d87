// What the account screens share: the sign-in guard, where a payment returns to, request keys.
import { html, useEffect } from "./html.js";
import { useStore } from "./store.js";
import { auth } from "./api.js";
import { navigate, here } from "./router.js";
import { Loading } from "./ui.js";
import { t } from "./i18n.js";

/** The screen when signed in; otherwise off to sign-in, coming back here afterwards. */
export function signedInOnly(View) {
  return function Guarded(props) {
    const token = useStore(auth, (state) => state.token);
    useEffect(() => {
      if (!token) navigate("/signin?next=" + encodeURIComponent(here()), { replace: true });
    }, [token]);
    return token ? html`<${View} ...${props} />` : html`<${Loading} />`;
  };
}

const RETURN_PREFIX = "gavel-payment-";

/** Send the payer to the provider; /payment/{out_trade_no} brings them back to `back`. */
export function goPay(outTradeNo, payUrl, back) {
  try {
    sessionStorage.setItem(RETURN_PREFIX + outTradeNo, JSON.stringify({ back }));
  } catch {
    /* storage off: the return page falls back to the orders list */
  }
  location.assign(payUrl);
}

export function paymentReturnPath(outTradeNo) {
  try {
    const stored = JSON.parse(sessionStorage.getItem(RETURN_PREFIX + outTradeNo) || "null");
    if (stored && typeof stored.back === "string" && stored.back.startsWith("/")) return stored.back;
  } catch {
    /* unreadable: the default below */
  }
  return "/me/orders";
}

/** A fresh idempotency key (the server accepts A-Z a-z 0-9 _ . : -). */
export function newKey(prefix) {
  const random = crypto.randomUUID ? crypto.randomUUID() : String(Math.random()).slice(2) + Date.now();
  return prefix + "-" + random;
}

/** Whether a failed request may be sent again with the same key (the server may not have seen it). */
export function retriable(error) {
  return !error || error.status === 0 || error.status >= 500;
}

/** The words for `key`, or `fallback` (a state the server added after these strings were written). */
export function known(key, fallback) {
  const text = t(key);
  return text === key ? fallback : text;
}
