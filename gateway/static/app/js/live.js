// The websocket protocol (docs/protocol.md): one socket for the app, subscriptions kept across
// reconnects (with back-off), a snapshot reconciles the state after each (re)subscribe, and a bid
// is retried with the same `ref` until it is answered, so a flaky network never places two bids.
import { createStore } from "./store.js";
import { auth } from "./api.js";
import { learnServerTime } from "./time.js";

const PING_EVERY_MS = 10_000;
const SILENCE_LIMIT_MS = 25_000; // no frame (not even a pong) for this long: the link is dead
const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 10_000;

/**
 * status: "connecting" | "online" | "offline"; lots: lot_id -> merged live state (snapshot fields
 * plus the personal ones: leading, my_max, deposit_state); results: lot_id -> personal result frame;
 * notices: lot_id -> { kind: "extended", ends_at, at } for the soft-close banner.
 */
export const live = createStore({ status: "connecting", lots: {}, results: {}, notices: {}, user: false });

const subscriptions = new Map(); // session_id or topic -> { n: screens that want it, on: frame }
const pending = new Map(); // ref -> { frame, resolve }
const listeners = new Set();
let socket = null;
let attempt = 0;
let reconnectTimer = 0;
let pingTimer = 0;
let lastFrameAt = 0;
let tokenInUse = null;

function url() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const { token } = auth.get();
  return `${scheme}//${location.host}/ws${token ? "?token=" + encodeURIComponent(token) : ""}`;
}

function send(frame) {
  if (socket && socket.readyState === WebSocket.OPEN) {
    socket.send(JSON.stringify(frame));
    return true;
  }
  return false;
}

function connect() {
  clearTimeout(reconnectTimer);
  tokenInUse = auth.get().token;
  live.set({ status: attempt === 0 && live.get().status !== "offline" ? "connecting" : "offline" });
  const ws = new WebSocket(url());
  socket = ws;
  ws.onopen = () => {
    if (socket !== ws) return;
    attempt = 0;
    lastFrameAt = Date.now();
    live.set({ status: "online" });
    for (const { on } of subscriptions.values()) send(on);
    // Unanswered bids go again under the same ref: the server answers a retry with the first answer.
    for (const { frame } of pending.values()) send(frame);
    clearInterval(pingTimer);
    pingTimer = setInterval(heartbeat, PING_EVERY_MS);
  };
  ws.onmessage = (event) => {
    if (socket !== ws) return;
    lastFrameAt = Date.now();
    let frame;
    try {
      frame = JSON.parse(event.data);
    } catch {
      return;
    }
    receive(frame);
  };
  ws.onclose = () => {
    if (socket !== ws) return;
    socket = null;
    clearInterval(pingTimer);
    live.set({ status: "offline" });
    scheduleReconnect();
  };
}

function heartbeat() {
  if (Date.now() - lastFrameAt > SILENCE_LIMIT_MS) {
    drop();
    return;
  }
  send({ op: "ping" });
}

/** Give up on the current socket (dead link) and reconnect with back-off. */
function drop() {
  const ws = socket;
  socket = null;
  clearInterval(pingTimer);
  if (ws) {
    ws.onclose = null;
    try {
      ws.close();
    } catch {
      /* already closed */
    }
  }
  live.set({ status: "offline" });
  scheduleReconnect();
}

function scheduleReconnect(delay) {
  clearTimeout(reconnectTimer);
  const backoff = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** attempt);
  attempt += 1;
  // Full jitter: thousands of phones coming back after an outage do not arrive in one wave.
  reconnectTimer = setTimeout(connect, delay ?? backoff / 2 + Math.random() * (backoff / 2));
}

function mergeLot(lotId, fields) {
  const lots = live.get().lots;
  live.set({ lots: { ...lots, [lotId]: { ...(lots[lotId] || {}), ...fields } } });
}

