// What the degree screens (issue 22) share: their strings and styles, dates and states, the
// hand-in file checks (the server's limits), uploads with progress, authorised file downloads and
// a homework record's history of submissions and gradings.
import { html, useState } from "./html.js";
import { t, groupStrings, loadLanguage, language } from "./i18n.js";
import { auth, ApiError } from "./api.js";
import { useStore } from "./store.js";
import { live, onFrame } from "./live.js";
import { formatYuan } from "./money.js";
import { formatWhen, parseIso, serverNow } from "./time.js";
import { toast, errorText } from "./ui.js";

// The degree screens' strings and styles come with them: no other page carries them.
const STYLES = "/static/app/degree.css";
await Promise.all([
  groupStrings.push(async (lang) => (await import(`./lang/degree.${lang}.js`)).default) && loadLanguage(language.get().lang),
  document.querySelector(`link[href="${STYLES}"]`) ||
    new Promise((resolve) => {
      const link = Object.assign(document.createElement("link"), { rel: "stylesheet", href: STYLES, onload: resolve, onerror: resolve });
      document.head.append(link);
    }),
]);

export const yuan = (fen) => formatYuan(fen ?? 0);

// The degree path's news while its screens are loaded (the screen on view reloads: useDegreeFrame).
onFrame((f) => {
  if (f.type === "homework_graded")
    toast(t(f.passed ? "deg.graded_pass" : "deg.graded_fail", { grade: f.grade, amount: yuan(f.scholarship) }), f.passed ? "good" : "warn", 8000);
  else if (f.type === "degree_graduated") toast(t("deg.graduated_toast", { amount: yuan(f.award) }), "good", 10000);
  else if (f.type === "homework_submitted") toast(t("deg.submitted_toast", { title: f.homework_title }), "info", 6000);
});

/** An API time (`name` as ISO, or `name_ms`) in the viewer's time zone. */
export const when = (doc, name) => formatWhen(doc[name + "_ms"] ?? parseIso(doc[name]));

/** Today as the schedule's dates are written ("YYYY-MM-DD", UTC days, the server's clock). */
export const today = () => new Date(serverNow()).toISOString().slice(0, 10);

const TONE = { studying: "good", graduated: "good", done: "good", passed: "good", on_time: "good", rewarded: "good",
  suspended: "warn", submitted: "warn", new: "warn", late: "bad", penalised: "bad", missed: "bad", failed: "bad",
  timed_out: "bad", refunded: "bad" };

/** A state as a badge: `group` is the strings' prefix (deg.status, deg.module, deg.record, deg.reward). */
export function Badge({ group, value }) {
  return html`<span class=${"badge " + (TONE[value] || "")}>${t(`deg.${group}.${value}`)}</span>`;
}

/** The latest frame of the degree path (js/live.js keeps it): a screen reloads when it changes. */
export function useDegreeFrame(wanted) {
  return useStore(live, (state) => (state.degree && wanted(state.degree) ? state.degree : null));
}

/** A feature whose endpoint answers 404/405 here (not deployed) hides; other errors throw. */
export async function optional(request) {
  try {
    return await request();
  } catch (error) {
    if (error.status === 405 || (error.status === 404 && ["HTTP_404", "NOT_FOUND"].includes(error.code))) return null;
    throw error;
  }
}

// -- hand-in files: the server's limits (docs/degree.md), checked before anything is sent -----------------
export const MAX_FILES = 5;
export const MAX_FILE_BYTES = 10 * 1024 * 1024;
export const ACCEPT = ".pdf,.png,.jpg,.jpeg,.gif,.webp,.zip,.txt,.md,.py,.csv,.json";
const MAGIC = ["%PDF-", "\x89PNG\r\n\x1a\n", "\xff\xd8\xff", "GIF87a", "GIF89a", "PK\x03\x04", "PK\x05\x06"];

/** Whether the server will take the file (shop/degree_files.py sniff): pdf, png, jpeg, gif, webp, zip or UTF-8 text. */
async function allowed(file) {
  const head = new Uint8Array(await file.slice(0, 12).arrayBuffer());
  const starts = (text, at = 0) => [...text].every((c, i) => head[at + i] === c.charCodeAt(0));
  if (MAGIC.some((magic) => starts(magic)) || (starts("RIFF") && starts("WEBP", 8))) return true;
  try {
    // Plain text as the server takes it (shop/degree_service.py sniff_file): no C0 control
    // character but tab, line breaks and form feed, and no DEL; full-width spaces are text.
    const text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(await file.arrayBuffer());
    return text !== "" && !/[\x00-\x08\x0b\x0e-\x1f\x7f]/.test(text);
  } catch {
    return false;
  }
}

