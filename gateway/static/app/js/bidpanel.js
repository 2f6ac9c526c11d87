// The bid panel: the bidder's state (leading, outbid, maximum, next minimum), quick prices, a
// maximum (proxy) bid, a confirmation for large jumps, deposits in place, and the result.
import { html, useState, useEffect } from "./html.js";
import { t } from "./i18n.js";
import { get, post, auth, refreshMe } from "./api.js";
import { useStore } from "./store.js";
import { live, placeBid, patchLots } from "./live.js";
import { formatWhen } from "./time.js";
import { formatYuan, parseYuan } from "./money.js";
import { here } from "./router.js";
import { Countdown, Sheet, Field, errorText, toast, useAsync } from "./ui.js";
import { LOT_STATE } from "./auction.js";
import { stepsUp } from "./ladder.js";

/** A bid far above the current price gets a second look: ten steps or double the price. */
export function isLargeJump(amount, lot, ladder) {
  const reference = lot.no_bids ? lot.start_price : lot.price;
  return amount >= stepsUp(ladder, lot.next_min, 10) || (reference > 0 && amount >= reference * 2 && amount > lot.next_min);
}

function Result({ lot }) {
  const pushed = useStore(live, (s) => s.results[lot.id]);
  const signedIn = useStore(auth, (s) => !!s.token);
  const [tries, setTries] = useState(0);
  const state = useAsync(() => (signedIn ? get(`/api/v1/lots/${lot.id}/result`) : Promise.resolve(null)), [lot.id, signedIn, tries, pushed && pushed.order_id]);
  const result = state.data || (pushed && { ...pushed });
  const waitingForOrder = result && result.outcome === "won" && !result.order_id;
  useEffect(() => {
    if (!waitingForOrder) return undefined;
    const timer = setTimeout(() => setTries((n) => n + 1), 2000); // the order is recorded just after the close
    return () => clearTimeout(timer);
  }, [waitingForOrder, tries]);
  const summary =
    lot.state === LOT_STATE.SOLD
      ? t("result.sold", { price: formatYuan(lot.price), who: lot.winner || lot.leader || "" })
      : lot.state === LOT_STATE.OVERDUE
        ? t("result.overdue")
        : t("result.unsold");
  let personal = null;
  if (result && result.outcome === "won") {
    personal = html`<div class="result won" role="status">
      <p class="strong">${t("result.won", { price: formatYuan(result.price ?? lot.price) })}</p>
      ${result.order_id
        ? html`<p>${t("result.pay_by", { when: formatWhen(result.pay_by) })} (<${Countdown} endsAt=${result.pay_by} />)</p>
            <a class="button primary block" href=${"#/me/orders/" + result.order_id}>${t("result.pay_now")}</a>`
        : html`<p class="muted">${t("result.order_coming")}</p>`}
    </div>`;
  } else if (result && result.outcome === "lost") {
    const deposit = result.deposit;
    personal = html`<div class="result lost" role="status">
      <p class="strong">${t("result.lost")}</p>
      ${deposit ? html`<p>${t("result.deposit", { amount: formatYuan(deposit.amount), status: depositStatusText(deposit) })}</p>` : null}
    </div>`;
  }
  return html`<section class="card bid-panel"><p>${summary}</p>${personal}</section>`;
}

export function depositStatusText(deposit) {
  const refund = deposit.refund && deposit.refund.status;
  if (refund) return t("deposit.refund_" + refund) !== "deposit.refund_" + refund ? t("deposit.refund_" + refund) : refund;
  const key = "deposit.status_" + deposit.status;
  return t(key) !== key ? t(key) : deposit.status;
}

