// The auction screens: sessions (专场), a session's lots, and (in lot.js) a lot with its bid panel.
import { html, useEffect, useState } from "./html.js";
import { t } from "./i18n.js";
import { get } from "./api.js";
import { useStore } from "./store.js";
import { live, subscribe, onFrame } from "./live.js";
import { clock, formatWhen } from "./time.js";
import { formatYuan } from "./money.js";
import { useTitle } from "./shell.js";
import { useAsync, Async, Empty, Countdown, Picture, toast } from "./ui.js";
import { LotScreen } from "./lot.js";

export const LOT_STATE = { SCHEDULED: 1, PREVIEW: 2, BIDDING: 3, SOLD: 4, UNSOLD: 5, OVERDUE: 6 };
export const SESSION_STATE = { SCHEDULED: 1, PREVIEW: 2, BIDDING: 3, ENDED: 4 };

/** The session's state as a badge: live, preview, upcoming or ended. */
export function SessionBadge({ state }) {
  if (state === SESSION_STATE.BIDDING) return html`<span class="badge live">${t("session.live")}</span>`;
  if (state === SESSION_STATE.PREVIEW) return html`<span class="badge warn">${t("session.preview")}</span>`;
  if (state === SESSION_STATE.SCHEDULED) return html`<span class="badge">${t("session.upcoming")}</span>`;
  return html`<span class="badge">${t("session.ended")}</span>`;
}

export function depositRule(session) {
  if (session.deposit > 0) return t("session.deposit_session", { amount: formatYuan(session.deposit) });
  return t("session.deposit_per_lot");
}

function SessionTiming({ session }) {
  if (session.state === SESSION_STATE.ENDED) return html`<span class="muted">${t("session.ended_at", { when: formatWhen(session.bidding_end_ms) })}</span>`;
  if (session.state === SESSION_STATE.BIDDING) return html`<${Countdown} endsAt=${session.bidding_end_ms} prefix=${t("session.ends_in")} />`;
  return html`<${Countdown} endsAt=${session.bidding_start_ms} prefix=${t("session.starts_in")} />`;
}

function SessionCard({ session }) {
  return html`<li class="session-card">
    <a href=${"#/s/" + session.id} class="session-link">
      <${Picture} picture=${session.cover_picture || session.cover} alt="" sizes="(min-width: 900px) 360px, 100vw" className="session-cover" />
      <div class="session-body">
        <div class="spread"><h2 class="session-title">${session.title}</h2><${SessionBadge} state=${session.state} /></div>
        <p class="small muted">${formatWhen(session.bidding_start_ms)} – ${formatWhen(session.bidding_end_ms)}</p>
        <p class="spread small"><${SessionTiming} session=${session} /><span>${t("session.lots", { n: session.lot_count })}</span></p>
        <p class="small muted">${depositRule(session)}</p>
      </div>
    </a>
  </li>`;
}

/** The next moment a listed session starts or ends (server ms), or Infinity. */
function nextChange(sessions) {
  let next = Infinity;
  for (const session of sessions) {
    if (session.state === SESSION_STATE.ENDED) continue;
    const moment = session.state === SESSION_STATE.BIDDING ? session.bidding_end_ms : session.bidding_start_ms;
    next = Math.min(next, moment);
  }
  return next;
}

function SessionsScreen() {
  useTitle(t("sessions.title"));
  const [generation, setGeneration] = useState(0);
  const state = useAsync(() => get("/api/v1/sessions?page_size=100"), [generation]);
  // Reload when a session starts or ends, so it moves to its new group (2 s of slack for the engine).
  const due = state.data ? nextChange(state.data.items) + 2000 : Infinity;
  const now = useStore(clock, (s) => s.now);
  useEffect(() => {
    if (now >= due) setGeneration((n) => n + 1);
  }, [now >= due]);
  return html`<${Async} state=${state} ready=${(data) => {
    const groups = [
      [t("sessions.live"), data.items.filter((s) => s.state === SESSION_STATE.BIDDING)],
      [t("sessions.upcoming"), data.items.filter((s) => s.state === SESSION_STATE.SCHEDULED || s.state === SESSION_STATE.PREVIEW).reverse()],
      [t("sessions.ended"), data.items.filter((s) => s.state === SESSION_STATE.ENDED)],
    ];
    if (!data.items.length) return html`<${Empty} text=${t("sessions.none")} />`;
    return groups.map(([title, sessions]) =>
      sessions.length
        ? html`<section class="sessions" key=${title} aria-label=${title}>
            <h2 class="section-title">${title}</h2>
            <ul class="session-grid">${sessions.map((s) => html`<${SessionCard} key=${s.id} session=${s} />`)}</ul>
          </section>`
        : null,
    );
  }} />`;
}

