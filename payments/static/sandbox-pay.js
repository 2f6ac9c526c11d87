// The sandbox pay page: reads and settles the payment with the signed-in user's token
// (the same one the demo page keeps), so only the payer can pay.
"use strict";
(function () {
  const tradeNo = decodeURIComponent(location.pathname.split("/").pop());
  const api = "/api/v1/sandbox/payments/" + encodeURIComponent(tradeNo);
  const token = localStorage.getItem("gavel-token") || "";
  const $ = (id) => document.getElementById(id);
  async function call(method, body) {
    const headers = { Authorization: "Bearer " + token };
    if (body) headers["Content-Type"] = "application/json";
    const answer = await fetch(api, { method, headers, body: body ? JSON.stringify(body) : undefined });
    const json = await answer.json();
    if (!answer.ok) throw new Error(json.error ? json.error.message : "HTTP " + answer.status);
    return json;
  }
  // Like Alipay after a payment: back to the merchant's return URL, which sends a browser on to
  // the app's page for this payment (it waits there for the notification).
  const returnUrl = "/api/v1/payments/return?out_trade_no=" + encodeURIComponent(tradeNo);
  $("return").href = returnUrl;
  function show(p) {
    $("subject").textContent = p.subject;
    $("amount").textContent = "¥" + p.amount_yuan;
    $("status").textContent = "(" + p.status + ")";
    $("pay").hidden = $("fail").hidden = p.status !== "WAIT_BUYER_PAY";
    $("back").hidden = p.status !== "TRADE_SUCCESS";
  }
  function failed(error) { $("subject").textContent = error.message; }
  for (const [id, outcome] of [["pay", "paid"], ["fail", "failed"]]) {
    $(id).addEventListener("click", () =>
      call("POST", { outcome }).then((p) => {
        show(p);
        if (outcome === "paid" && p.status === "TRADE_SUCCESS") {
          setTimeout(() => location.assign(returnUrl), 1000);
        }
      }, failed));
  }
  if (token) call("GET").then(show, failed);
})();
