// Gavel admin live monitor: the public websocket protocol (docs/protocol.md), watching anonymously.
// Every value from the server is written with textContent (never innerHTML).
(function () {
  "use strict";
  var root = document.getElementById("monitor");
  if (!root) return;
  var sessionId = Number(root.getAttribute("data-session-id"));
  var lotStates = JSON.parse(root.getAttribute("data-lot-states") || "{}");
  var sessionStates = JSON.parse(root.getAttribute("data-session-states") || "{}");
  var zone = window.gavelAdmin.businessTz;  // admin.js
  var conn = document.getElementById("conn");
  var sessionState = document.getElementById("session-state");
  var chartBox = document.getElementById("chart");
  var chartSelect = document.getElementById("chart-lot");
  var chartNote = document.getElementById("chart-note");

  var skew = 0;              // server clock minus ours (ms)
  var lots = {};             // lot_id -> {state, price, leader, bid_count, ends_at, samples: [[t, count]]}
  var rows = {};             // lot_id -> <tr>
  var chart = null, chartLot = null, chartData = [[], []], chartSeeded = 0;
  var socket = null, retry = 0, pingTimer = null;

  root.querySelectorAll("tr[data-lot-id]").forEach(function (tr) {
    rows[tr.getAttribute("data-lot-id")] = tr;
  });

  function now() { return Date.now() + skew; }
  var money = window.gavelAdmin.money, duration = window.gavelAdmin.duration;  // admin.js
  function cell(lotId, field) {
    var tr = rows[lotId];
    return tr ? tr.querySelector('[data-field="' + field + '"]') : null;
  }
  function setText(el, text, bump) {
    if (!el || el.textContent === text) return;
    el.textContent = text;
    if (bump) { el.classList.remove("bump"); void el.offsetWidth; el.classList.add("bump"); }
  }
  function setState(lotId, state) {
    var el = cell(lotId, "state");
    if (!el) return;
    var badge = document.createElement("span");
    badge.className = "state l" + state;
    badge.textContent = lotStates[state] || String(state);
    el.replaceChildren(badge);
  }
  function setConn(state, text) { conn.setAttribute("data-state", state); conn.textContent = text; }

  // -- bids per minute: bid_count samples (server time); bids in the last 60 s seen here ----------------
  function sample(lot, t, count) {
    lot.samples.push([t, count]);
    var cutoff = now() - 120000;
    while (lot.samples.length > 2 && lot.samples[1][0] < cutoff) lot.samples.shift();
  }
  function bidsPerMinute(lot) {
    if (!lot.samples.length) return 0;
    var since = now() - 60000, base = lot.samples[0][1];
    for (var i = 0; i < lot.samples.length; i++) {
      if (lot.samples[i][0] <= since) base = lot.samples[i][1]; else break;
    }
    return Math.max(0, lot.bid_count - base);
  }

  function render(lotId) {
    var lot = lots[lotId];
    if (!lot) return;
    setText(cell(lotId, "price"), lot.bid_count > 0 ? money(lot.price) : "—", true);
    setText(cell(lotId, "leader"), lot.leader || "—");
    setText(cell(lotId, "bid_count"), String(lot.bid_count));
    setState(lotId, lot.state);
  }
  function tick() {
    Object.keys(lots).forEach(function (lotId) {
      var lot = lots[lotId];
      var text = "—";
      if (lot.state === 3 && paused[lotId]) text = "paused";
      else if (lot.state === 3 && lot.ends_at) text = duration(lot.ends_at - now());
      else if (lot.state >= 4) text = "closed";
      setText(cell(lotId, "countdown"), text);
      setText(cell(lotId, "bpm"), String(bidsPerMinute(lot)));
    });
  }

  // -- what only admins see: real users, deposits, reserve, pauses, controls, totals (admin JSON) -----------
  var canWrite = root.getAttribute("data-can-write") === "1";
  var adminTimer = 0;
  var paused = {};           // lot_id -> true while paused (the countdown stops)
  function el(tag, text, attrs) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = text;
    Object.keys(attrs || {}).forEach(function (key) { node.setAttribute(key, attrs[key]); });
    return node;
  }
  function renderAdmin(lotId, live) {
    var tr = rows[lotId];
    if (!tr || !live) return;
    paused[lotId] = !!live.paused;
    var badge = cell(lotId, "paused");
    if (badge) badge.hidden = !live.paused;
    var link = cell(lotId, "leader_user");
    if (link) {
      if (live.leader_user) {
        link.hidden = false;
        link.setAttribute("href", "/admin/users/" + encodeURIComponent(live.leader_user.id));
        setText(link, live.leader_user.username + " #" + live.leader_user.id);
        if (!link.previousSibling || link.previousSibling.nodeType !== 3) link.parentNode.insertBefore(document.createTextNode(" · "), link);
      } else {
        link.hidden = true;
        if (link.previousSibling && link.previousSibling.nodeType === 3) link.previousSibling.remove();
      }
    }
    var reserve = cell(lotId, "reserve");
    if (reserve) {
      if (live.reserve) {
        var met = el("span", live.reserve_met ? "met" : "not met", { "class": "tag" + (live.reserve_met ? " ok" : ""), "data-field": "reserve_met" });
        reserve.replaceChildren(document.createTextNode(money(live.reserve) + " "), met);
      } else setText(reserve, "none");
    }
    setText(cell(lotId, "deposits"), live.deposits.count + " · " + money(live.deposits.total));
    var moved = live.moved_ms ? "+" + Math.floor(live.moved_ms / 60000) + " min" + (live.extensions !== null ? " (" + live.extensions + "×)" : "") : "";
    setText(cell(lotId, "extensions"), moved);
    var controls = cell(lotId, "controls");
    if (controls && canWrite) {
      var labels = { pause: "Pause", resume: "Resume", extend: "Extend", withdraw: "Withdraw" };
      controls.replaceChildren.apply(controls, (live.controls || []).filter(function (v) { return labels[v]; }).map(function (verb) {
        return el("a", labels[verb], { "class": "button small " + (verb === "withdraw" ? "danger" : "secondary"), "data-control": verb,
          href: "/admin/lots/" + lotId + "/" + verb + "?back=session" });
      }));
    }
  }
  function renderTotals(data) {
    var totals = data.totals;
    function total(name, text) { setText(document.querySelector('[data-total="' + name + '"]'), text); }
    total("bidders", String(totals.bidders));
    total("deposits", totals.deposits.count + " · " + money(totals.deposits.total));
    total("session_deposits", totals.session_deposits.count + " · " + money(totals.session_deposits.total));
    total("hammer_total", money(totals.hammer_total));
    total("watchers", totals.watchers.viewers + " viewers · " + totals.watchers.users + " signed-in users · " + totals.watchers.sockets + " sockets here");
    var box = document.getElementById("session-controls");
    if (box && canWrite) {
      box.replaceChildren.apply(box, (data.controls || []).map(function (verb) {
        return el("a", verb === "pause" ? "Pause session" : "Resume session", { "class": "button " + (verb === "pause" ? "danger" : "secondary"),
          "data-control": "session-" + verb, href: "/admin/sessions/" + sessionId + "/" + verb });
      }));
    }
  }
  function refreshAdmin() {
    adminTimer = 0;
    fetch("/admin/api/sessions/" + sessionId, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (data) {
        if (!data) return;
        data.lots.forEach(function (item) { renderAdmin(String(item.id), item.live); });
        renderTotals(data);
      })
      .catch(function () { /* the next refresh tries again */ });
  }
  function adminSoon() { if (!adminTimer) adminTimer = window.setTimeout(refreshAdmin, 300); }

  // -- the chart ---------------------------------------------------------------------------------------
  function makeChart() {
    if (!window.uPlot) { chartNote.textContent = "The chart library did not load."; return; }
    var width = Math.max(280, chartBox.clientWidth);
    chart = new window.uPlot({
      width: width, height: 260,
      tzDate: function (ts) { return window.uPlot.tzDate(new Date(ts * 1000), zone); },  // the business zone
      scales: { x: { time: true, range: function (u, min, max) {
        // At least a minute wide. uPlot widens a single x value by 86400000 s (1000 days) before
        // asking us, so bids that share one timestamp are recognised from the data itself.
        var xs = chartData[0];
        if (!xs.length || min === null || max === null) { var t = now() / 1000; return [t - 60, t]; }
        if (xs[0] === xs[xs.length - 1]) return [xs[0] - 30, xs[0] + 30];
        if (max - min < 60) { var mid = (min + max) / 2; return [mid - 30, mid + 30]; }
        return [min, max];
      } } },
      series: [
        {},
        { label: "Price", stroke: "#2b6cb0", width: 2, fill: "rgba(43,108,176,0.08)",
          paths: window.uPlot.paths.stepped({ align: 1 }), points: { show: true, size: 5 },
          value: function (u, v) { return v === null || v === undefined ? "—" : money(Math.round(v * 100)); } }
      ],
      axes: [{}, { size: 70, values: function (u, vals) { return vals.map(function (v) { return "¥" + v.toLocaleString("en-US"); }); } }]
    }, chartData, chartBox);
    window.addEventListener("resize", function () { chart.setSize({ width: Math.max(280, chartBox.clientWidth), height: 260 }); });
  }
  function addPoint(tMs, fen) {
    chartData[0].push(tMs / 1000);
    chartData[1].push(fen / 100);
    if (chart) chart.setData(chartData);
    chartNote.textContent = chartData[0].length + " price point(s).";
  }
  function chooseLot(lotId) {
    chartLot = String(lotId);
    chartData = [[], []];
    chartSeeded = 0;
    if (chart) chart.setData(chartData);
    Object.keys(rows).forEach(function (id) { rows[id].classList.toggle("chosen", id === chartLot); });
    if (chartSelect.value !== chartLot) chartSelect.value = chartLot;
    chartNote.textContent = "Loading the bid history…";
    fetch("/api/v1/lots/" + encodeURIComponent(chartLot) + "/bids?page_size=100", { credentials: "same-origin" })
      .then(function (response) { return response.ok ? response.json() : { items: [], total: 0 }; })
      .then(function (page) {
        if (String(lotId) !== chartLot) return;
        var items = (page.items || []).slice().reverse();  // oldest first
        var seeded = [[], []];
        items.forEach(function (bid) { seeded[0].push(bid.at_ms / 1000); seeded[1].push(bid.price / 100); });
        chartSeeded = page.total || items.length;
        // Points that arrived while loading and are newer than the history stay.
        for (var i = 0; i < chartData[0].length; i++) {
          if (!seeded[0].length || chartData[0][i] >= seeded[0][seeded[0].length - 1]) {
            seeded[0].push(chartData[0][i]); seeded[1].push(chartData[1][i]);
          }
        }
        chartData = seeded;
        if (chart) chart.setData(chartData);
        chartNote.textContent = chartData[0].length ? chartData[0].length + " price point(s)." : "No bids yet.";
      })
      .catch(function () { chartNote.textContent = "Could not load the bid history."; });
  }

  // -- the websocket -------------------------------------------------------------------------------------
  function onFrame(frame) {
    if (typeof frame.server_time === "number") skew = frame.server_time - Date.now();
    var lot;
    switch (frame.type) {
      case "hello":
        socket.send(JSON.stringify({ op: "subscribe", session_id: sessionId }));
        break;
      case "snapshot":
        if (frame.session_id !== sessionId) return;
        setConn("live", "live");
        if (sessionState) {
          sessionState.className = "state s" + frame.state;
          sessionState.textContent = sessionStates[frame.state] || String(frame.state);
        }
        frame.lots.forEach(function (item) {
          var id = String(item.lot_id);
          lot = lots[id] || { samples: [] };
          lot.state = item.state; lot.price = item.price; lot.leader = item.leader;
          lot.bid_count = item.bid_count; lot.ends_at = item.ends_at;
          if (item.paused !== undefined) {
            paused[id] = !!item.paused;
            var pausedBadge = cell(id, "paused");
            if (pausedBadge) pausedBadge.hidden = !item.paused;
          }
          sample(lot, frame.server_time, item.bid_count);
          lots[id] = lot;
          render(id);
        });
        break;
      case "price":
        if (frame.session_id !== sessionId) return;
        lot = lots[String(frame.lot_id)];
        if (!lot) return;
        lot.price = frame.price; lot.leader = frame.leader; lot.ends_at = frame.ends_at;
        lot.bid_count = frame.bid_count;
        sample(lot, frame.ts, frame.bid_count);
        render(String(frame.lot_id));
        if (String(frame.lot_id) === chartLot && frame.bid_count > chartSeeded) addPoint(frame.ts, frame.price);
        setConn("live", "live · last bid " + window.gavelAdmin.formatTime(frame.ts).slice(11));
        break;
      case "extended":
        lot = lots[String(frame.lot_id)];
        if (lot) lot.ends_at = frame.ends_at;
        break;
      case "state":
        lot = lots[String(frame.lot_id)];
        if (lot) { lot.state = frame.state; lot.ends_at = frame.ends_at; render(String(frame.lot_id)); }
        break;
      case "closed":
        lot = lots[String(frame.lot_id)];
        if (lot) {
          lot.state = frame.result === "sold" ? 4 : 5; lot.price = frame.price;
          lot.leader = frame.winner || lot.leader; render(String(frame.lot_id));
        }
        break;
      case "lot_paused":
        lot = lots[String(frame.lot_id)];
        if (lot) { lot.ends_at = frame.ends_at; paused[String(frame.lot_id)] = !!frame.paused; }
        var badge = cell(String(frame.lot_id), "paused");
        if (badge) badge.hidden = !frame.paused;
        break;
      case "bid_voided":
        lot = lots[String(frame.lot_id)];
        if (lot) { lot.price = frame.price; lot.leader = frame.leader; lot.bid_count = frame.bid_count; render(String(frame.lot_id)); }
        break;
      default:
        break;
    }
    if (frame.lot_id !== undefined || frame.type === "snapshot") adminSoon();
    tick();
  }
  function connect() {
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + window.location.host + "/ws");
    socket.onopen = function () { retry = 0; setConn("connecting", "subscribing…"); };
    socket.onmessage = function (event) {
      var frame;
      try { frame = JSON.parse(event.data); } catch (e) { return; }
      onFrame(frame);
    };
    socket.onclose = function () {
      var wait = Math.min(15000, 1000 * Math.pow(2, retry++));
      setConn("reconnecting", "disconnected; retrying in " + Math.round(wait / 1000) + " s");
      window.setTimeout(connect, wait);
    };
  }

  document.addEventListener("DOMContentLoaded", function () {
    makeChart();
    chartSelect.addEventListener("change", function () { chooseLot(chartSelect.value); });
    root.querySelectorAll("button[data-chart]").forEach(function (button) {
      button.addEventListener("click", function () {
        chooseLot(button.getAttribute("data-chart"));
        chartBox.scrollIntoView({ behavior: "smooth", block: "nearest" });
      });
    });
    if (chartSelect.value) chooseLot(chartSelect.value);
    connect();
    window.setInterval(tick, 1000);
    window.setInterval(refreshAdmin, 5000);  // watchers and deposits change without a frame
    pingTimer = window.setInterval(function () {
      if (socket && socket.readyState === 1) socket.send(JSON.stringify({ op: "ping" }));
    }, 30000);
  });
})();
