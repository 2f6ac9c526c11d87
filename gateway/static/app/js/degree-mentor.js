// The mentor's workspace (issue 22): the queue of homework to grade (oldest first, late marked,
// refreshed live), grading one record, my students and a student's follow-ups.
import { html, useState } from "./html.js";
import { t } from "./i18n.js";
import { get, post } from "./api.js";
import { navigate } from "./router.js";
import { useTitle } from "./shell.js";
import { useAsync, Async, Empty, Field, toast, errorText } from "./ui.js";
import { signedInOnly } from "./account-common.js";
import { yuan, when, upload, checkFiles, ACCEPT, Badge, History, Files, useDegreeFrame } from "./degree-common.js";

// The seed's scale (shop/degree_rules.py GRADES): a score of 40 or more passes.
const GRADES = [["A+", 100], ["A", 90], ["B+", 85], ["B", 80], ["B-", 70], ["C+", 60], ["C", 50], ["C-", 40], ["D", -1], ["N/A", 0], ["COPY", -100]];
const CHANNELS = ["phone", "wechat", "qq", "email", "meeting", "other"];
const anyFrame = (f) => f.type === "homework_submitted";

function Tabs({ on }) {
  const tab = (name, path) => html`<button type="button" class=${on === name ? "on" : ""} aria-pressed=${on === name}
    onClick=${() => navigate(path, { replace: true })}>${t("deg.tab." + name)}</button>`;
  return html`<div class="segmented" role="group" aria-label=${t("deg.mentor_ws")}>${tab("queue", "/mentor")}${tab("students", "/mentor?tab=students")}</div>`;
}

function Queue() {
  const frame = useDegreeFrame(anyFrame);
  const state = useAsync(() => get("/api/v1/mentor/queue"), [frame]);
  return html`<${Async} state=${state} ready=${(data) =>
    data.items.length === 0
      ? html`<${Empty} text=${t("deg.queue_empty")} />`
      : html`<ul class="card list deg-queue">${data.items.map((q) => html`<li key=${q.record_id}><a class="deg-item" href=${"#/mentor/record/" + q.record_id}>
          <span class="spread"><strong>${q.homework_title}</strong>${q.late && html`<span class="badge bad">${t("deg.late")}</span>`}</span>
          <span>${q.student.name} · <span class="muted">${q.degree_name} · ${q.module_name}</span></span>
          <span class="small muted">${t("deg.handed_in_at", { at: when(q, "handed_in_at") })}${q.recommended_date ? " · " + t("deg.due", { date: String(q.recommended_date).slice(0, 10) }) : ""}
            ${q.submit_count > 1 ? " · " + t("deg.submission", { n: q.submit_count }) : ""}</span>
        </a></li>`)}</ul>`} />`;
}

function Students() {
  const state = useAsync(() => get("/api/v1/mentor/students"));
  return html`<${Async} state=${state} ready=${(data) =>
    data.items.length === 0
      ? html`<${Empty} text=${t("deg.no_students")} />`
      : html`<ul class="card list">${data.items.map((s) => html`<li key=${s.enrolment_id}><a class="deg-item" href=${"#/mentor/student/" + s.enrolment_id}>
          <span class="spread"><strong>${s.student.name}</strong><${Badge} group="status" value=${s.status} /></span>
          <span class="muted">${s.degree_name}</span>
          <span class="small">${t("deg.progress", { done: s.modules_done, total: s.modules_total })}
            ${s.behind ? html` <span class="badge bad">${typeof s.behind === "number" ? t("deg.behind_n", { n: s.behind }) : t("deg.behind")}</span>` : ""}</span>
          <span class="small muted">${t("deg.m.earned")} ${yuan(s.scholarship_awarded)} · ${t("deg.fee_left")} ${yuan(s.mentor_fee_balance)}</span>
        </a></li>`)}</ul>`} />`;
}

function Workspace({ query }) {
  useTitle(t("deg.mentor_ws"), "/me");
  const on = query.tab === "students" ? "students" : "queue";
  return html`<section class="deg-wide"><${Tabs} on=${on} />${on === "queue" ? html`<${Queue} />` : html`<${Students} />`}</section>`;
}

// -- grading one record ---------------------------------------------------------------------------------
function GradeForm({ record, done }) {
  const latest = record.submissions.length ? record.submissions[record.submissions.length - 1].n : null;
  const [grade, setGrade] = useState("");
  const [comment, setComment] = useState("");
  const [failure, setFailure] = useState(null);
  const [busy, setBusy] = useState(false);
  async function submit(event) {
    event.preventDefault();
    if (!grade) return setFailure({ code: "deg.choose_grade" });
    setBusy(true);
    setFailure(null);
    try {
      await post(`/api/v1/mentor/records/${record.id}/grade`, { submission: latest, grade, comment: comment.trim() });
      toast(t("deg.graded"), "good");
      done();
    } catch (error) {
      setFailure(error);
    } finally {
      setBusy(false);
    }
  }
  const score = (GRADES.find(([g]) => g === grade) || [])[1];
  return html`<form class="card form" onSubmit=${submit} novalidate>
    <h2>${t("deg.grade_submission", { n: latest })}</h2>
    <${Field} id="deg-grade" label=${t("deg.grade")} hint=${grade ? t(score >= 40 ? "deg.will_pass" : "deg.will_fail") : null}>
      <select id="deg-grade" value=${grade} onChange=${(e) => setGrade(e.target.value)}><option value="">${t("deg.choose")}</option>
        ${GRADES.map(([g, s]) => html`<option key=${g} value=${g}>${g} (${s})</option>`)}</select><//>
    <${Field} id="deg-comment" label=${t("deg.comment")}>
      <textarea id="deg-comment" rows="4" maxlength="2000" value=${comment} onInput=${(e) => setComment(e.target.value)}></textarea><//>
    ${failure && html`<p class="form-error" role="alert">${failure.code === "deg.choose_grade" ? t("deg.choose_grade") : errorText(failure)}</p>`}
    <button class="button primary block" type="submit" disabled=${busy || latest === null}>${t("deg.submit_grade")}</button>
  </form>`;
}