function DepositOffer({ lot }) {
  const me = useStore(auth, (s) => s.me);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const deposits = useAsync(() => get("/api/v1/deposits?page_size=100"), [lot.id]);
  const sessionId = lot.session.id;
  const options = [];
  if (lot.deposit > 0) options.push({ lot_id: lot.id, amount: lot.deposit, covers: t("deposit.covers_lot") });
  if (lot.session.deposit > 0) options.push({ lot_id: null, amount: lot.session.deposit, covers: t("deposit.covers_session") });
  const pending = deposits.data
    ? deposits.data.items.find((d) => d.status === "pending" && d.pay_url && d.session_id === sessionId && (d.lot_id === null || d.lot_id === lot.id))
    : null;

  async function pay(option, payWith) {
    setBusy(true);
    setError(null);
    try {
      const deposit = await post("/api/v1/deposits", { session_id: sessionId, lot_id: option.lot_id, pay_with: payWith });
      if (deposit.status === "paid") {
        patchLots((l) => (option.lot_id ? l.lot_id === option.lot_id : l.session_id === sessionId), { deposit_state: "paid" });
        toast(t("deposit.paid"), "good");
        refreshMe().catch(() => {});
      } else if (deposit.pay_url) {
        goPay(deposit);
      }
    } catch (failure) {
      setError(failure);
    } finally {
      setBusy(false);
    }
  }

  return html`<section class="card bid-panel deposit-offer">
    <h2>${t("deposit.title")}</h2>
    <p class="small">${t("deposit.why")}</p>
    ${pending &&
    html`<p class="notice">${t("deposit.pending", { amount: formatYuan(pending.amount) })}
      <button class="button primary block" type="button" onClick=${() => goPay(pending)}>${t("deposit.continue")}</button></p>`}
    ${options.map(
      (option) => html`<div class="deposit-option" key=${option.lot_id || "session"}>
        <p class="spread"><span class="strong">${option.covers}</span><span class="money price-small">${formatYuan(option.amount)}</span></p>
        <div class="row two">
          <button class="button primary pay-balance" type="button" disabled=${busy || (me && me.balance < option.amount)} onClick=${() => pay(option, "balance")}>
            ${t("deposit.from_balance")}</button>
          <button class="button pay-online" type="button" disabled=${busy} onClick=${() => pay(option, "provider")}>${t("deposit.online")}</button>
        </div>
        ${me && me.balance < option.amount ? html`<p class="hint">${t("deposit.balance_short", { balance: formatYuan(me.balance) })}</p>` : null}
      </div>`,
    )}
    <p class="hint">${t("deposit.refund_rule")}</p>
    ${error && html`<p class="form-error" role="alert">${errorText(error)}</p>`}
  </section>`;
}

/** Off to the provider; its return page (#/payment/{no}) brings the bidder back here. */
function goPay(deposit) {
  const tradeNo = deposit.out_trade_no || decodeURIComponent(new URL(deposit.pay_url, location.href).pathname.split("/").pop());
  try {
    sessionStorage.setItem("gavel-payment-" + tradeNo, JSON.stringify({ back: here() }));
  } catch {
    /* the return page falls back to the account */
  }
  location.assign(deposit.pay_url);
}

function BidStatus({ lot }) {
  if (lot.leading)
    return html`<div class="bid-status leading" role="status">
      <p class="strong">${t("bid.you_lead", { price: formatYuan(lot.price) })}</p>
      ${lot.my_max ? html`<p class="small">${t("bid.your_max", { max: formatYuan(lot.my_max) })}</p>` : null}
    </div>`;
  if (lot.outbid_at)
    return html`<div class="bid-status outbid" role="status"><p class="strong">${t("bid.outbid", { price: formatYuan(lot.price) })}</p></div>`;
  return html`<div class="bid-status" role="status"><p>${t("bid.next_min", { price: formatYuan(lot.next_min) })}</p></div>`;
}

