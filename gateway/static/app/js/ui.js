// Shared pieces of the screens: loading and error states, money, countdowns, pictures, dialogs,
// toasts and the words for the server's error codes.
import { html, useState, useEffect, useRef } from "./html.js";
import { t, addStrings } from "./i18n.js";
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

addStrings({
  en: {
    "error.retry_in": "Try again in {s} s.",
    "error.NETWORK": "No connection. Check your network and try again.",
    "error.UNAUTHORIZED": "Please sign in again.",
    "error.NOT_AUTHENTICATED": "Sign in to bid.",
    "error.BAD_CREDENTIALS": "Wrong username or password.",
    "error.USERNAME_TAKEN": "That username is taken. Choose another.",
    "error.RATE_LIMITED": "Too many attempts.",
    "error.VALIDATION": "Please check the form.",
    "error.BAD_REQUEST": "The request was not understood.",
    "error.INVALID_DISPLAY_NAME": "Use 1–32 letters, digits or spaces.",
    "error.INSUFFICIENT_BALANCE": "Your balance is not enough.",
    "error.NOT_FOUND": "Not found.",
    "error.NOT_OPEN": "Bidding has not started on this lot.",
    "error.CLOSED": "Bidding on this lot has ended.",
    "error.NO_DEPOSIT": "Pay the deposit first to bid on this lot.",
    "error.TOO_LOW": "That price is too low now.",
    "error.OFF_INCREMENT": "Bids go up in fixed steps: choose one of the offered prices.",
    "error.SELF_OUTBID": "You are already leading. Raise your maximum instead.",
    "error.BLOCKED": "Your account may not bid because of an unpaid order.",
    "error.REF_REUSED": "That bid was already sent.",
    "error.UNAVAILABLE": "Bidding is briefly unavailable. Try again in a moment.",
    "error.TOO_MANY_CONNECTIONS": "Too many open connections.",
    "error.DEPOSIT_EXISTS": "You already have this deposit.",
    "error.CONFLICT": "This changed meanwhile. Reload and try again.",
    "error.PAYMENT_UNAVAILABLE": "Online payment is not available right now.",
    "error.ADDRESS_LIMIT": "You have the maximum number of addresses. Delete one first.",
    "error.ADDRESS_REQUIRED": "Choose a delivery address first.",
    "error.COUPON_ALREADY_CLAIMED": "You already have this coupon.",
    "error.COUPON_NOT_CLAIMABLE": "This coupon cannot be claimed now.",
    "error.COUPON_NOT_OFFERED": "This coupon is not offered here.",
    "error.COUPON_NOT_USABLE": "This coupon cannot be used for this order.",
    "error.COUPON_SOLD_OUT": "This coupon has run out.",
    "error.COUPON_UNAVAILABLE": "This coupon is no longer available.",
    "error.LOT_CLOSED": "This lot has closed.",
    "error.SESSION_ENDED": "This session has ended.",
    "error.NO_DEPOSIT_REQUIRED": "No deposit is needed here.",
    "error.ORDER_NOT_PAYABLE": "This order cannot be paid now.",
    "error.PRICE_CHANGED": "The amount changed. Check the new total and confirm again.",
    "error.IDEMPOTENCY_KEY_REUSED": "That request was already sent.",
    "error.ILLEGAL_STATE": "This is not possible in the current state.",
    "error.TWO_FACTOR_REQUIRED": "Enter the code from your authenticator.",
    "error.TWO_FACTOR_INVALID": "That code is wrong or was already used.",
    "error.PAYLOAD_TOO_LARGE": "That is too large.",
    "error.FORBIDDEN": "You may not do that.",
    "error.BALANCE_LIMIT": "That would exceed the balance limit.",
  },
  "zh-CN": {
    "error.retry_in": "请 {s} 秒后再试。",
    "error.NETWORK": "网络连接失败，请检查网络后重试。",
    "error.UNAUTHORIZED": "请重新登录。",
    "error.NOT_AUTHENTICATED": "登录后才能出价。",
    "error.BAD_CREDENTIALS": "用户名或密码错误。",
    "error.USERNAME_TAKEN": "该用户名已被使用，请换一个。",
    "error.RATE_LIMITED": "尝试次数过多。",
    "error.VALIDATION": "请检查填写的内容。",
    "error.BAD_REQUEST": "请求无法识别。",
    "error.INVALID_DISPLAY_NAME": "请使用 1–32 个文字、数字或空格。",
    "error.INSUFFICIENT_BALANCE": "余额不足。",
    "error.NOT_FOUND": "未找到。",
    "error.NOT_OPEN": "该拍品尚未开拍。",
    "error.CLOSED": "该拍品已结束竞拍。",
    "error.NO_DEPOSIT": "请先缴纳保证金再出价。",
    "error.TOO_LOW": "出价低于当前最低可出价。",
    "error.OFF_INCREMENT": "出价须按加价幅度递增，请选择推荐的价格。",
    "error.SELF_OUTBID": "您已领先，如需加价请提高最高出价。",
    "error.BLOCKED": "您有未支付的订单，暂不能出价。",
    "error.REF_REUSED": "该出价已发送。",
    "error.UNAVAILABLE": "竞拍服务暂时不可用，请稍后再试。",
    "error.TOO_MANY_CONNECTIONS": "打开的连接过多。",
    "error.DEPOSIT_EXISTS": "您已缴纳该保证金。",
    "error.CONFLICT": "内容已变化，请刷新后重试。",
    "error.PAYMENT_UNAVAILABLE": "暂时无法在线支付。",
    "error.ADDRESS_LIMIT": "地址数量已达上限，请先删除一个。",
    "error.ADDRESS_REQUIRED": "请先选择收货地址。",
    "error.COUPON_ALREADY_CLAIMED": "您已领取过该优惠券。",
    "error.COUPON_NOT_CLAIMABLE": "该优惠券当前不可领取。",
    "error.COUPON_NOT_OFFERED": "此处不提供该优惠券。",
    "error.COUPON_NOT_USABLE": "该优惠券不适用于此订单。",
    "error.COUPON_SOLD_OUT": "优惠券已领完。",
    "error.COUPON_UNAVAILABLE": "该优惠券已不可用。",
    "error.LOT_CLOSED": "该拍品已结拍。",
    "error.SESSION_ENDED": "该专场已结束。",
    "error.NO_DEPOSIT_REQUIRED": "此处无需保证金。",
    "error.ORDER_NOT_PAYABLE": "该订单当前无法支付。",
    "error.PRICE_CHANGED": "金额有变化，请核对新的合计后再次确认。",
    "error.IDEMPOTENCY_KEY_REUSED": "该请求已发送。",
    "error.ILLEGAL_STATE": "当前状态下无法操作。",
    "error.TWO_FACTOR_REQUIRED": "请输入身份验证器中的验证码。",
    "error.TWO_FACTOR_INVALID": "验证码错误或已使用。",
    "error.PAYLOAD_TOO_LARGE": "内容过大。",
    "error.FORBIDDEN": "您没有权限执行此操作。",
    "error.BALANCE_LIMIT": "超出余额上限。",
  },
});
