// One homework of my degree (issue 22): the requirement and scoring points, the hand-in form
// (text and up to five files, checked here as the server checks them) and the history of
// submissions and gradings, refreshed live when a mentor grades.
import { html, useState } from "./html.js";
import { t } from "./i18n.js";
import { get } from "./api.js";
import { useTitle } from "./shell.js";
import { useAsync, Async, Field, toast, errorText } from "./ui.js";
import { signedInOnly } from "./account-common.js";
import { yuan, when, upload, checkFiles, fileSize, ACCEPT, MAX_FILES, Badge, History, useDegreeFrame } from "./degree-common.js";

const MAX_TEXT = 10_000;

function HandIn({ path, done }) {
  const [text, setText] = useState("");
  const [files, setFiles] = useState([]);
  const [problem, setProblem] = useState(null); // { code, file } of a refused file, or an ApiError
  const [progress, setProgress] = useState(null); // 0..1 while sending
  async function pick(event) {
    const chosen = [...files, ...event.target.files];
    event.target.value = "";
    const found = await checkFiles(chosen);
    setProblem(found);
    if (!found) setFiles(chosen);
  }
  async function send(event) {
    event.preventDefault();
    if (!text.trim() && !files.length) return setProblem({ code: "deg.empty" });
    setProblem(null);
    setProgress(0);
    const form = new FormData();
    form.append("text", text);
    for (const file of files) form.append("files", file, file.name);
    try {
      await upload(path, form, setProgress);
      setText("");
      setFiles([]);
      toast(t("deg.handed_in"), "good");
      done();
    } catch (error) {
      setProblem(error);
    } finally {
      setProgress(null);
    }
  }
  const sending = progress !== null;
  const message = problem && (problem.code === "deg.empty" ? t("deg.empty") : problem.file ? `${problem.file}: ${errorText(problem.code)}` : errorText(problem));
  return html`<form class="card form" onSubmit=${send} novalidate aria-busy=${sending}>
    <h2>${t("deg.hand_in")}</h2>
    <${Field} id="deg-answer" label=${t("deg.answer")} hint=${t("deg.answer_hint", { n: MAX_TEXT })}>
      <textarea id="deg-answer" rows="6" maxlength=${MAX_TEXT} disabled=${sending} value=${text} onInput=${(e) => setText(e.target.value)}></textarea><//>
    <${Field} id="deg-files" label=${t("deg.attachments")} hint=${t("deg.files_hint", { n: MAX_FILES })}>
      <input id="deg-files" type="file" multiple accept=${ACCEPT} disabled=${sending || files.length >= MAX_FILES} onChange=${pick} /><//>
    ${files.length > 0 && html`<ul class="list">${files.map((file, i) => html`<li key=${i} class="spread">
      <span class="deg-grow">📎 ${file.name} <span class="small muted">${fileSize(file.size)}</span></span>
      <button class="button secondary" type="button" disabled=${sending} onClick=${() => setFiles(files.filter((f) => f !== file))}
        aria-label=${t("deg.remove_named", { name: file.name })}>${t("deg.remove")}</button></li>`)}</ul>`}
    ${message && html`<p class="form-error" role="alert">${message}</p>`}
    ${sending && html`<progress class="deg-send" max="1" value=${progress} aria-label=${t("deg.sending")}></progress>`}
    <button class="button primary block" type="submit" disabled=${sending}>${sending ? t("deg.sending") : t("deg.submit")}</button>
  </form>`;
}

function HomeworkPage({ params }) {
  const [degreeId, homeworkId] = params;
  const frame = useDegreeFrame((f) => String(f.homework_id) === homeworkId && String(f.degree_course_id) === degreeId);
  const path = `/api/v1/me/degrees/${degreeId}/homework/${homeworkId}`;
  const state = useAsync(() => get(path), [path, frame]);
  useTitle(state.data ? state.data.homework.title : t("deg.homework"), "/me/degree/" + degreeId);
  return html`<${Async} state=${state} ready=${({ homework: hw, record: r }) => {
    const due = hw.recommended_date || (r && r.recommended_date && String(r.recommended_date).slice(0, 10));
    return html`<div class="deg-wide">
      <div class="card">
        <p class="row"><span class="badge">${t("deg.kind." + hw.kind)}</span>${r && html`${r.submit_count > 0 && html`<${Badge} group="record" value=${r.status} />`}<${Badge} group="reward" value=${r.reward_status} />`}</p>
        <p class="small muted">${t("deg.chapter", { n: hw.chapter })}${due ? " · " + t("deg.due", { date: due }) : ""}${hw.scholarship_value > 0 ? " · " + t("deg.worth", { amount: yuan(hw.scholarship_value) }) : ""}</p>
        <h2>${t("deg.requirement")}</h2><p class="deg-text">${hw.requirement}</p>
        ${hw.scoring_points && html`<h2>${t("deg.scoring")}</h2><p class="deg-text">${hw.scoring_points}</p>`}
      </div>
      ${r && r.status === "passed"
        ? html`<p class="notice good">${t("deg.passed_note", { grade: r.grade })}</p>`
        : html`<${HandIn} path=${path + "/submissions"} done=${state.reload} />`}
      ${r && r.submissions && r.submissions.length > 0 && html`<div class="card"><h2>${t("deg.history")}</h2>
        <p class="small muted">${t("deg.handed_in_times", { n: r.submit_count })} · ${when(r, "handed_in_at")}</p><${History} record=${r} /></div>`}
    </div>`;
  }} />`;
}

export const routes = [{ pattern: /^\/me\/degree\/(\d{1,16})\/homework\/(\d{1,16})$/, view: signedInOnly(HomeworkPage) }];
