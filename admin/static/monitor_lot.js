// Gavel admin: one lot's live monitor. The public websocket says *that* something changed (price,
// extension, state, pause, void); the admin JSON (/admin/api/lots/{id}) says *what*, with the real
// users behind the pseudonyms. Every value is written with textContent (never innerHTML).
(function () {
  "use strict";
  var root = document.getElementById("lot-monitor");
  if (!root) return;
  var lotId = Number(root.getAttribute("data-lot-id"));
  var sessionId = Number(root.getAttribute("data-session-id"));
  var canWrite = root.getAttribute("data-can-write") === "1";
  var lotStates = JSON.parse(root.getAttribute("data-lot-states") || "{}");
  var admin = window.gavelAdmin;  // admin.js: the business zone and its time format
  var zone = admin.businessTz;
  var points = JSON.parse(root.getAttribute("data-points") || "[]");
  var skew = Number(root.getAttribute("data-server-time") || Date.now()) - Date.now();
  var conn = document.getElementById("conn");
  var chartBox = document.getElementById("chart");
  var chartNote = document.getElementById("chart-note");
  var chart = null, socket = null, retry = 0, refreshTimer = 0, detail = null;
  var endsAt = 0;

  function now() { return Date.now() + skew; }
  var money = window.gavelAdmin.money, duration = window.gavelAdmin.duration;  // admin.js
  function local(ms) { return ms ? admin.formatTime(ms) : "—"; }
  function field(name) { return root.querySelector('[data-field="' + name + '"]'); }
  function setText(el, value) { if (el && el.textContent !== value) el.textContent = value; }
  function el(tag, text, attrs) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = text;
    Object.keys(attrs || {}).forEach(function (key) { node.setAttribute(key, attrs[key]); });
    return node;
  }
  function userLink(user) {
    return el("a", user.username + " #" + user.id, { href: "/admin/users/" + encodeURIComponent(user.id) });
  }

  // -- the chart: price over time (stepped), from the bid history ----------------------------------------
  function chartData() {
    return [points.map(function (p) { return p.at / 1000; }), points.map(function (p) { return p.price / 100; })];
  }
  function makeChart() {
    if (!window.uPlot) { chartNote.textContent = "The chart library did not load."; return; }
    chart = new window.uPlot({
      width: Math.max(280, chartBox.clientWidth), height: 260,
      tzDate: function (ts) { return window.uPlot.tzDate(new Date(ts * 1000), zone); },  // the business zone
      scales: { x: { time: true, range: function (u, min, max) {
        var xs = u.data[0];
        if (!xs.length || min === null || max === null) { var t = now() / 1000; return [t - 60, t]; }
        if (xs[0] === xs[xs.length - 1]) return [xs[0] - 30, xs[0] + 30];
        if (max - min < 60) { var mid = (min + max) / 2; return [mid - 30, mid + 30]; }
        return [min, max];
      } } },
      series: [
        { value: function (u, v) { return v === null || v === undefined ? "—" : local(v * 1000); } },
        { label: "Price", stroke: "#2b6cb0", width: 2, fill: "rgba(43,108,176,0.08)",
          paths: window.uPlot.paths.stepped({ align: 1 }), points: { show: true, size: 5 },
          value: function (u, v) { return v === null || v === undefined ? "—" : money(Math.round(v * 100)); } }
      ],
      axes: [{}, { size: 70, values: function (u, vals) { return vals.map(function (v) { return "¥" + v.toLocaleString("en-US"); }); } }]
    }, chartData(), chartBox);
    window.addEventListener("resize", function () { chart.setSize({ width: Math.max(280, chartBox.clientWidth), height: 260 }); });
  }

  // -- the refresh from the admin JSON ---------------------------------------------------------------------
  function renderHistory(history) {
    var body = document.querySelector("#history tbody");
    if (!body) return;
    var rows = history.map(function (bid) {
      var tr = el("tr", null, { "data-bid": String(bid.number) });
      if (bid.voided) tr.className = "voided";
      tr.appendChild(el("td", String(bid.number)));
      tr.appendChild(el("td", local(bid.at), { "class": "nowrap" }));
      tr.appendChild(el("td", money(bid.price), { "class": "num" }));
      var who = el("td"); who.appendChild(userLink(bid.user)); tr.appendChild(who);
      tr.appendChild(el("td", bid.user.pseudonym));
      tr.appendChild(el("td", bid.kind + (bid.voided ? " · voided" + (bid.reason ? ": " + bid.reason : "") : "")));
      var act = el("td");
      if (canWrite && bid.index !== null && !bid.voided && detail.controls.indexOf("void") >= 0) {
        act.appendChild(el("a", "Void", { "class": "button small danger", "data-control": "void",
          href: "/admin/lots/" + lotId + "/bids/" + bid.index + "/void" }));
      }
      tr.appendChild(act);
      return tr;
    });
    if (!rows.length) { var empty = el("tr"); empty.appendChild(el("td", "No bids yet.", { colspan: "7", "class": "muted" })); rows = [empty]; }
    body.replaceChildren.apply(body, rows);
  }
  function renderBidders(bidders) {
    var body = document.querySelector("table.bidders tbody");
    if (!body || !bidders.length) return;
    body.replaceChildren.apply(body, bidders.map(function (bidder) {
      var tr = el("tr", null, { "data-user-id": String(bidder.user.id) });
      var who = el("td"); who.appendChild(userLink(bidder.user)); tr.appendChild(who);
      tr.appendChild(el("td", bidder.user.pseudonym));
      tr.appendChild(el("td", String(bidder.bids), { "class": "num" }));
      tr.appendChild(el("td", bidder.bids ? money(bidder.highest) : "—", { "class": "num" }));
      var tags = el("td");
      if (bidder.leading) tags.appendChild(el("span", "leading", { "class": "tag" }));
      if (bidder.blocked) tags.appendChild(el("span", "blocked", { "class": "tag danger" }));
      tr.appendChild(tags);
      var act = el("td");
      if (canWrite) {
        var verb = bidder.blocked ? "unblock" : "block";
        act.appendChild(el("a", bidder.blocked ? "Unblock" : "Block", { "class": "button small " + (bidder.blocked ? "secondary" : "danger"),
          "data-control": verb, href: "/admin/bidders/" + bidder.user.id + "/" + verb + "?lot=" + lotId }));
      }
      tr.appendChild(act);
      return tr;
    }));
  }
  function renderControls(controls) {
    var box = document.getElementById("lot-controls");
    if (!box || !canWrite) return;
    var labels = { pause: "Pause", resume: "Resume", extend: "Extend", withdraw: "Withdraw" };
    var links = controls.filter(function (v) { return labels[v]; }).map(function (verb) {
      return el("a", labels[verb], { "class": "button " + (verb === "withdraw" ? "danger" : "secondary"),
        "data-control": verb, href: "/admin/lots/" + lotId + "/" + verb });
    });
    box.replaceChildren.apply(box, links);
  }
  function render(data) {
    detail = data;
    var live = data.live;
    skew = data.server_time - Date.now();
    setText(field("price"), live.bid_count ? money(live.price) : "—");
    var leader = field("leader");
    if (leader) {
      if (live.leader_user) {
        leader.replaceChildren(document.createTextNode(live.leader_user.pseudonym + " · "), userLink(live.leader_user));
      } else setText(leader, "—");
    }
    setText(field("bid_count"), live.bid_count + " from " + live.bidders + " bidders");
    setText(field("next_min"), money(live.next_min));
    setText(field("reserve"), live.reserve ? money(live.reserve) + " · " + (live.reserve_met ? "met" : "not met") : "none");
    setText(field("ends_at"), local(live.ends_at));
    setText(field("extensions"), (live.extensions !== null ? live.extensions + " · " : "") + "+" + Math.floor(live.moved_ms / 60000) + " min past the scheduled end");
    setText(field("deposits"), live.deposits.count + " · " + money(live.deposits.total));
    setText(field("watchers"), data.watchers.viewers + " viewers · " + data.watchers.users + " signed-in users · " + data.watchers.sockets + " sockets here");
    var state = document.getElementById("lot-state");
    if (state) { state.className = "state l" + live.state; setText(state, lotStates[live.state] || String(live.state)); }
    var paused = document.getElementById("lot-paused");
    if (paused) paused.hidden = !live.paused;
    endsAt = live.state === 3 && !live.paused ? live.ends_at : 0;
    points = data.points;
    if (chart) chart.setData(chartData());
    chartNote.textContent = points.length ? points.length + " price point(s)." : "No bids yet.";
    renderHistory(data.history);
    renderBidders(data.bidders);
    renderControls(data.controls);
  }
  function refresh() {
    refreshTimer = 0;
    fetch("/admin/api/lots/" + lotId, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (data) { if (data) render(data); })
      .catch(function () { setText(conn, "could not refresh"); });
  }
  // At most one refresh a second: with thousands of bids the JSON is a few hundred KB.
  function soon() { if (!refreshTimer) refreshTimer = window.setTimeout(refresh, 1000); }
  function tick() {
    var countdown = field("countdown");
    if (detail === null) endsAt = Number(countdown && countdown.getAttribute("data-ends-at")) || 0;
    var paused = document.getElementById("lot-paused");
    var text = paused && !paused.hidden ? "paused" : endsAt ? duration(endsAt - now()) : "—";
    setText(countdown, text);
  }

  // -- the websocket (anonymous watcher): which frames concern this lot ---------------------------------------
  function connect() {
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + window.location.host + "/ws");
    socket.onmessage = function (event) {
      var frame;
      try { frame = JSON.parse(event.data); } catch (e) { return; }
      if (typeof frame.server_time === "number") skew = frame.server_time - Date.now();
      if (frame.type === "hello") socket.send(JSON.stringify({ op: "subscribe", session_id: sessionId }));
      else if (frame.type === "snapshot" && frame.session_id === sessionId) {
        conn.setAttribute("data-state", "live"); conn.textContent = "live"; retry = 0;
      } else if (frame.lot_id === lotId) soon();
    };
    socket.onclose = function () {
      var wait = Math.min(15000, 1000 * Math.pow(2, retry++));
      conn.setAttribute("data-state", "reconnecting");
      conn.textContent = "disconnected; retrying in " + Math.round(wait / 1000) + " s";
      window.setTimeout(connect, wait);
    };
  }

  document.addEventListener("DOMContentLoaded", function () {
    makeChart();
    connect();
    tick();
    window.setInterval(tick, 1000);
    window.setInterval(refresh, 10000);  // watchers and deposits change without a frame
  });
})();