function receive(frame) {
  switch (frame.type) {
    case "hello":
      learnServerTime(frame.server_time);
      live.set({ user: !!frame.user });
      break;
    case "pong":
      learnServerTime(frame.server_time);
      break;
    case "snapshot": {
      learnServerTime(frame.server_time);
      const lots = { ...live.get().lots };
      for (const { deposit, ...lot } of frame.lots) {
        // `deposit` here is the bidder's deposit state ("needed", "paid", "not_needed"); the REST
        // views use `deposit` for the amount, so the store calls the state `deposit_state`.
        const personal = live.get().user ? { deposit_state: deposit } : { leading: false, my_max: null, deposit_state: undefined };
        lots[lot.lot_id] = { ...(lots[lot.lot_id] || {}), ...lot, ...personal, session_id: frame.session_id };
      }
      live.set({ lots });
      break;
    }
    case "price":
      mergeLot(frame.lot_id, {
        price: frame.price,
        leader: frame.leader,
        bid_count: frame.bid_count,
        next_min: frame.next_min,
        ends_at: frame.ends_at,
        no_bids: frame.bid_count === 0,
        ...(frame.reserve_met !== undefined ? { reserve_met: frame.reserve_met } : {}),
      });
      break;
    case "accepted": {
      // The bidder's own maximum: from the server when it says, else the maximum just sent.
      const sent = pending.get(frame.ref);
      const maximum = frame.my_max ?? (sent && sent.frame.op === "max_bid" ? sent.frame.max : undefined);
      mergeLot(frame.lot_id, {
        price: frame.price,
        next_min: frame.next_min,
        leading: frame.leading,
        no_bids: false,
        ...(maximum !== undefined ? { my_max: frame.leading ? maximum : null } : {}),
        ...(frame.leading ? { outbid_at: null } : {}),
      });
      break;
    }
    case "outbid":
      mergeLot(frame.lot_id, { leading: false, my_max: null, outbid_at: Date.now() });
      break;
    case "extended":
      mergeLot(frame.lot_id, { ends_at: frame.ends_at });
      live.set({ notices: { ...live.get().notices, [frame.lot_id]: { kind: "extended", ends_at: frame.ends_at, at: Date.now() } } });
      break;
    case "state":
      mergeLot(frame.lot_id, { state: frame.state, ends_at: frame.ends_at });
      break;
    case "lot_paused":
      // The auction house paused (or resumed) the lot: bidding is refused meanwhile and the end moves.
      mergeLot(frame.lot_id, { paused: !!frame.paused, ...(frame.ends_at ? { ends_at: frame.ends_at } : {}) });
      break;
    case "bid_voided":
      // A bid was voided and the rest replayed: the new price and leader (the price frame says it too).
      mergeLot(frame.lot_id, {
        price: frame.price,
        leader: frame.leader,
        bid_count: frame.bid_count,
        next_min: frame.next_min,
        no_bids: frame.bid_count === 0,
      });
      break;
    case "your_bid_voided":
      // Personal: one of this bidder's bids was voided; they may or may not still lead.
      mergeLot(frame.lot_id, { price: frame.price, leading: !!frame.leading, ...(frame.leading ? {} : { my_max: null }) });
      break;
    case "closed":
      mergeLot(frame.lot_id, { state: frame.result === "sold" ? 4 : 5, price: frame.price, winner: frame.winner });
      break;
    case "result":
      live.set({ results: { ...live.get().results, [frame.lot_id]: frame } });
      break;
    case "homework_graded":
    case "homework_submitted":
    case "degree_graduated":
      live.set({ degree: frame }); // the degree screens on view reload (degree-common.js)
      break;
    default:
      break;
  }
  if ((frame.type === "accepted" || frame.type === "rejected") && pending.has(frame.ref)) {
    const { resolve } = pending.get(frame.ref);
    pending.delete(frame.ref);
    resolve(frame);
  }
  for (const listener of [...listeners]) listener(frame);
}

/** Change the live state of every lot `which(lot)` selects (e.g. a deposit just paid). */
export function patchLots(which, fields) {
  const lots = { ...live.get().lots };
  for (const [id, lot] of Object.entries(lots)) if (which(lot)) lots[id] = { ...lot, ...fields };
  live.set({ lots });
}

/** Frames as they arrive (all, or those of `type`); returns an unsubscribe. */
export function onFrame(type, fn) {
  const listener = fn ? (frame) => frame.type === type && fn(frame) : type;
  listeners.add(listener);
  return () => listeners.delete(listener);
}

function hold(key, on, off) {
  const held = subscriptions.get(key) || { n: 0, on };
  subscriptions.set(key, held);
  if (!held.n++) send(on);
  return () => --held.n || (subscriptions.delete(key), send(off));
}

export const subscribe = (id) => hold(id, { op: "subscribe", session_id: id }, { op: "unsubscribe", session_id: id });
/** A community topic ("post:12"): its counts and comments live. */
export const watch = (topic) => hold(topic, { op: "watch", topic }, { op: "unwatch", topic });

function newRef() {
  if (crypto.randomUUID) return crypto.randomUUID();
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Place a bid (`op` "bid" with `price`, or "max_bid" with `max`); resolves with the `accepted` or
 * `rejected` frame. Until answered it is resent, under the same ref, after every reconnect.
 */
export function placeBid(op, lotId, amount) {
  const ref = newRef();
  const frame = op === "max_bid" ? { op, lot_id: lotId, max: amount, ref } : { op, lot_id: lotId, price: amount, ref };
  return new Promise((resolve) => {
    pending.set(ref, { frame, resolve });
    send(frame);
  });
}

export function pendingBids() {
  return pending.size;
}

/** Start (or restart after sign-in/out, so the socket carries the right user). */
export function start() {
  if (socket && tokenInUse === auth.get().token) return;
  attempt = 0;
  if (socket) {
    const ws = socket;
    socket = null;
    ws.onclose = null;
    ws.close();
  }
  // Bids of the previous user are not sent as the next one: answer them as refused.
  for (const [ref, { frame, resolve }] of pending) resolve({ type: "rejected", ref, lot_id: frame.lot_id, code: "NOT_AUTHENTICATED" });
  pending.clear();
  const lots = {};
  for (const [id, lot] of Object.entries(live.get().lots)) lots[id] = { ...lot, leading: false, my_max: null, deposit_state: undefined };
  live.set({ lots, results: {}, user: false });
  connect();
}

auth.subscribe((state) => {
  if (state.token !== tokenInUse) start();
});
window.addEventListener("online", () => {
  if (!socket) {
    attempt = 0;
    scheduleReconnect(0);
  }
});
window.addEventListener("offline", () => {
  if (socket) drop();
});