function RecordPage({ params }) {
  const id = params[0];
  const state = useAsync(() => get("/api/v1/mentor/records/" + id), [id]);
  useTitle(state.data ? state.data.homework_title : t("deg.homework"), "/mentor");
  return html`<${Async} state=${state} ready=${(r) => {
    const graded = r.graded_submission != null && r.graded_submission === (r.submissions.at(-1) || {}).n;
    return html`<div class="deg-wide">
      <div class="card">
        <p class="row"><${Badge} group="record" value=${r.status} /><${Badge} group="reward" value=${r.reward_status} />${r.grade && html`<span class="badge">${r.grade}</span>`}</p>
        <p class="small muted">${r.recommended_date ? t("deg.due", { date: String(r.recommended_date).slice(0, 10) }) + " · " : ""}${t("deg.handed_in_at", { at: when(r, "handed_in_at") })}</p>
        ${r.enrolment_id && html`<a class="button secondary" href=${"#/mentor/student/" + r.enrolment_id}>${t("deg.followups")}</a>`}
      </div>
      ${graded ? html`<p class="notice">${t("deg.already_graded", { grade: r.grade })}</p>` : html`<${GradeForm} record=${r} done=${state.reload} />`}
      <div class="card"><h2>${t("deg.history")}</h2><${History} record=${r} /></div>
    </div>`;
  }} />`;
}

// -- a student's follow-ups -----------------------------------------------------------------------------
function FollowUpForm({ path, done }) {
  const [channel, setChannel] = useState("wechat");
  const [text, setText] = useState("");
  const [file, setFile] = useState(null);
  const [failure, setFailure] = useState(null);
  const [busy, setBusy] = useState(false);
  async function pick(event) {
    const chosen = event.target.files[0] || null;
    const found = chosen && (await checkFiles([chosen]));
    setFailure(found ? { code: found.code } : null);
    setFile(found ? null : chosen);
    if (found) event.target.value = "";
  }
  async function submit(event) {
    event.preventDefault();
    if (!text.trim()) return setFailure({ code: "deg.empty" });
    setBusy(true);
    setFailure(null);
    try {
      if (file) {
        const form = new FormData();
        form.append("channel", channel);
        form.append("text", text.trim());
        form.append("file", file, file.name);
        await upload(path, form, () => {});
      } else await post(path, { channel, text: text.trim() });
      setText("");
      setFile(null);
      event.target.reset();
      done();
    } catch (error) {
      setFailure(error);
    } finally {
      setBusy(false);
    }
  }
  return html`<form class="card form" onSubmit=${submit} novalidate>
    <h2>${t("deg.add_followup")}</h2>
    <${Field} id="deg-channel" label=${t("deg.channel")}>
      <select id="deg-channel" value=${channel} onChange=${(e) => setChannel(e.target.value)}>
        ${CHANNELS.map((c) => html`<option key=${c} value=${c}>${t("deg.ch." + c)}</option>`)}</select><//>
    <${Field} id="deg-note" label=${t("deg.note")}>
      <textarea id="deg-note" rows="3" maxlength="2000" value=${text} onInput=${(e) => setText(e.target.value)}></textarea><//>
    <${Field} id="deg-note-file" label=${t("deg.attachment")}><input id="deg-note-file" type="file" accept=${ACCEPT} onChange=${pick} /><//>
    ${failure && html`<p class="form-error" role="alert">${failure.code === "deg.empty" ? t("deg.empty") : errorText(failure)}</p>`}
    <button class="button primary block" type="submit" disabled=${busy}>${t("deg.save")}</button>
  </form>`;
}

function StudentPage({ params }) {
  const path = `/api/v1/mentor/students/${params[0]}/followups`;
  useTitle(t("deg.followups"), "/mentor?tab=students");
  const state = useAsync(() => get(path), [path]);
  return html`<div class="deg-wide"><${FollowUpForm} path=${path} done=${state.reload} />
    <${Async} state=${state} ready=${(data) =>
      data.items.length === 0
        ? html`<${Empty} text=${t("deg.no_followups")} />`
        : html`<ul class="card list">${data.items.map((f) => html`<li key=${f.id}>
            <p class="spread"><span class="badge">${t("deg.ch." + f.channel)}</span><span class="small muted">${when(f, "at")}</span></p>
            <p class="deg-text">${f.text}</p><${Files} files=${f.files} /></li>`)}</ul>`} /></div>`;
}

export const routes = [
  { pattern: /^\/mentor$/, view: signedInOnly(Workspace) },
  { pattern: /^\/mentor\/record\/(\d{1,16})$/, view: signedInOnly(RecordPage) },
  { pattern: /^\/mentor\/student\/(\d{1,16}:\d{1,16})$/, view: signedInOnly(StudentPage) },
];
