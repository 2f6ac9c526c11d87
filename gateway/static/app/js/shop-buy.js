// Buying courses: the cart and the checkout (coupons, balance, the server's totals, pay).
import { html, useState } from "./html.js";
import { t } from "./i18n.js";
import { api, get, post, refreshMe } from "./api.js";
import { navigate } from "./router.js";
import { useTitle } from "./shell.js";
import { useAsync, Async, Empty, Money, Field, toast, errorText } from "./ui.js";
import { formatYuan, parseYuan, yuanInput } from "./money.js";
import { signedInOnly, goPay, newKey, retriable, known } from "./account-common.js";
import { days, couponTerms, Row } from "./shop-common.js";

// A line is a course's or a degree course's (`kind` "degree": no course coupons, its own page).
const degree = (item) => item.kind === "degree";
const lineKey = (item) => (degree(item) ? "d" + item.degree_course_id : item.course_id);
const target = (item) => (degree(item) ? { degree_course_id: item.degree_course_id } : { course_id: item.course_id });

// -- cart -------------------------------------------------------------------------------------------
function Cart() {
  useTitle(t("shop.cart"), "/courses");
  const state = useAsync(() => get("/api/v1/cart"));
  const [busy, setBusy] = useState(false);
  async function change(method, body, path = "/api/v1/cart") {
    setBusy(true);
    try {
      await api(method, path, body);
    } catch (error) {
      toast(errorText(error), "warn");
    } finally {
      setBusy(false);
      state.reload();
    }
  }
  async function checkout(items) {
    setBusy(true);
    try {
      // Each list is sent only when it has something (the server takes no empty list).
      const body = {};
      for (const d of [false, true]) {
        const ids = items.filter((i) => i.available && degree(i) === d).map((i) => (d ? i.degree_course_id : i.course_id));
        if (ids.length) body[d ? "degree_course_ids" : "course_ids"] = ids;
      }
      await post("/api/v1/checkout", body);
      navigate("/checkout");
    } catch (error) {
      toast(errorText(error), "warn");
      setBusy(false);
    }
  }
  return html`<section class="narrow"><${Async} state=${state} ready=${(cart) =>
    cart.items.length === 0
      ? html`<${Empty} text=${t("shop.cart_empty")} /><a class="button primary block" href="#/courses">${t("shop.browse")}</a>`
      : html`<ul class="card list">${cart.items.map((item) => html`<li key=${lineKey(item)} class="stack">
            <p class="spread"><a href=${(degree(item) ? "#/degree/" + item.degree_course_id : "#/course/" + item.course_id)} class="strong shop-link">${item.name}</a>
              ${item.available ? html`<${Money} fen=${item.price} className="money strong" />` : html`<span class="badge bad">${t("shop.unavailable")}</span>`}</p>
            ${!item.available && html`<p class="notice">${known("shop.reason." + item.reason, t("shop.unavailable"))}</p>`}
            <div class="row nowrap">
              <label class="visually-hidden" for=${"shop-plan-" + lineKey(item)}>${t("shop.plan_of", { name: item.name })}</label>
              <select id=${"shop-plan-" + lineKey(item)} class="input" disabled=${busy} value=${item.policy_id}
                onChange=${(e) => change("PATCH", { ...target(item), price_policy_id: Number(e.target.value) })}>
                ${!item.policies.some((p) => p.id === item.policy_id) && html`<option value=${item.policy_id}>${t("shop.choose_plan")}</option>`}
                ${item.policies.map((p) => html`<option key=${p.id} value=${p.id}>${days(p.valid_days)} · ${formatYuan(p.price)}</option>`)}
              </select>
              <button class="button secondary" type="button" disabled=${busy} onClick=${() => change("DELETE", undefined, degree(item) ? "/api/v1/cart/degrees/" + item.degree_course_id : "/api/v1/cart/" + item.course_id)}
                aria-label=${t("shop.remove_named", { name: item.name })}>${t("shop.remove")}</button>
            </div></li>`)}
          </ul>
          <div class="card"><p class="spread big"><span>${t("shop.total", { n: cart.count - cart.unavailable })}</span><${Money} fen=${cart.total} className="money price" /></p>
            ${cart.unavailable > 0 && html`<p class="muted small">${t("shop.unavailable_note", { n: cart.unavailable })}</p>`}
            <button class="button primary block" type="button" disabled=${busy || cart.count === cart.unavailable} onClick=${() => checkout(cart.items)}>${t("shop.checkout")}</button>
          </div>`} /></section>`;
}

// -- checkout ---------------------------------------------------------------------------------------
function CouponSelect({ id, label, coupons, value, onChange }) {
  return html`<${Field} id=${id} label=${label}>
    <select id=${id} value=${value ?? ""} onChange=${(e) => onChange(e.target.value ? Number(e.target.value) : null)}>
      <option value="">${coupons.length ? t("shop.no_coupon") : t("shop.no_coupons")}</option>
      ${coupons.map((c) => html`<option key=${c.id} value=${c.id}>${c.name} · ${couponTerms(c)}</option>`)}
    </select><//>`;
}

