// Auction orders grouped by status, one order with its payment screen, and the page the payment
// provider returns to. Every amount is the server's (checkout quote, pay answer): never summed here.
import { html, useState, useEffect, useRef } from "./html.js";
import { t } from "./i18n.js";
import { api, get, refreshMe } from "./api.js";
import { navigate } from "./router.js";
import { useTitle } from "./shell.js";
import { useAsync, Async, Empty, ErrorBox, Money, Countdown, Picture, Sheet, toast, errorText } from "./ui.js";
import { formatYuan } from "./money.js";
import { formatWhen } from "./time.js";
import { signedInOnly, goPay, paymentReturnPath, newKey, retriable } from "./account-common.js";
import { AddressForm, addressLine, sortAddresses } from "./account-addresses.js";
import "./account-strings.js";

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