export function BidPanel({ lot, ladder, signedIn }) {
  const status = useStore(live, (s) => s.status);
  const [sending, setSending] = useState(null); // the amount being sent
  const [message, setMessage] = useState(null); // { kind, text }
  const [maxText, setMaxText] = useState("");
  const [maxError, setMaxError] = useState(null);
  const [confirming, setConfirming] = useState(null); // { op, amount, note }
  useEffect(() => setMessage(null), [lot.outbid_at]); // "you lead" is stale once outbid

  if (lot.state === LOT_STATE.SOLD || lot.state === LOT_STATE.UNSOLD || lot.state === LOT_STATE.OVERDUE) return html`<${Result} lot=${lot} />`;
  if (!signedIn)
    return html`<section class="card bid-panel"><p>${t("bid.sign_in_first")}</p>
      <a class="button primary block" href=${"#/signin?next=" + encodeURIComponent(here())}>${t("nav.signin")}</a></section>`;
  const needsDeposit = lot.deposit_state === "needed";
  if (needsDeposit) return html`<${DepositOffer} lot=${lot} />`;
  if (lot.state !== LOT_STATE.BIDDING)
    return html`<section class="card bid-panel"><p>${lot.session.bidding_start_ms ? t("bid.opens", { when: formatWhen(lot.session.bidding_start_ms) }) : t("bid.not_open")}</p>
      ${lot.deposit_state === "paid" ? html`<p class="badge good">${t("deposit.ready")}</p>` : null}</section>`;

  if (lot.paused)
    return html`<section class="card bid-panel paused" aria-label=${t("bid.panel")}>
      <p class="badge warn lot-paused">${t("lot.paused")}</p>
      <p role="status">${t("bid.paused")}</p>
    </section>`;

  const floor = lot.leading ? ladder.nextUp(lot.my_max || lot.price) : lot.next_min;
  const quick = lot.leading ? [] : [lot.next_min, stepsUp(ladder, lot.next_min, 2), stepsUp(ladder, lot.next_min, 5)];

  async function send(op, amount) {
    setConfirming(null);
    setSending(amount);
    setMessage(null);
    const frame = await placeBid(op, lot.id, amount);
    setSending(null);
    if (frame.type === "accepted") {
      setMaxText("");
      setMessage(
        frame.leading
          ? { kind: "good", text: op === "max_bid" ? t("bid.max_set", { max: formatYuan(amount), price: formatYuan(frame.price) }) : t("bid.accepted", { price: formatYuan(frame.price) }) }
          : { kind: "warn", text: t("bid.accepted_outbid", { price: formatYuan(frame.price) }) },
      );
    } else {
      const next = frame.next_min ? " " + t("bid.next_min", { price: formatYuan(frame.next_min) }) : "";
      setMessage({ kind: "bad", text: errorText(frame.code) + next });
    }
  }

  function ask(op, amount, note = null) {
    if (isLargeJump(amount, lot, ladder)) setConfirming({ op, amount, note });
    else send(op, amount);
  }

  function submitMax(event) {
    event.preventDefault();
    const parsed = parseYuan(maxText);
    if (parsed.error) return setMaxError(t("money." + parsed.error));
    if (parsed.fen < floor) return setMaxError(t("bid.max_too_low", { floor: formatYuan(floor) }));
    const amount = ladder.atOrBelow(parsed.fen);
    setMaxError(null);
    ask("max_bid", amount, amount !== parsed.fen ? t("bid.max_snapped", { max: formatYuan(amount) }) : null);
  }

  return html`<section class="card bid-panel" aria-label=${t("bid.panel")}>
    <${BidStatus} lot=${lot} />
    ${quick.length > 0 &&
    html`<div class="quick-bids" role="group" aria-label=${t("bid.quick")}>
      ${quick.map(
        (amount, i) => html`<button key=${i} type="button" class=${"button " + (i === 0 ? "primary" : "")} disabled=${sending !== null}
          onClick=${() => ask("bid", amount)} aria-label=${t("bid.bid_at", { price: formatYuan(amount) })}>
          <span class="money">${formatYuan(amount)}</span></button>`,
      )}
    </div>`}
    <form class="max-form" onSubmit=${submitMax} novalidate>
      <${Field} id=${"max-" + lot.id} label=${lot.leading ? t("bid.raise_max") : t("bid.set_max")} error=${maxError} hint=${t("bid.proxy_hint")}>
        <div class="row nowrap">
          <span class="prefix" aria-hidden="true">¥</span>
          <input id=${"max-" + lot.id} class="input" inputmode="decimal" autocomplete="off" placeholder=${(floor / 100).toFixed(2)}
            value=${maxText} onInput=${(e) => setMaxText(e.target.value)} aria-describedby=${maxError ? "max-" + lot.id + "-error" : "max-" + lot.id + "-hint"} />
          <button class="button" type="submit" disabled=${sending !== null}>${t("bid.set")}</button>
        </div>
      <//>
    </form>
    ${sending !== null && html`<p class="small muted" role="status">${status === "online" ? t("bid.sending", { price: formatYuan(sending) }) : t("bid.queued")}</p>`}
    ${message && html`<p class=${"bid-message " + message.kind} role="alert">${message.text}</p>`}
    ${confirming &&
    html`<${Sheet} title=${t("bid.confirm_title")} onClose=${() => setConfirming(null)}>
      <p>${confirming.op === "max_bid" ? t("bid.confirm_max", { amount: formatYuan(confirming.amount) }) : t("bid.confirm_bid", { amount: formatYuan(confirming.amount) })}</p>
      <p class="small muted">${t("bid.confirm_above", { current: formatYuan(lot.no_bids ? lot.start_price : lot.price), next: formatYuan(lot.next_min) })}</p>
      ${confirming.note && html`<p class="small">${confirming.note}</p>`}
      <div class="actions">
        <button class="button secondary" type="button" onClick=${() => setConfirming(null)}>${t("common.cancel")}</button>
        <button class="button primary" type="button" onClick=${() => send(confirming.op, confirming.amount)}>${t("common.confirm")}</button>
      </div>
    <//>`}
  </section>`;
}