/** REST lot fields renamed to the websocket's, so live frames and REST views merge. */
export function liveFields(lot) {
  return {
    lot_id: lot.id,
    state: lot.state,
    price: lot.price,
    leader: lot.leader,
    bid_count: lot.bid_count,
    next_min: lot.next_min,
    ends_at: lot.ends_at_ms,
    no_bids: lot.no_bids ?? lot.bid_count === 0,
    ...(lot.paused !== undefined ? { paused: !!lot.paused } : {}),
  };
}

export function LotStatus({ lot, compact = false }) {
  if (lot.state === LOT_STATE.SOLD) return html`<span class="badge good">${t("lot.sold_at", { price: formatYuan(lot.price) })}</span>`;
  if (lot.state === LOT_STATE.UNSOLD) return html`<span class="badge">${t("lot.unsold")}</span>`;
  if (lot.state === LOT_STATE.OVERDUE) return html`<span class="badge bad">${t("lot.overdue")}</span>`;
  if (lot.state === LOT_STATE.BIDDING && lot.paused) return html`<span class="badge warn lot-paused">${t("lot.paused")}</span>`;
  if (lot.state === LOT_STATE.BIDDING) return html`<${Countdown} endsAt=${lot.ends_at} prefix=${compact ? "" : t("lot.ends_in")} />`;
  return html`<span class="badge warn">${lot.state === LOT_STATE.PREVIEW ? t("lot.preview") : t("lot.scheduled")}</span>`;
}

function LotCard({ base, live: current }) {
  const lot = { ...base, ...current };
  const picture = (base.pictures && base.pictures[0]) || (base.images && base.images[0]);
  return html`<li class="lot-card">
    <a href=${"#/lot/" + base.id} class="lot-link">
      <${Picture} picture=${picture} alt=${base.title} sizes="(min-width: 900px) 260px, 50vw" className="lot-thumb" />
      <div class="lot-body">
        <p class="small muted">${t("lot.number", { no: base.catalogue_no })}</p>
        <h3 class="lot-title">${base.title}</h3>
        ${lot.no_bids
          ? html`<p><span class="money strong">${formatYuan(base.start_price)}</span> <span class="small muted">${t("lot.no_bids")}</span></p>`
          : html`<p><span class="money strong price-small">${formatYuan(lot.price)}</span> <span class="small muted">${t("lot.bids", { n: lot.bid_count })}</span></p>`}
        ${current && current.leading && lot.state === LOT_STATE.BIDDING ? html`<p><span class="badge good">${t("bid.leading")}</span></p>` : null}
        <p class="spread small"><${LotStatus} lot=${lot} compact=${true} />
          ${base.watchers !== undefined ? html`<span class="muted">${t("lot.watchers", { n: base.watchers })}</span>` : null}</p>
      </div>
    </a>
  </li>`;
}

function SessionScreen({ params }) {
  const sessionId = Number(params[0]);
  const state = useAsync(() => get("/api/v1/sessions/" + sessionId), [sessionId]);
  useTitle(state.data ? state.data.title : t("common.loading"), "/");
  useEffect(() => subscribe(sessionId), [sessionId]);
  const lots = useStore(live, (s) => s.lots);
  useStore(clock, (s) => Math.floor(s.now / 60000)); // refresh "starts in" once a minute
  return html`<${Async} state=${state} ready=${(session) => html`
    <section class="card session-head">
      <${Picture} picture=${session.cover_picture || session.cover} alt="" className="session-hero" eager=${true} />
      <div class="spread"><h2>${session.title}</h2><${SessionBadge} state=${session.state} /></div>
      ${session.description ? html`<p>${session.description}</p>` : null}
      <p class="small muted">${t("session.schedule", { start: formatWhen(session.bidding_start_ms), end: formatWhen(session.bidding_end_ms) })}</p>
      <p class="small"><${SessionTiming} session=${session} /></p>
      <p class="small muted">${depositRule(session)} · ${t("session.soft_close", { s: session.soft_close_seconds })}</p>
    </section>
    ${session.lots.length
      ? html`<ul class="lot-grid">${session.lots.map((lot) => html`<${LotCard} key=${lot.id} base=${{ ...lot, ...liveFields(lot) }} live=${lots[lot.id]} />`)}</ul>`
      : html`<${Empty} text=${t("session.no_lots")} />`}
  `} />`;
}

/** Toasts for the personal frames wherever the bidder is in the app. */
export function watchPersonalFrames() {
  onFrame((frame) => {
    if (frame.type === "outbid") {
      toast(t("bid.outbid_toast", { price: formatYuan(frame.price) }), "warn", 6000);
    } else if (frame.type === "result") {
      if (frame.outcome === "won") toast(t("result.won_toast", { price: formatYuan(frame.price) }), "good", 10000);
      else toast(t("result.lost_toast"), "info", 6000);
    }
  });
}

export const routes = [
  { pattern: /^\/$/, view: SessionsScreen },
  { pattern: /^\/s\/(\d+)$/, view: SessionScreen },
  { pattern: /^\/lot\/(\d+)$/, view: LotScreen },
];