function CheckoutPage() {
  useTitle(t("shop.checkout"), "/cart");
  const state = useAsync(() => get("/api/v1/checkout"));
  const [view, setView] = useState(null);
  const [use, setUse] = useState(true);
  const [amount, setAmount] = useState(null);
  const [failure, setFailure] = useState(null);
  const [busy, setBusy] = useState(false);
  const [key] = useState(() => ({ value: newKey("shop") }));
  const c = view || state.data;
  if (state.error && state.error.code === "CHECKOUT_MISSING")
    return html`<section class="narrow"><${Empty} text=${t("shop.checkout_missing")} /><a class="button primary block" href="#/cart">${t("shop.cart")}</a></section>`;
  if (!c) return html`<${Async} state=${state} ready=${() => null} />`;
  const totals = c.totals;
  const typed = amount === null ? { fen: totals.balance_usable } : amount.trim() === "" ? { fen: 0 } : parseYuan(amount);
  const balanceError = typed.error ? t("money." + typed.error) : typed.fen > totals.balance_usable ? t("shop.balance_max", { amount: formatYuan(totals.balance_usable) }) : null;
  const used = use && !balanceError ? typed.fen : 0;
  async function choose(courseId, couponId) {
    try {
      setView(await api("PATCH", "/api/v1/checkout", { course_id: courseId, coupon_id: couponId }));
      setAmount(null);
    } catch (error) {
      toast(errorText(error), "warn");
    }
  }
  async function pay() {
    if (use && balanceError) return;
    setBusy(true);
    setFailure(null);
    try {
      const answer = await post("/api/v1/checkout/pay", { balance: used, idempotency_key: key.value });
      const order = answer.order;
      refreshMe().catch(() => {});
      if (order.status === "paid" || !answer.pay_url) {
        toast(t("shop.paid"), "good");
        return navigate("/shop/orders/" + order.order_no, { replace: true });
      }
      goPay(order.out_trade_no, answer.pay_url, "/shop/orders/" + order.order_no);
    } catch (error) {
      if (!retriable(error)) key.value = newKey("shop"); // a refused payment may be tried again, anew
      setFailure(error);
      setBusy(false);
    }
  }
  return html`<section class="narrow">
    <ul class="card list">${c.lines.map((line) => html`<li key=${lineKey(line)}>
      <p class="spread"><strong>${line.name}</strong><${Money} fen=${line.price} /></p>
      <p class="muted small">${degree(line) ? t("shop.type.degree") + " · " : ""}${days(line.valid_days)}</p>
      ${!degree(line) && html`<${CouponSelect} id=${"shop-coupon-" + line.course_id} label=${t("shop.course_coupon")} coupons=${line.coupons} value=${line.coupon_id}
        onChange=${(id) => choose(line.course_id, id)} />`}
      ${line.coupon_discount > 0 && html`<p class="spread small"><span>${t("shop.coupon_discount")}</span><span class="acct-minus money">−${formatYuan(line.coupon_discount)}</span></p>`}
    </li>`)}</ul>
    <div class="card">
      <${CouponSelect} id="shop-coupon-global" label=${t("shop.global_coupon")} coupons=${c.global_coupons} value=${c.global_coupon_id} onChange=${(id) => choose(null, id)} />
      <label class="check"><input type="checkbox" checked=${use} onChange=${(e) => setUse(e.target.checked)} />${t("shop.use_balance", { amount: formatYuan(c.balance) })}</label>
      ${use && totals.balance_usable > 0 && html`<${Field} id="shop-balance" label=${t("shop.balance_amount")} error=${balanceError}>
        <input id="shop-balance" inputmode="decimal" value=${amount === null ? yuanInput(totals.balance_usable) : amount} onInput=${(e) => setAmount(e.target.value)} /><//>`}
      <table class="lines acct-split"><tbody>
        <${Row} label=${t("shop.original_total")} fen=${totals.original_total} />
        <${Row} label=${t("shop.course_discount")} fen=${totals.course_discount} minus=${true} />
        <${Row} label=${t("shop.global_discount")} fen=${totals.global_discount} minus=${true} />
        <${Row} label=${t("shop.payable")} fen=${totals.payable} />
        <${Row} label=${t("shop.balance_used")} fen=${used} minus=${true} />
        <${Row} label=${t("shop.to_pay")} fen=${totals.payable - used} strong=${true} />
      </tbody></table>
      ${failure && html`<p class="form-error" role="alert">${errorText(failure)}</p>`}
      <button class="button primary block" type="button" disabled=${busy || (use && !!balanceError)} onClick=${pay}>
        ${totals.payable - used > 0 ? t("shop.pay", { amount: formatYuan(totals.payable - used) }) : t("shop.pay_balance")}</button>
    </div>
  </section>`;
}

export const routes = [
  { pattern: /^\/cart$/, view: signedInOnly(Cart) },
  { pattern: /^\/checkout$/, view: signedInOnly(CheckoutPage) },
];
