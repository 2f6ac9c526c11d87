// Gavel admin: small progressive enhancements. Every page works without this file.
(function () {
  "use strict";
  var xsrf = (document.querySelector('meta[name="xsrf-token"]') || {}).content || "";
  // The business time zone (BUSINESS_TZ): scripts show times in it, as the server's when() does.
  var businessTz = (document.querySelector('meta[name="business-tz"]') || {}).content || "UTC";
  var timeFormat = null;
  // A time (epoch ms, ISO string or Date) as "2026-12-06 20:00:00" in the business zone.
  function formatTime(value) {
    var date = value instanceof Date ? value : new Date(value);
    if (isNaN(date.getTime())) return "—";
    if (!timeFormat) {
      timeFormat = new Intl.DateTimeFormat("sv-SE", {
        timeZone: businessTz, year: "numeric", month: "2-digit", day: "2-digit",
        hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23"
      });
    }
    return timeFormat.format(date);
  }
  // Integer fen as "¥1,234.50" (as the server's money() does); a span of time as "1h 05m 09s".
  function money(fen) {
    if (fen === null || fen === undefined) return "—";
    var negative = fen < 0, abs = Math.abs(fen), yuan = Math.floor(abs / 100), cents = abs % 100;
    return (negative ? "-" : "") + "¥" + yuan.toLocaleString("en-US") + "." + String(cents).padStart(2, "0");
  }
  function duration(ms) {
    if (ms <= 0) return "0s";
    var s = Math.floor(ms / 1000), h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
    s = s % 60;
    if (h > 0) return h + "h " + String(m).padStart(2, "0") + "m " + String(s).padStart(2, "0") + "s";
    if (m > 0) return m + "m " + String(s).padStart(2, "0") + "s";
    return s + "s";
  }
  window.gavelAdmin = {
    xsrf: xsrf, businessTz: businessTz, formatTime: formatTime, money: money, duration: duration
  };

  function setupSpecs(fieldset) {
    var button = fieldset.querySelector("[data-add-spec]");
    if (!button) return;
    button.addEventListener("click", function () {
      var rows = fieldset.querySelectorAll(".spec-row");
      var row = rows[rows.length - 1].cloneNode(true);
      row.querySelectorAll("input").forEach(function (input) { input.value = ""; });
      fieldset.insertBefore(row, button);
      row.querySelector("input").focus();
    });
  }

  // Image upload with a preview (object URL) and FormData + the XSRF header; reloads on success.
  function setupUpload(form) {
    var file = form.querySelector('input[type="file"]');
    var preview = form.querySelector("img.preview");
    var status = form.querySelector(".upload-status");
    file.addEventListener("change", function () {
      if (preview && file.files && file.files[0]) {
        preview.src = URL.createObjectURL(file.files[0]);
        preview.hidden = false;
      }
    });
    form.addEventListener("submit", function (event) {
      if (!window.fetch || !window.FormData) return; // plain form post
      event.preventDefault();
      var button = form.querySelector('button[type="submit"]');
      button.disabled = true;
      status.textContent = "Uploading…";
      fetch(form.action, {
        method: "POST", body: new FormData(form), credentials: "same-origin",
        headers: { "X-XSRFToken": xsrf, "Accept": "application/json" }
      }).then(function (response) {
        return response.json().then(function (body) { return { ok: response.ok, body: body }; });
      }).then(function (answer) {
        if (answer.ok) { status.textContent = "Uploaded."; window.location.reload(); return; }
        status.textContent = (answer.body.error && answer.body.error.message) || "Upload refused.";
        button.disabled = false;
      }).catch(function () {
        status.textContent = "Upload failed; check the connection and retry.";
        button.disabled = false;
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("form").forEach(function (form) {
      var question = form.getAttribute("data-confirm");
      if (question) form.addEventListener("submit", function (event) {
        if (!window.confirm(question)) event.preventDefault();
      });
    });
    document.querySelectorAll("fieldset[data-specs]").forEach(setupSpecs);
    document.querySelectorAll("form[data-upload]").forEach(setupUpload);
  });
})();
