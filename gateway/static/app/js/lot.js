// A lot: gallery, live price and countdown, the bid panel (deposit in place), details, history,
// and the personal result after the close.
import { html, useEffect, useState, useRef } from "./html.js";
import { t } from "./i18n.js";
import { get, auth } from "./api.js";
import { useStore } from "./store.js";
import { live, subscribe, onFrame } from "./live.js";
import { formatWhen, formatTime } from "./time.js";
import { formatYuan } from "./money.js";
import { useTitle } from "./shell.js";
import { useAsync, Async, Picture, Empty, toast } from "./ui.js";
import { LOT_STATE, LotStatus, liveFields } from "./auction.js";
import { ladderOf } from "./ladder.js";
import { BidPanel } from "./bidpanel.js";

function Gallery({ lot }) {
  const pictures = lot.pictures && lot.pictures.length ? lot.pictures : lot.images || [];
  const [index, setIndex] = useState(0);
  const strip = useRef(null);
  if (!pictures.length) return html`<div class="gallery"><p class="gallery-empty">${t("lot.no_pictures")}</p></div>`;
  const onScroll = () => {
    const element = strip.current;
    if (element) setIndex(Math.round(element.scrollLeft / Math.max(1, element.clientWidth)));
  };
  const go = (to) => {
    const element = strip.current;
    if (element) element.scrollTo({ left: to * element.clientWidth, behavior: "smooth" });
  };
  return html`<div class="gallery" aria-roledescription="carousel" aria-label=${t("lot.pictures")}>
    <div class="gallery-strip" ref=${strip} onScroll=${onScroll}>
      ${pictures.map(
        (picture, i) => html`<div class="gallery-slide" key=${i} aria-label=${t("lot.picture_n", { i: i + 1, n: pictures.length })}>
          <${Picture} picture=${picture} alt=${i === 0 ? lot.title : ""} sizes="(min-width: 900px) 560px, 100vw" className="gallery-img" eager=${i === 0} />
        </div>`,
      )}
    </div>
    ${pictures.length > 1 &&
    html`<div class="gallery-dots">
      ${pictures.map(
        (_, i) => html`<button type="button" key=${i} class=${i === index ? "on" : ""} aria-label=${t("lot.picture_n", { i: i + 1, n: pictures.length })}
          aria-current=${i === index ? "true" : undefined} onClick=${() => go(i)}></button>`,
      )}
    </div>`}
  </div>`;
}

function ExtendedNotice({ lotId, lot }) {
  const notice = useStore(live, (s) => s.notices[lotId]);
  if (!notice || lot.state !== LOT_STATE.BIDDING) return null;
  return html`<p class="notice" role="status">${t("lot.extended", { when: formatTime(notice.ends_at) })}</p>`;
}

function PriceBlock({ lot, ladder }) {
  const step = lot.no_bids ? ladder.stepAt(lot.start_price) : ladder.stepAt(lot.price);
  return html`<section class="card price-block" aria-live="polite">
    <div class="spread">
      <div>
        <p class="small muted">${lot.no_bids ? t("lot.start_price") : t("lot.current_price")}</p>
        <p class="price money">${formatYuan(lot.no_bids ? lot.start_price : lot.price)}</p>
      </div>
      <div class="right">
        <p class="small muted">${t("lot.time_left")}</p>
        <p class="big"><${LotStatus} lot=${lot} compact=${true} /></p>
      </div>
    </div>
    <p class="small muted">${[
      lot.no_bids ? t("lot.no_bids_yet") : t("lot.leader", { who: lot.leader }) + " · " + t("lot.bids", { n: lot.bid_count }),
      t("lot.increment_now", { step: formatYuan(step) }),
      lot.has_reserve === undefined ? null : !lot.has_reserve ? t("lot.no_reserve") : lot.reserve_met ? t("lot.reserve_met") : t("lot.reserve_not_met"),
    ]
      .filter(Boolean)
      .join(" · ")}</p>
  </section>`;
}

