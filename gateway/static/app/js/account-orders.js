// Auction orders grouped by status, one order with its payment screen, and the page the payment
// provider returns to. Every amount is the server's (checkout quote, pay answer): never summed here.
import { html, useState, useEffect, useRef } from "./html.js";
import { t, addStrings } from "./i18n.js";
import { api, get, refreshMe } from "./api.js";
import { navigate } from "./router.js";
import { useTitle } from "./shell.js";
import { useAsync, Async, Empty, ErrorBox, Money, Countdown, Picture, Sheet, toast, errorText } from "./ui.js";
import { formatYuan } from "./money.js";
import { formatWhen } from "./time.js";
import { signedInOnly, goPay, paymentReturnPath, newKey, retriable } from "./account-common.js";
import { AddressForm, addressLine, sortAddresses } from "./account-addresses.js";

const BADGES = { unpaid: "warn", awaiting_delivery: "good", completed: "", overdue: "bad" };

function StatusBadge({ order }) {
  return html`<span class=${"badge " + (BADGES[order.status_name] || "")}>${t("order.status." + order.status_name)}</span>`;
}

function OrderRow({ order }) {
  return html`<li>
    <a class="acct-order" href=${"#/me/orders/" + order.id}>
      <${Picture} picture=${order.cover || null} alt=${order.title} sizes="96px" className="acct-thumb" />
      <span class="acct-order-text">
        <strong class="acct-title">${order.title || t("order.lot", { id: order.lot_id })}</strong>
        <span class="row"><${StatusBadge} order=${order} /><${Money} fen=${order.price} /></span>
        ${order.status_name === "unpaid" &&
        html`<span class="small">${t("order.pay_within")} <${Countdown} endsAt=${order.deadline_ms} /></span>`}
      </span>
    </a>
  </li>`;
}

function Orders({ query }) {
  useTitle(t("order.title"), "/me");
  const state = useAsync(() => get("/api/v1/orders"));
  const chosen = query.status || "";
  return html`<section>
    <${Async} state=${state} ready=${(data) => {
      const groups = data.groups.filter((group) => !chosen || group.key === chosen);
      return html`<nav class="chips" aria-label=${t("order.title")}>
          <a href="#/me/orders" class=${chosen ? "" : "on"} aria-current=${chosen ? undefined : "page"}>${t("order.all")} ${data.total}</a>
          ${data.groups.map(
            (group) => html`<a key=${group.key} href=${"#/me/orders?status=" + group.key} class=${chosen === group.key ? "on" : ""}
              aria-current=${chosen === group.key ? "page" : undefined}>${t("order.status." + group.key)} ${group.count}</a>`,
          )}
        </nav>
        ${data.total === 0 && html`<${Empty} text=${t("order.none")} />`}
        ${groups.filter((group) => group.count > 0).map(
          (group) => html`<div class="card" key=${group.key}>
            <h2>${t("order.status." + group.key)} <span class="muted">(${group.count})</span></h2>
            <ul class="list">${group.items.map((order) => html`<${OrderRow} key=${order.id} order=${order} />`)}</ul>
          </div>`,
        )}`;
    }} />
  </section>`;
}

/** Rows of the server's split: price, minus coupon, minus deposit, the rest to pay. */
function SplitTable({ price, split, cashLabel }) {
  const line = (label, fen, className) => html`<tr class=${className}><th scope="row">${label}</th><td class="money">${formatYuan(fen)}</td></tr>`;
  const note = (key, fen) => fen > 0 && html`<p class="small muted">${t(key, { amount: formatYuan(fen) })}</p>`;
  return html`<table class="lines acct-split"><tbody>
    ${line(t("order.price"), price)}
    ${split.coupon_used > 0 && line(t("order.coupon"), -split.coupon_used, "acct-minus")}
    ${split.deposit_deducted > 0 && line(t("order.deposit"), -split.deposit_deducted, "acct-minus")}
    ${line(cashLabel, split.to_pay ?? split.cash_amount, "acct-total")}
  </tbody></table>
  ${note("order.deposit_refunded", split.deposit_refunded)}${note("order.deposit_kept", split.deposit_kept)}`;
}