/** The first problem of `files` as { code, file } (the server's error codes), or null. */
export async function checkFiles(files) {
  if (files.length > MAX_FILES) return { code: "TOO_MANY_FILES" };
  for (const file of files) {
    if (file.size > MAX_FILE_BYTES) return { code: "FILE_TOO_LARGE", file: file.name };
    if (file.name.length > 200 || !(await allowed(file))) return { code: "FILE_REJECTED", file: file.name };
  }
  return null;
}

export const fileSize = (bytes) =>
  bytes >= 1048576 ? (bytes / 1048576).toFixed(1) + " MB" : bytes >= 1024 ? Math.ceil(bytes / 1024) + " KB" : bytes + " B";

/** POST multipart `form` with the bearer token; `onProgress(0..1)` while it uploads. */
export function upload(path, form, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", path);
    xhr.setRequestHeader("Accept", "application/json");
    const { token } = auth.get();
    if (token) xhr.setRequestHeader("Authorization", "Bearer " + token);
    xhr.upload.onprogress = (event) => event.lengthComputable && onProgress(event.loaded / event.total);
    xhr.onload = () => {
      let data = {};
      try {
        data = JSON.parse(xhr.responseText);
      } catch {
        /* a proxy's page: the status says enough */
      }
      if (xhr.status >= 200 && xhr.status < 300) return resolve(data);
      const error = data.error || {};
      reject(new ApiError(xhr.status, error.code || (xhr.status === 413 ? "FILE_TOO_LARGE" : ""), error.message, error));
    };
    xhr.onerror = () => reject(new ApiError(0, "NETWORK", "network"));
    xhr.send(form);
  });
}

/** Files are served only with the bearer token (owner, mentor, admins): fetched, then saved. */
async function download(file) {
  const response = await fetch(file.url || "/api/v1/degree-files/" + file.id, { headers: { Authorization: "Bearer " + auth.get().token } });
  if (!response.ok) throw new ApiError(response.status, response.status === 404 ? "NOT_FOUND" : "");
  const url = URL.createObjectURL(await response.blob());
  const link = Object.assign(document.createElement("a"), { href: url, download: file.name || "file" });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

export function Files({ files }) {
  const [busy, setBusy] = useState(null);
  if (!files || !files.length) return null;
  async function save(file) {
    setBusy(file.id);
    try {
      await download(file);
    } catch (error) {
      toast(errorText(error), "warn");
    } finally {
      setBusy(null);
    }
  }
  return html`<ul class="deg-files">${files.map((f) => html`<li key=${f.id}>
    <button type="button" class="button secondary deg-file" disabled=${busy === f.id} onClick=${() => save(f)}
      aria-label=${t("deg.download", { name: f.name })}>📎 ${f.name} <span class="small muted">${fileSize(f.size)}</span></button></li>`)}</ul>`;
}

/** A grading: grade, pass or fail, the scholarship it earned, the mentor's comment (as text). */
export function Grading({ grading }) {
  return html`<div class="deg-grading">
    <p class="row"><span class=${"badge " + (grading.passed ? "good" : "bad")}>${grading.grade}</span>
      <span>${t(grading.passed ? "deg.record.passed" : "deg.record.failed")}</span>
      ${grading.scholarship > 0 && html`<span class="deg-earned">${t("deg.earned", { amount: yuan(grading.scholarship) })}</span>`}
      <span class="small muted">${when(grading, "at")}</span></p>
    ${grading.comment && html`<p class="deg-text">${grading.comment}</p>`}
  </div>`;
}

/** The submissions, newest first, each with its files and gradings. */
export function History({ record }) {
  const gradings = record.gradings || [];
  return html`<ol class="list deg-history">${[...(record.submissions || [])].reverse().map((s) => html`<li key=${s.n}>
    <p class="spread"><strong>${t("deg.submission", { n: s.n })}</strong><span class="small muted">${when(s, "at")}</span></p>
    ${s.text && html`<p class="deg-text">${s.text}</p>`}
    <${Files} files=${s.files} />
    ${gradings.filter((g) => g.submission === s.n).map((g, i) => html`<${Grading} key=${i} grading=${g} />`)}
  </li>`)}</ol>`;
}
