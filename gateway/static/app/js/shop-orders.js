// My course orders (filter by status, detail, cancel, pay again, request a refund) and the shop's
// coupons (claimable ones with a claim button, and mine).
import { html, useState } from "./html.js";
import { t } from "./i18n.js";
import { get, post } from "./api.js";
import { useTitle } from "./shell.js";
import { useAsync, Async, Empty, ErrorBox, Money, Field, Sheet, toast, errorText } from "./ui.js";
import { formatYuan } from "./money.js";
import { formatWhen, formatDate } from "./time.js";
import { signedInOnly, goPay, known } from "./account-common.js";
import { days, optional, missingFeature, couponTerms, orderStatus, absent, Row } from "./shop-common.js";

const STATUSES = ["pending", "paid", "refund_requested", "refunded", "cancelled_by_user", "cancelled_by_timeout"];

// -- orders -----------------------------------------------------------------------------------------
function Orders({ query }) {
  useTitle(t("shop.orders"), "/me");
  const status = STATUSES.includes(query.status) ? query.status : "";
  const state = useAsync(() => get("/api/v1/shop/orders?page=1&page_size=50" + (status ? "&status=" + status : "")), [status]);
  const chip = (value) => html`<a key=${value} href=${"#/shop/orders" + (value ? "?status=" + value : "")} class=${status === value ? "on" : ""}
    aria-current=${status === value ? "page" : undefined}>${value ? t("shop.status." + value) : t("shop.all")}</a>`;
  return html`<section class="narrow">
    <nav class="chips" aria-label=${t("shop.orders")}>${chip("")}${STATUSES.map(chip)}</nav>
    <${Async} state=${state} ready=${(data) => {
      // The filter is also applied here: a server without ?status= answers every order.
      const items = data.items.filter((o) => !status || orderStatus(o.status) === status);
      return items.length === 0 ? html`<${Empty} text=${t("shop.no_orders")} />` : html`<ul class="card list">${items.map(
        (o) => html`<li key=${o.order_no}><a class="list-link" href=${"#/shop/orders/" + o.order_no}><span class="shop-grow">
          <span class="strong">${o.lines.map((l) => l.course_name || l.name).join(" · ")}</span><br />
          <span class="small muted">${formatWhen(o.created_at_ms ?? Date.parse(o.created_at))} · ${t("shop.status." + orderStatus(o.status))}</span></span>
          <${Money} fen=${o.payable} /></a></li>`,
      )}</ul>`;
    }} /></section>`;
}

function RefundSheet({ order, done }) {
  const [reason, setReason] = useState("");
  const [failure, setFailure] = useState(null);
  async function send(event) {
    event.preventDefault();
    try {
      await post(`/api/v1/shop/orders/${order.order_no}/refund`, { reason: reason.trim() });
      toast(t("shop.refund_sent"), "good");
      done(true);
    } catch (error) {
      if (missingFeature("refund", error)) return done(false);
      setFailure(error);
    }
  }
  return html`<${Sheet} title=${t("shop.refund")} onClose=${() => done(false)}><form class="form" onSubmit=${send} novalidate>
    <${Field} id="shop-refund-reason" label=${t("shop.refund_reason")} error=${failure && errorText(failure)}>
      <textarea id="shop-refund-reason" rows="3" maxlength="200" value=${reason} onInput=${(e) => setReason(e.target.value)}></textarea><//>
    <div class="actions"><button class="button secondary" type="button" onClick=${() => done(false)}>${t("common.cancel")}</button>
      <button class="button primary" type="submit">${t("shop.refund_send")}</button></div></form><//>`;
}

