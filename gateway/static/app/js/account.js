// "My account": home, balance and ledger, deposits, coupons; orders and payment live in
// account-orders.js, addresses in account-addresses.js. Every screen needs sign-in.
import { html, useState, useEffect } from "./html.js";
import { t, LANGUAGES, setLanguage, useLanguage } from "./i18n.js";
import { useStore } from "./store.js";
import { api, get, post, page, auth, refreshMe, signOut } from "./api.js";
import { navigate } from "./router.js";
import { useTitle } from "./shell.js";
import { useAsync, Async, Empty, ErrorBox, Loading, Money, Field, toast, errorText } from "./ui.js";
import { formatYuan } from "./money.js";
import { formatWhen, parseIso } from "./time.js";
import { signedInOnly, goPay, known } from "./account-common.js";
import "./account-strings.js";

function useMe() {
  const me = useStore(auth, (state) => state.me);
  useEffect(() => {
    refreshMe().catch(() => {});
  }, []);
  return me;
}

function DisplayName({ me }) {
  const [editing, setEditing] = useState(false);
  const [value, setValue] = useState("");
  const [failure, setFailure] = useState(null);
  const [busy, setBusy] = useState(false);
  const shown = me.display_name || me.username;
  if (!editing) {
    return html`<div class="spread">
      <div class="acct-name-box"><h2 class="acct-name">${shown}</h2><p class="muted small">${t("acct.username", { name: me.username })}</p></div>
      <button class="button secondary" type="button" onClick=${() => (setValue(me.display_name || ""), setFailure(null), setEditing(true))}
        aria-label=${t("acct.edit_name")}>${t("common.edit")}</button>
    </div>`;
  }
  async function save(event) {
    event.preventDefault();
    setBusy(true);
    setFailure(null);
    try {
      const answer = await api("PATCH", "/api/v1/me", { display_name: value.trim() });
      auth.set({ me: answer });
      setEditing(false);
      toast(t("acct.name_saved"), "good");
    } catch (error) {
      setFailure(error);
    } finally {
      setBusy(false);
    }
  }
  return html`<form class="form" onSubmit=${save} novalidate>
    <${Field} id="acct-display-name" label=${t("acct.display_name")} hint=${t("signin.display_name_hint")} error=${failure && errorText(failure)}>
      <input id="acct-display-name" maxlength="64" autocomplete="nickname" value=${value} onInput=${(event) => setValue(event.target.value)} />
    <//>
    <div class="row">
      <button class="button primary" type="submit" disabled=${busy}>${t("common.save")}</button>
      <button class="button secondary" type="button" onClick=${() => setEditing(false)}>${t("common.cancel")}</button>
    </div>
  </form>`;
}

function OrderShortcuts() {
  const state = useAsync(() => get("/api/v1/orders"));
  const groups = state.data ? state.data.groups : [];
  return html`<nav class="card" aria-labelledby="acct-orders-heading">
    <div class="spread"><h2 id="acct-orders-heading">${t("order.title")}</h2><a class="acct-more" href="#/me/orders">${t("acct.all_orders")}</a></div>
    ${state.error && html`<${ErrorBox} error=${state.error} retry=${state.reload} />`}
    <ul class="acct-shortcuts">
      ${groups.map(
        (group) => html`<li key=${group.key}><a href=${"#/me/orders?status=" + group.key}>
          <strong class="acct-count">${group.count}</strong><span>${t("order.status." + group.key)}</span></a></li>`,
      )}
    </ul>
  </nav>`;
}

function Home() {
  useTitle(t("acct.title"));
  const me = useMe();
  const lang = useLanguage();
  async function leave() {
    await signOut();
    navigate("/", { replace: true });
  }
  if (!me) return html`<${Loading} />`;
  return html`<section class="narrow">
    <div class="card"><${DisplayName} me=${me} /></div>
    <${OrderShortcuts} />
    <ul class="card list">
      <li><a class="list-link" href="#/me/wallet"><span>${t("acct.balance")}</span><span class="acct-link-value money">${formatYuan(me.balance)}</span></a></li>
      <li><a class="list-link" href="#/me/deposits">${t("dep.title")}</a></li>
      <li><a class="list-link" href="#/me/courses">${t("nav.my_courses")}</a></li>
      <li><a class="list-link" href="#/me/degrees">${t("nav.my_degrees")}</a></li>
      <li><a class="list-link" href="#/me/profile">${t("nav.community")}</a></li>
      ${me.is_mentor && html`<li><a class="list-link" href="#/mentor">${t("nav.mentor")}</a></li>`}
      <li><a class="list-link" href="#/me/coupons">${t("coupon.title")}</a></li>
      <li><a class="list-link" href="#/me/addresses">${t("addr.title")}</a></li>
    </ul>
    <div class="card">
      <h2 id="acct-lang">${t("nav.language")}</h2>
      <div class="segmented" role="radiogroup" aria-labelledby="acct-lang">
        ${LANGUAGES.map(
          (item) => html`<button key=${item.code} type="button" role="radio" lang=${item.code} aria-checked=${lang === item.code}
            class=${lang === item.code ? "on" : ""} onClick=${() => setLanguage(item.code)}>${item.label}</button>`,
        )}
      </div>
    </div>
    <button class="button secondary block" type="button" onClick=${leave}>${t("acct.sign_out")}</button>
  </section>`;
}