function Choice({ name, value, checked, onChange, children }) {
  return html`<label class=${"acct-choice" + (checked ? " on" : "")}>
    <input type="radio" name=${name} value=${value} checked=${checked} onChange=${() => onChange(value)} />
    <span class="acct-choice-text">${children}</span>
  </label>`;
}

function Checkout({ order, onPaid }) {
  const [couponId, setCouponId] = useState(null);
  const [addressId, setAddressId] = useState(null);
  const [payWith, setPayWith] = useState("balance");
  const [adding, setAdding] = useState(false);
  const [failure, setFailure] = useState(null);
  const [busy, setBusy] = useState(false);
  // One key per attempt: kept when a retry may repeat a request the server already saw, new otherwise.
  const key = useRef(null);
  const quote = useAsync(
    () => get(`/api/v1/orders/${order.id}/checkout` + (couponId ? `?coupon_id=${couponId}` : "")),
    [couponId],
  );
  const data = quote.data;
  useEffect(() => {
    key.current = null;
  }, [couponId, addressId, payWith]);
  useEffect(() => {
    if (data && addressId === null && data.addresses.length) setAddressId(sortAddresses(data.addresses)[0].id);
  }, [data]);
  if (quote.error && couponId !== null) {
    // A coupon that stopped being usable: say so and quote without it.
    return html`<div class="card"><${ErrorBox} error=${quote.error} retry=${() => setCouponId(null)} /></div>`;
  }

  async function pay() {
    if (!addressId) {
      setFailure({ code: "ADDRESS_REQUIRED" });
      return;
    }
    key.current = key.current || newKey("ord" + order.id);
    setBusy(true);
    setFailure(null);
    try {
      const body = { coupon_id: couponId, address_id: addressId, pay_with: payWith, idempotency_key: key.current };
      const answer = await api("POST", `/api/v1/orders/${order.id}/pay`, body);
      if (answer.pay_url) {
        goPay(answer.out_trade_no, answer.pay_url, "/me/orders/" + order.id);
        return;
      }
      toast(t("pay.paid"), "good");
      refreshMe().catch(() => {});
      onPaid();
    } catch (error) {
      if (!retriable(error)) key.current = null;
      setFailure(error);
      if (error.code === "PRICE_CHANGED" || error.code === "COUPON_NOT_USABLE") quote.reload();
    } finally {
      setBusy(false);
    }
  }

  return html`<${Async} state=${quote} ready=${(checkout) => {
    const split = checkout.quote;
    const nothingDue = split.to_pay === 0;
    return html`<div class="card">
        <h2>${t("order.coupon")}</h2>
        ${checkout.coupons.length === 0 && html`<p class="muted">${t("order.no_coupons")}</p>`}
        ${checkout.coupons.length > 0 &&
        html`<div role="radiogroup" aria-label=${t("order.coupon")}>
          <${Choice} name="coupon" value=${null} checked=${couponId === null} onChange=${setCouponId}>${t("order.no_coupon")}<//>
          ${checkout.coupons.map(
            (coupon) => html`<${Choice} key=${coupon.id} name="coupon" value=${coupon.id} checked=${couponId === coupon.id} onChange=${setCouponId}>
              ${coupon.title} · ${t("coupon.rule", { amount: formatYuan(coupon.amount) })}<//>`,
          )}
        </div>`}
      </div>
      ${checkout.deposit &&
      html`<div class="card">
        <h2>${t("order.deposit")}</h2>
        <p>${t("order.deposit_info", { amount: formatYuan(checkout.deposit.amount), applies: formatYuan(checkout.deposit.remaining) })}</p>
      </div>`}
      <div class="card">
        <h2>${t("order.address")}</h2>
        ${checkout.addresses.length === 0 && html`<p class="muted">${t("order.no_address")}</p>`}
        <div role="radiogroup" aria-label=${t("order.address")}>
          ${sortAddresses(checkout.addresses).map(
            (address) => html`<${Choice} key=${address.id} name="address" value=${address.id} checked=${addressId === address.id} onChange=${setAddressId}>
              <strong>${address.name}</strong> ${address.phone}<br />${addressLine(address)}<//>`,
          )}
        </div>
        <button class="button secondary" type="button" onClick=${() => setAdding(true)}>${t("addr.add")}</button>
      </div>
      <div class="card">
        <h2>${t("order.to_pay")}</h2>
        <${SplitTable} price=${checkout.price} split=${split} cashLabel=${t("order.to_pay")} />
        ${!nothingDue &&
        html`<div role="radiogroup" aria-label=${t("order.pay_with")}>
          ${["balance", "provider"].map(
            (way) => html`<${Choice} key=${way} name="pay" value=${way} checked=${payWith === way} onChange=${setPayWith}>
              ${t("order.with_" + way, { amount: formatYuan(checkout.balance) })}<//>`,
          )}
        </div>`}
        ${!nothingDue && payWith === "balance" && checkout.balance < split.to_pay && html`<p class="field-error">${t("error.INSUFFICIENT_BALANCE")}</p>`}
        ${failure && html`<p class="form-error" role="alert">${errorText(failure)}</p>`}
        <button class="button primary block" type="button" disabled=${busy || !checkout.payable} onClick=${pay}>
          ${nothingDue ? t("order.confirm_free") : t("order.pay", { amount: formatYuan(split.to_pay) })}</button>
        <p class="small muted">${t("order.pay_within")} <${Countdown} endsAt=${order.deadline_ms} /></p>
      </div>
      ${adding &&
      html`<${Sheet} title=${t("addr.add")} onClose=${() => setAdding(false)}>
        <${AddressForm} onCancel=${() => setAdding(false)} onSaved=${(address) => {
          setAdding(false);
          setAddressId(address.id);
          quote.reload();
        }} />
      <//>`}`;
  }} />`;
}

function Paid({ order }) {
  const payment = order.payment;
  return html`<div class="card">
    <h2>${t("pay.title")}</h2>
    ${payment &&
    html`<${SplitTable} price=${order.price} split=${payment}
      cashLabel=${payment.cash_source === "provider" ? t("order.paid_provider") : t("order.paid_balance")} />
      <p class="spread"><span>${t("order.paid_amount")}</span><strong><${Money} fen=${payment.paid_amount} /></strong></p>`}
    ${order.paid_at_ms && html`<p class="small muted">${t("order.paid_at", { when: formatWhen(order.paid_at_ms) })}</p>`}
  </div>
  ${order.address &&
  html`<div class="card"><h2>${t("order.address")}</h2><p><strong>${order.address.name}</strong> ${order.address.phone}</p><p>${addressLine(order.address)}</p></div>`}
  ${order.shipped_at_ms &&
  html`<div class="card"><p>${t("order.shipped", { when: formatWhen(order.shipped_at_ms) })}</p>
    ${order.tracking_no && html`<p>${t("order.tracking", { no: order.tracking_no })}</p>`}</div>`}`;
}

function OrderDetail({ params }) {
  const id = params[0];
  useTitle(t("order.title"), "/me/orders");
  const state = useAsync(() => get(`/api/v1/orders/${id}`));
  return html`<section class="narrow"><${Async} state=${state} ready=${(order) => html`
    <div class="card acct-order-head">
      <${Picture} picture=${order.cover || null} alt=${order.title} sizes="120px" className="acct-thumb" />
      <div>
        <h2><a href=${"#/lot/" + order.lot_id}>${order.title || t("order.lot", { id: order.lot_id })}</a></h2>
        <p class="row"><${StatusBadge} order=${order} /> <span>${t("order.price")}</span> <strong><${Money} fen=${order.price} /></strong></p>
        <p class="small muted">${t("order.closed_at", { when: formatWhen(order.closed_at_ms) })}</p>
      </div>
    </div>
    ${order.status_name === "unpaid" && order.pending_payment && order.pending_payment.pay_url &&
    html`<div class="card">
      <p>${t("order.pending", { amount: formatYuan(order.pending_payment.amount) })}</p>
      <button class="button primary block" type="button"
        onClick=${() => goPay(order.pending_payment.out_trade_no, order.pending_payment.pay_url, "/me/orders/" + order.id)}>${t("order.continue")}</button>
    </div>`}
    ${order.status_name === "unpaid" && !order.pending_payment && html`<${Checkout} order=${order} onPaid=${state.reload} />`}
    ${order.status_name === "overdue" &&
    html`<div class="card"><p>${t("order.overdue_text")}</p>
      ${Number.isInteger(order.forfeit) && html`<p>${t("order.forfeit", { amount: formatYuan(order.forfeit) })}</p>`}</div>`}
    ${order.payment && html`<${Paid} order=${order} />`}
  `} /></section>`;
}

const POLL_MS = 1000;
const POLL_LIMIT_MS = 60_000;
const BACK_AFTER_MS = 2000;

function PaymentReturn({ params }) {
  const outTradeNo = params[0];
  const back = paymentReturnPath(outTradeNo);
  useTitle(t("pay.title"), null);
  const [state, setState] = useState({ status: "pending", error: null, gaveUp: false });
  useEffect(() => {
    const started = Date.now();
    let timer = 0;
    let stopped = false;
    async function poll() {
      try {
        const payment = await get(`/api/v1/payments/${encodeURIComponent(outTradeNo)}`);
        if (stopped) return;
        setState({ status: payment.status, error: null, gaveUp: false });
        if (payment.status !== "pending") {
          refreshMe().catch(() => {});
          if (payment.status === "paid") timer = setTimeout(() => navigate(back, { replace: true }), BACK_AFTER_MS);
          return;
        }
      } catch (error) {
        if (stopped) return;
        if (!retriable(error)) return setState({ status: "error", error, gaveUp: false });
      }
      if (Date.now() - started >= POLL_LIMIT_MS) return setState((previous) => ({ ...previous, gaveUp: true }));
      timer = setTimeout(poll, POLL_MS);
    }
    poll();
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }, [outTradeNo]);
  const { status, error, gaveUp } = state;
  const text =
    status === "paid" ? t("pay.paid") : status === "closed" ? t("pay.closed") : gaveUp ? t("pay.waiting_long") : t("pay.waiting");
  return html`<section class="narrow card acct-payment">
    ${error ? html`<${ErrorBox} error=${error} />` : html`<p class=${"acct-pay-state " + status} role="status" aria-live="polite">${text}</p>`}
    <a class="button primary block" href=${"#" + back}>${t("pay.back")}</a>
  </section>`;
}

export const routes = [
  { pattern: /^\/me\/orders$/, view: signedInOnly(Orders) },
  { pattern: /^\/me\/orders\/(\d+)$/, view: signedInOnly(OrderDetail) },
  { pattern: /^\/payment\/([A-Za-z0-9_.:-]{1,64})$/, view: signedInOnly(PaymentReturn) },
];

addStrings({
  en: {
    "order.title": "My orders",
    "order.all": "All",
    "order.none": "No orders yet. Lots you win appear here.",
    "order.lot": "Lot {id}",
    "order.status.unpaid": "To pay",
    "order.status.awaiting_delivery": "To receive",
    "order.status.completed": "Completed",
    "order.status.overdue": "Overdue",
    "order.pay_within": "Pay within",
    "order.price": "Hammer price",
    "order.coupon": "Coupon",
    "order.deposit": "Deposit",
    "order.to_pay": "To pay now",
    "order.no_coupon": "No coupon",
    "order.no_coupons": "No coupon applies to this order.",
    "order.deposit_info": "Your deposit of {amount}: up to {applies} counts towards the price, the rest is refunded.",
    "order.deposit_refunded": "{amount} of your deposit goes back to your balance.",
    "order.deposit_kept": "{amount} of your session deposit stays held for your other bids.",
    "order.address": "Delivery address",
    "order.no_address": "Add an address to receive the lot.",
    "order.pay_with": "Pay with",
    "order.with_balance": "Balance ({amount})",
    "order.with_provider": "Online payment",
    "order.pay": "Pay {amount}",
    "order.confirm_free": "Confirm (nothing to pay)",
    "order.pending": "A payment of {amount} was started and is not finished yet.",
    "order.continue": "Continue paying",
    "order.paid_balance": "From your balance",
    "order.paid_provider": "Paid online",
    "order.paid_amount": "Paid in total",
    "order.paid_at": "Paid {when}",
    "order.closed_at": "Won {when}",
    "order.shipped": "Shipped {when}",
    "order.tracking": "Tracking number: {no}",
    "order.overdue_text": "This order was not paid in time.",
    "order.forfeit": "Deducted from the deposit: {amount}",
    "pay.title": "Payment",
    "pay.waiting": "Waiting for the payment to be confirmed…",
    "pay.waiting_long": "Still waiting for the confirmation. Check your orders again in a few minutes.",
    "pay.paid": "Payment received. Thank you!",
    "pay.closed": "The payment was not completed. Nothing was charged; you can try again.",
    "pay.back": "Continue",
  },
  "zh-CN": {
    "order.title": "我的订单",
    "order.all": "全部",
    "order.none": "暂无订单，拍得的拍品会显示在这里。",
    "order.lot": "拍品 {id}",
    "order.status.unpaid": "待付款",
    "order.status.awaiting_delivery": "待收货",
    "order.status.completed": "已完成",
    "order.status.overdue": "已逾期",
    "order.pay_within": "剩余支付时间",
    "order.price": "成交价",
    "order.coupon": "优惠券",
    "order.deposit": "保证金",
    "order.to_pay": "还需支付",
    "order.no_coupon": "不使用优惠券",
    "order.no_coupons": "暂无可用于此订单的优惠券。",
    "order.deposit_info": "您的保证金 {amount}，本单最多抵扣 {applies}，其余退还。",
    "order.deposit_refunded": "保证金中的 {amount} 将退回余额。",
    "order.deposit_kept": "专场保证金中的 {amount} 继续冻结，用于您的其他出价。",
    "order.address": "收货地址",
    "order.no_address": "请添加收货地址以便收货。",
    "order.pay_with": "支付方式",
    "order.with_balance": "余额支付（{amount}）",
    "order.with_provider": "在线支付",
    "order.pay": "支付 {amount}",
    "order.confirm_free": "确认（无需支付）",
    "order.pending": "已发起 {amount} 的支付，尚未完成。",
    "order.continue": "继续支付",
    "order.paid_balance": "余额支付",
    "order.paid_provider": "在线支付",
    "order.paid_amount": "实付金额",
    "order.paid_at": "支付时间 {when}",
    "order.closed_at": "成交时间 {when}",
    "order.shipped": "发货时间 {when}",
    "order.tracking": "快递单号：{no}",
    "order.overdue_text": "该订单未在规定时间内付款。",
    "order.forfeit": "保证金扣除：{amount}",
    "pay.title": "支付结果",
    "pay.waiting": "正在确认支付结果…",
    "pay.waiting_long": "仍在等待支付确认，请稍后到订单中查看。",
    "pay.paid": "支付成功，感谢您的购买！",
    "pay.closed": "支付未完成，未扣款，您可以重新支付。",
    "pay.back": "继续",
  },
});