function Details({ lot }) {
  return html`<section class="card">
    <h2>${t("lot.details")}</h2>
    <table class="lines specs">
      <tbody>
        <tr><th scope="row">${t("lot.start_price")}</th><td class="money">${formatYuan(lot.start_price)}</td></tr>
        ${lot.increment_bands && lot.increment_bands.length
          ? lot.increment_bands.map(
              ([upper, step], i) => html`<tr key=${"band" + i}><th scope="row">${upper === null ? t("lot.band_above", { from: formatYuan(i ? lot.increment_bands[i - 1][0] : 0) }) : t("lot.band_below", { upto: formatYuan(upper) })}</th>
                <td class="money">${t("lot.step", { step: formatYuan(step) })}</td></tr>`,
            )
          : html`<tr><th scope="row">${t("lot.increment")}</th><td class="money">${formatYuan(lot.unit)}</td></tr>`}
        <tr><th scope="row">${t("lot.deposit")}</th><td>${lot.deposit ? formatYuan(lot.deposit) : lot.session && lot.session.deposit ? t("lot.session_deposit", { amount: formatYuan(lot.session.deposit) }) : t("lot.none")}</td></tr>
        ${(lot.specs || []).map((spec, i) => html`<tr key=${"spec" + i}><th scope="row">${spec.key}</th><td>${spec.value}</td></tr>`)}
      </tbody>
    </table>
    ${lot.description ? html`<div class="description">${lot.description.split(/\n{2,}/).map((paragraph, i) => html`<p key=${i}>${paragraph}</p>`)}</div>` : null}
  </section>`;
}

function History({ lotId, version }) {
  const [pageSize, setPageSize] = useState(10);
  const state = useAsync(() => get(`/api/v1/lots/${lotId}/bids?page_size=${pageSize}`), [lotId, version, pageSize]);
  return html`<section class="card">
    <h2>${t("lot.history")}</h2>
    <${Async} state=${state} ready=${(data) =>
      data.items.length
        ? html`<ol class="list history">
              ${data.items.map(
                (bid, i) => html`<li key=${data.total - i} class="spread">
                  <span><span class="strong">${bid.bidder}</span>${bid.auto ? html` <span class="badge">${t("lot.auto")}</span>` : null}
                    <br /><span class="small muted">${formatWhen(bid.at_ms)}</span></span>
                  <span class="money strong">${formatYuan(bid.price)}</span>
                </li>`,
              )}
            </ol>
            ${data.total > data.items.length && html`<button class="button secondary block" onClick=${() => setPageSize(Math.min(100, pageSize + 20))}>${t("common.more")}</button>`}`
        : html`<${Empty} text=${t("lot.no_history")} />`} />
  </section>`;
}

/** Refetch the bid history at most once a second while this lot's price moves. */
function useHistoryVersion(lotId) {
  const [version, setVersion] = useState(0);
  useEffect(() => {
    let timer = 0;
    const off = onFrame((frame) => {
      if ((frame.type === "price" || frame.type === "closed" || frame.type === "bid_voided") && frame.lot_id === lotId && !timer) {
        timer = setTimeout(() => {
          timer = 0;
          setVersion((v) => v + 1);
        }, 1000);
      }
    });
    return () => {
      off();
      clearTimeout(timer);
    };
  }, [lotId]);
  return version;
}

/** A toast when the auction house voids a bid on this lot (everyone watching sees the new price). */
function useVoidedToast(lotId) {
  useEffect(
    () =>
      onFrame("bid_voided", (frame) => {
        if (frame.lot_id === lotId) toast(t("lot.bid_voided", { price: frame.bid_count ? formatYuan(frame.price) : "—" }), "warn", 6000);
      }),
    [lotId],
  );
}

export function LotScreen({ params }) {
  const lotId = Number(params[0]);
  const state = useAsync(() => get("/api/v1/lots/" + lotId), [lotId]);
  const sessionId = state.data ? state.data.session.id : null;
  useTitle(state.data ? state.data.title : t("common.loading"), sessionId ? "/s/" + sessionId : "/");
  useEffect(() => (sessionId ? subscribe(sessionId) : undefined), [sessionId]);
  const current = useStore(live, (s) => s.lots[lotId]);
  const signedIn = useStore(auth, (s) => !!s.token);
  const version = useHistoryVersion(lotId);
  useVoidedToast(lotId);
  return html`<${Async} state=${state} ready=${(base) => {
    const lot = { ...base, ...liveFields(base), ...(current || {}) };
    const ladder = ladderOf(base);
    return html`<div class="lot-page">
      <div class="lot-media">
        <${Gallery} lot=${base} />
        <p class="small muted lot-meta">${t("lot.number", { no: base.catalogue_no })} · <a href=${"#/s/" + base.session.id}>${base.session.title}</a>
          ${base.watchers !== undefined ? " · " + t("lot.watchers", { n: base.watchers }) : ""}</p>
        <h2 class="lot-heading">${base.title}</h2>
      </div>
      <div class="lot-side">
        <${ExtendedNotice} lotId=${lotId} lot=${lot} />
        <${PriceBlock} lot=${lot} ladder=${ladder} />
        <${BidPanel} lot=${lot} ladder=${ladder} signedIn=${signedIn} />
      </div>
      <div class="lot-more">
        <${Details} lot=${base} />
        <${History} lotId=${lotId} version=${version} />
      </div>
    </div>`;
  }} />`;
}