// -- balance and ledger ----------------------------------------------------------------------------
const PAGE_SIZE = 20;

/** Pages of a paged list, appended as the user asks for more. */
function usePaged(path) {
  const [state, setState] = useState({ items: [], total: 0, next: 1, loading: true, error: null });
  const load = (number) => {
    setState((previous) => ({ ...previous, loading: true, error: null }));
    page(path, number, PAGE_SIZE).then(
      (answer) =>
        setState((previous) => ({
          items: number === 1 ? answer.items : [...previous.items, ...answer.items],
          total: answer.total,
          next: number + 1,
          loading: false,
          error: null,
        })),
      (error) => setState((previous) => ({ ...previous, loading: false, error })),
    );
  };
  useEffect(() => load(1), [path]);
  return { ...state, more: () => load(state.next), reload: () => load(1) };
}

function PagedList({ paged, empty, row }) {
  if (paged.error && !paged.items.length) return html`<${ErrorBox} error=${paged.error} retry=${paged.reload} />`;
  if (paged.loading && !paged.items.length) return html`<${Loading} />`;
  if (!paged.items.length) return html`<${Empty} text=${empty} />`;
  return html`<ul class="list card">${paged.items.map(row)}</ul>
    ${paged.error && html`<${ErrorBox} error=${paged.error} retry=${paged.more} />`}
    ${paged.items.length < paged.total &&
    html`<button class="button secondary block" type="button" disabled=${paged.loading} onClick=${paged.more}>${t("common.more")}</button>`}`;
}

function Wallet() {
  useTitle(t("wallet.title"), "/me");
  const me = useMe();
  const paged = usePaged("/api/v1/me/ledger");
  return html`<section class="narrow">
    <div class="card acct-balance">
      <p class="muted">${t("acct.balance")}</p>
      <p class="price">${me ? formatYuan(me.balance) : "…"}</p>
    </div>
    <h2>${t("wallet.ledger")}</h2>
    <${PagedList} paged=${paged} empty=${t("wallet.none")} row=${(entry) => html`<li key=${entry.id} class="acct-entry">
      <div class="spread">
        <strong>${known("ledger." + entry.kind, entry.kind)}</strong>
        <span class=${"money " + (entry.amount < 0 ? "acct-minus" : "acct-plus")}>${formatYuan(entry.amount, { sign: true })}</span>
      </div>
      <div class="spread small muted">
        <span>${formatWhen(parseIso(entry.created_at))}</span>
        <span>${t("wallet.after", { amount: formatYuan(entry.balance_after) })}</span>
      </div>
    </li>`} />
  </section>`;
}

// -- deposits -------------------------------------------------------------------------------------
const DEPOSIT_BADGES = { pending: "warn", paid: "good", failed: "bad", forfeited: "bad" };

function DepositRow({ deposit }) {
  const target = deposit.lot_id ? "/lot/" + deposit.lot_id : "/s/" + deposit.session_id;
  function payNow() {
    if (deposit.out_trade_no) goPay(deposit.out_trade_no, deposit.pay_url, target);
    else location.assign(deposit.pay_url);
  }
  return html`<li class="acct-deposit">
    <div class="spread">
      <a href=${"#" + target}>${deposit.lot_id ? t("dep.for_lot", { id: deposit.lot_id }) : t("dep.for_session", { id: deposit.session_id })}</a>
      <${Money} fen=${deposit.amount} />
    </div>
    <div class="spread small">
      <span class=${"badge " + (DEPOSIT_BADGES[deposit.status] || "")}>${known("dep.status." + deposit.status, deposit.status)}</span>
      <span class="muted">${formatWhen(parseIso(deposit.paid_at || deposit.created_at))}</span>
    </div>
    ${deposit.refund_status && html`<p class="small muted">${t("dep.refund", { status: known("dep.refund." + deposit.refund_status, deposit.refund_status) })}</p>`}
    ${deposit.status === "pending" && deposit.pay_url &&
    html`<button class="button primary" type="button" onClick=${payNow}>${t("order.continue")}</button>`}
  </li>`;
}

function Deposits() {
  useTitle(t("dep.title"), "/me");
  const paged = usePaged("/api/v1/deposits");
  return html`<section class="narrow">
    <p class="muted small">${t("dep.explain")}</p>
    <${PagedList} paged=${paged} empty=${t("dep.none")} row=${(deposit) => html`<${DepositRow} key=${deposit.id} deposit=${deposit} />`} />
  </section>`;
}