function OrderPage({ params }) {
  const no = params[0];
  useTitle(t("shop.order"), "/shop/orders");
  const state = useAsync(() => get("/api/v1/shop/orders/" + no), [no]);
  const [refunding, setRefunding] = useState(false);
  const [busy, setBusy] = useState(false);
  async function act(feature, run) {
    setBusy(true);
    try {
      await run();
    } catch (error) {
      toast(missingFeature(feature, error) ? t("shop.not_yet") : errorText(error), "warn");
    } finally {
      setBusy(false);
      state.reload();
    }
  }
  const back = "/shop/orders/" + no;
  const payAgain = (order) =>
    act("pay", async () => {
      const answer = absent("pay") ? null : await optional("pay", () => post(`/api/v1/shop/orders/${no}/pay`));
      if (answer) goPay(answer.out_trade_no, answer.pay_url, back);
      else if (order.pay_url) goPay(order.out_trade_no, order.pay_url, back);
    });
  return html`<section class="narrow"><${Async} state=${state} ready=${(o) => {
    const status = orderStatus(o.status);
    return html`<div class="card">
        <p class="spread"><span class="muted small">${t("shop.order_no", { no: o.order_no })}</span><span class="badge">${t("shop.status." + status)}</span></p>
        <ul class="list">${o.lines.map((l) => html`<li key=${l.course_id || "d" + l.degree_course_id}><p class="spread"><a class="shop-link" href=${l.degree_course_id ? "#/degree/" + l.degree_course_id : "#/course/" + l.course_id}>${l.course_name || l.name}</a><${Money} fen=${l.paid_price} /></p>
          <p class="small muted">${days(l.policy_days ?? l.valid_days)} · ${formatYuan(l.price ?? l.original_price)}</p></li>`)}</ul>
        <table class="lines acct-split"><tbody>
          <${Row} label=${t("shop.original_total")} fen=${o.total ?? o.original_total} />
          <${Row} label=${t("shop.payable")} fen=${o.payable} />
          <${Row} label=${t("shop.balance_used")} fen=${o.balance_used} minus=${true} />
          <${Row} label=${t("shop.to_pay")} fen=${o.to_pay} strong=${true} />
        </tbody></table>
        ${status === "pending" && o.pay_deadline && html`<p class="notice">${t("shop.pay_by", { when: formatWhen(o.pay_deadline_ms ?? Date.parse(o.pay_deadline)) })}</p>`}
        ${o.refund && html`<p class="notice">${t("shop.refund_state", { status: known("shop.refund." + o.refund.status, o.refund.status) })} ${o.refund.reason}</p>`}
      </div>
      ${status === "pending" && html`<div class="row two">
        ${!absent("cancel") && html`<button class="button secondary" type="button" disabled=${busy} onClick=${() => act("cancel", () => post(`/api/v1/shop/orders/${no}/cancel`))}>${t("shop.cancel_order")}</button>`}
        <button class="button primary" type="button" disabled=${busy} onClick=${() => payAgain(o)}>${t("shop.pay", { amount: formatYuan(o.to_pay) })}</button></div>`}
      ${status === "paid" && !absent("refund") && html`<button class="button secondary block" type="button" onClick=${() => setRefunding(true)}>${t("shop.refund")}</button>`}
      ${refunding && html`<${RefundSheet} order=${o} done=${(sent) => (setRefunding(false), sent ? state.reload() : absent("refund") && toast(t("shop.not_yet"), "warn"))} />`}`;
  }} /></section>`;
}

// -- coupons ----------------------------------------------------------------------------------------
function Coupon({ c, action }) {
  const spent = c.status && c.status !== "unused";
  return html`<li class=${"acct-coupon" + (spent ? " spent" : "")}>
    <span class="acct-coupon-amount">${couponTerms(c)}</span>
    <span class="acct-coupon-text"><p class="strong">${c.title || c.name}</p>
      <p class="small muted">${c.course_name || (c.course_id ? t("shop.for_course", { id: c.course_id }) : t("shop.any_course"))}</p>
      <p class="small muted">${c.status ? t("shop.coupon." + c.status) + " · " : ""}${c.valid_to_ms || c.valid_to ? t("shop.until", { date: formatDate(c.valid_to_ms ?? Date.parse(c.valid_to)) }) : c.valid_days ? t("shop.valid_days", { n: c.valid_days }) : ""}</p></span>
    ${action && html`<span class="acct-coupon-action">${action}</span>`}
  </li>`;
}

function Coupons() {
  useTitle(t("shop.coupons"), "/me");
  const claimable = useAsync(() => optional("claim", () => get("/api/v1/shop/coupons/claimable")));
  const mine = useAsync(() => get("/api/v1/shop/coupons"));
  async function claim(c) {
    try {
      await post(`/api/v1/shop/coupons/${c.id}/claim`);
      toast(t("shop.claimed"), "good");
    } catch (error) {
      toast(errorText(error), "warn");
    }
    claimable.reload();
    mine.reload();
  }
  return html`<section class="narrow">
    ${claimable.data && html`<div class="card"><h2>${t("shop.to_claim")}</h2>${claimable.data.items.length === 0
      ? html`<p class="muted">${t("shop.none_to_claim")}</p>`
      : html`<ul class="list">${claimable.data.items.map((c) => html`<${Coupon} key=${c.id} c=${c} action=${
          c.left === 0 ? html`<span class="badge">${t("shop.sold_out")}</span>`
          : html`<button class="button primary" type="button" onClick=${() => claim(c)}>${c.claimed_by_me ? t("shop.claim_more") : t("shop.claim")}</button>`} />`)}</ul>`}</div>`}
    ${claimable.error && html`<${ErrorBox} error=${claimable.error} retry=${claimable.reload} />`}
    <div class="card"><h2>${t("shop.my_coupons")}</h2><${Async} state=${mine} ready=${(data) =>
      data.items.length === 0 ? html`<p class="muted">${t("shop.no_coupons_yet")}</p>` : html`<ul class="list">${data.items.map((c) => html`<${Coupon} key=${c.id} c=${c} />`)}</ul>`} /></div>
  </section>`;
}

export const routes = [
  { pattern: /^\/shop\/orders$/, view: signedInOnly(Orders) },
  { pattern: /^\/shop\/orders\/(\d{1,24})$/, view: signedInOnly(OrderPage) },
  { pattern: /^\/shop\/coupons$/, view: signedInOnly(Coupons) },
];
