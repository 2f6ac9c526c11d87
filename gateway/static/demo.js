// The bidder demo: REST for sign-in and listings, the websocket protocol (docs/protocol.md) for bids.
"use strict";
const state = { token: localStorage.getItem("gavel-token") || "", ws: null, session: null, lots: {}, skew: 0, refSeq: 0 };
const $ = (sel, root = document) => root.querySelector(sel);
const yuan = (fen) => (fen / 100).toLocaleString(undefined, { style: "currency", currency: "CNY" });

function log(text) {
  const li = document.createElement("li");
  li.textContent = new Date().toLocaleTimeString() + " " + text;
  $("#log").prepend(li);
}

async function api(method, path, body) {
  const headers = { "Content-Type": "application/json" };
  if (state.token) headers.Authorization = "Bearer " + state.token;
  const response = await fetch(path, { method, headers, body: body ? JSON.stringify(body) : undefined });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error((data.error && data.error.code) || response.status);
  return data;
}

async function signIn(register) {
  const form = new FormData($("#login"));
  const body = { username: form.get("username"), password: form.get("password") };
  try {
    const data = await api("POST", register ? "/api/v1/auth/register" : "/api/v1/auth/login", body);
    state.token = data.token;
    localStorage.setItem("gavel-token", state.token);
    await showMe();
    connect();
  } catch (error) {
    $("#account-msg").textContent = "Could not sign in: " + error.message;
  }
}

async function showMe() {
  if (!state.token) return;
  try {
    const me = await api("GET", "/api/v1/me");
    $("#who").textContent = me.username + " · balance " + yuan(me.balance);
  } catch (error) {
    state.token = "";
    localStorage.removeItem("gavel-token");
  }
}

async function listSessions() {
  const data = await api("GET", "/api/v1/sessions");
  const list = $("#sessions");
  list.replaceChildren();
  for (const session of data.items || data.sessions || []) {
    const li = document.createElement("li");
    const button = document.createElement("button");
    button.textContent = session.title + " (state " + session.state + ")";
    button.addEventListener("click", () => openSession(session.id));
    li.append(button);
    list.append(li);
  }
}

async function openSession(sessionId) {
  const session = await api("GET", "/api/v1/sessions/" + sessionId);
  state.session = session;
  $("#session").hidden = false;
  $("#session-title").textContent = session.title;
  const container = $("#lots");
  container.replaceChildren();
  state.lots = {};
  for (const lot of session.lots) {
    const node = $("#lot-tpl").content.firstElementChild.cloneNode(true);
    $(".title", node).textContent = (lot.catalogue_no || "") + " " + lot.title;
    node.dataset.lotId = lot.id;
    $(".bid", node).addEventListener("submit", (event) => {
      event.preventDefault();
      const amount = Number($("input", node).value);
      const op = event.submitter && event.submitter.value === "max_bid" ? "max_bid" : "bid";
      placeBid(lot.id, amount, op);
    });
    container.append(node);
    state.lots[lot.id] = { node, lot: { lot_id: lot.id, state: lot.state, price: lot.price, leader: lot.leader, bid_count: lot.bid_count, next_min: lot.next_min, ends_at: lot.ends_at_ms } };
    render(lot.id);
  }
  send({ op: "subscribe", session_id: sessionId });
}

function render(lotId) {
  const entry = state.lots[lotId];
  if (!entry) return;
  const { node, lot } = entry;
  $(".price", node).textContent = lot.price ? yuan(lot.price) : "no bids yet";
  $(".leader", node).textContent = lot.leader ? "leader " + lot.leader : "no leader";
  $(".count", node).textContent = lot.bid_count;
  const input = $("input", node);
  if (!input.value || Number(input.value) < lot.next_min) input.value = lot.next_min;
}

function tick() {
  const now = Date.now() + state.skew;
  for (const { node, lot } of Object.values(state.lots)) {
    const left = Math.max(0, lot.ends_at - now);
    const closed = lot.state >= 4;
    $(".countdown", node).textContent = closed ? "closed" : lot.state < 3 ? "not open yet" : Math.ceil(left / 1000) + " s left";
  }
}

function send(message) {
  if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify(message));
}

function placeBid(lotId, amount, op) {
  const ref = "web-" + Date.now().toString(36) + "-" + (state.refSeq++);
  const message = op === "max_bid" ? { op, lot_id: lotId, max: amount, ref } : { op, lot_id: lotId, price: amount, ref };
  send(message);
}

function setStatus(lotId, text, good) {
  const entry = state.lots[lotId];
  if (!entry) return;
  const status = $(".status", entry.node);
  status.textContent = text;
  status.className = "status " + (good ? "good" : "bad");
}

function connect() {
  if (state.ws) state.ws.close();
  const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws" + (state.token ? "?token=" + encodeURIComponent(state.token) : "");
  const ws = new WebSocket(url);
  state.ws = ws;
  ws.onmessage = (event) => {
    const message = JSON.parse(event.data);
    if (message.server_time) state.skew = message.server_time - Date.now();
    if (message.type === "snapshot") {
      for (const lot of message.lots) if (state.lots[lot.lot_id]) { state.lots[lot.lot_id].lot = lot; render(lot.lot_id); }
    } else if (message.type === "price") {
      const entry = state.lots[message.lot_id];
      if (entry) { Object.assign(entry.lot, message); render(message.lot_id); }
    } else if (message.type === "extended" || message.type === "state") {
      const entry = state.lots[message.lot_id];
      if (entry) { Object.assign(entry.lot, message); render(message.lot_id); }
    } else if (message.type === "closed") {
      const entry = state.lots[message.lot_id];
      if (entry) { entry.lot.state = message.result === "sold" ? 4 : 5; setStatus(message.lot_id, "closed: " + message.result, true); }
    } else if (message.type === "accepted") {
      setStatus(message.lot_id, message.leading ? "You lead at " + yuan(message.price) : "Accepted, but outbid by a maximum", message.leading);
    } else if (message.type === "rejected") {
      setStatus(message.lot_id, "Rejected: " + message.code + (message.next_min ? " (at least " + yuan(message.next_min) + ")" : ""), false);
    } else if (message.type === "outbid") {
      setStatus(message.lot_id, "You were outbid at " + yuan(message.price), false);
    }
    log(event.data);
  };
  ws.onopen = () => { if (state.session) send({ op: "subscribe", session_id: state.session.id }); };
  ws.onclose = () => { setTimeout(() => { if (state.ws === ws) connect(); }, 2000); };
}

$("#login").addEventListener("submit", (event) => { event.preventDefault(); signIn(false); });
$("#register").addEventListener("click", () => signIn(true));
$("#deposit").addEventListener("click", async () => {
  try {
    const deposit = await api("POST", "/api/v1/deposits", { session_id: state.session.id, lot_id: null, pay_with: "balance" });
    $("#deposit-msg").textContent = "Deposit " + deposit.status + ": " + yuan(deposit.amount);
    showMe();
  } catch (error) {
    $("#deposit-msg").textContent = "Deposit refused: " + error.message;
  }
});
setInterval(tick, 250);
showMe().then(connect);
listSessions().catch((error) => log("could not list sessions: " + error.message));