// -- coupons --------------------------------------------------------------------------------------
const COUPON_STATES = ["unused", "used", "expired"];

async function claimable() {
  const sessions = await page("/api/v1/sessions", 1, 50);
  // Live and upcoming sessions, and those ended this week: a winner still pays with their coupons.
  const weekAgo = Date.now() - 7 * 86_400_000;
  const open = sessions.items.filter((session) => session.state_name !== "ended" || session.bidding_end_ms > weekAgo);
  const lists = await Promise.all(open.map((session) => get(`/api/v1/sessions/${session.id}/coupons`)));
  return open.flatMap((session, index) =>
    lists[index].items.filter((coupon) => coupon.state_name !== "ended").map((coupon) => ({ ...coupon, session })),
  );
}

function ClaimableCoupon({ coupon, mine, onClaimed }) {
  const [busy, setBusy] = useState(false);
  async function claim() {
    setBusy(true);
    try {
      await post(`/api/v1/coupons/${coupon.id}/claim`);
      toast(t("coupon.claimed_now"), "good");
      onClaimed();
    } catch (error) {
      toast(errorText(error), "warn");
    } finally {
      setBusy(false);
    }
  }
  const action = mine
    ? html`<span class="badge good">${t("coupon.claimed")}</span>`
    : coupon.left <= 0
      ? html`<span class="badge">${t("coupon.sold_out")}</span>`
      : coupon.state_name === "not_started"
        ? html`<span class="small muted">${t("coupon.from", { when: formatWhen(coupon.claim_start_ms) })}</span>`
        : html`<button class="button primary" type="button" disabled=${busy} onClick=${claim}
            aria-label=${t("coupon.claim") + " " + coupon.title}>${t("coupon.claim")}</button>`;
  return html`<${CouponCard} coupon=${coupon} action=${action} note=${coupon.session.title}>
    <p class="small muted">${t("coupon.until", { when: formatWhen(coupon.claim_end_ms), left: coupon.left })}</p>
  <//>`;
}

function CouponCard({ coupon, spent, note, action, children }) {
  return html`<li class=${"acct-coupon" + (spent ? " spent" : "")}>
    <div class="acct-coupon-amount"><${Money} fen=${coupon.amount} /></div>
    <div class="acct-coupon-text">
      <strong>${coupon.title}</strong>
      <p class="small">${t("coupon.rule", { amount: formatYuan(coupon.amount) })}${note && " · " + note}</p>
      ${children}
    </div>
    ${action && html`<div class="acct-coupon-action">${action}</div>`}
  </li>`;
}

function Coupons({ query }) {
  useTitle(t("coupon.title"), "/me");
  const mine = useAsync(() => get("/api/v1/coupons/mine"));
  const offers = useAsync(claimable);
  const shown = COUPON_STATES.includes(query.status) ? query.status : "unused";
  const reload = () => (mine.reload(), offers.reload());
  const claimedIds = new Set(mine.data ? mine.data.items.map((coupon) => coupon.coupon_id) : []);
  return html`<section class="narrow">
    <h2>${t("coupon.to_claim")}</h2>
    <${Async} state=${offers} ready=${(items) =>
      items.length
        ? html`<ul class="list card">${items.map(
            (coupon) => html`<${ClaimableCoupon} key=${coupon.id} coupon=${coupon} mine=${claimedIds.has(coupon.id)} onClaimed=${reload} />`,
          )}</ul>`
        : html`<${Empty} text=${t("coupon.none_to_claim")} />`} />
    <h2>${t("coupon.mine")}</h2>
    <nav class="chips" aria-label=${t("coupon.mine")}>
      ${COUPON_STATES.map(
        (status) => html`<a key=${status} href=${"#/me/coupons?status=" + status} class=${shown === status ? "on" : ""}
          aria-current=${shown === status ? "page" : undefined}>${t("coupon.status." + status)}</a>`,
      )}
    </nav>
    <${Async} state=${mine} ready=${(data) => {
      const items = data.items.filter((coupon) => coupon.status_name === shown);
      return items.length
        ? html`<ul class="list card">${items.map(
            (coupon) => html`<${CouponCard} key=${coupon.id} coupon=${coupon} spent=${shown !== "unused"}>
              ${coupon.order_id && html`<p class="small"><a href=${"#/me/orders/" + coupon.order_id}>${t("coupon.used_on", { id: coupon.order_id })}</a></p>`}
            <//>`,
          )}</ul>`
        : html`<${Empty} />`;
    }} />
  </section>`;
}

export const routes = [
  { pattern: /^\/me$/, view: signedInOnly(Home) },
  { pattern: /^\/me\/wallet$/, view: signedInOnly(Wallet) },
  { pattern: /^\/me\/deposits$/, view: signedInOnly(Deposits) },
  { pattern: /^\/me\/coupons$/, view: signedInOnly(Coupons) },
];
