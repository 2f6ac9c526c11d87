// Learning: my courses (validity and progress) and a course's sections, opened through signed,
// short-lived content links, marked done as the student goes.
import { html, useState } from "./html.js";
import { t } from "./i18n.js";
import { api, get } from "./api.js";
import { useTitle } from "./shell.js";
import { useAsync, Async, Empty, Picture, toast, errorText } from "./ui.js";
import { formatDate } from "./time.js";
import { signedInOnly } from "./account-common.js";
import { missingFeature, Progress } from "./shop-common.js";

function Section({ section, open, onOpen, onDone }) {
  return html`<li class=${"shop-section" + (open ? " on" : "")}>
    <button type="button" class="shop-section-open" disabled=${section.locked} aria-expanded=${open} onClick=${() => onOpen(section)}>
      <span>${section.done ? html`<span class="shop-done" aria-label=${t("shop.done")}>✓ </span>` : ""}${section.name}</span>
      <span class="small muted">${t("shop.section." + (section.section_type || "video"))} ${section.video_time}
        ${section.free_trial ? html` <span class="badge good">${t("shop.free_preview")}</span>` : ""}${section.locked ? " 🔒" : ""}</span>
    </button>
    ${section.done !== undefined && !section.locked && html`<label class="check shop-done-check">
      <input type="checkbox" checked=${section.done} onChange=${(e) => onDone(section, e.target.checked)} />${t("shop.mark_done")}</label>`}
  </li>`;
}

function Content({ content, error }) {
  if (error) return html`<p class="notice" role="alert">${errorText(error)}</p>`;
  if (!content) return null;
  return html`<div class="card shop-content" role="region" aria-label=${content.name}>
    <h2>${content.name}</h2>
    <a class="button primary" href=${content.content_url} target="_blank" rel="noopener noreferrer">${t("shop.open." + content.section_type)}</a>
    <p class="small muted">${t("shop.link_expires")}</p>
  </div>`;
}

function Learn({ params, query }) {
  const id = params[0];
  const state = useAsync(() => Promise.all([get(`/api/v1/courses/${id}`), get(`/api/v1/courses/${id}/chapters`)]), [id]);
  useTitle(state.data ? state.data[0].name : t("shop.my_courses"), "/me/courses");
  const [open, setOpen] = useState({ id: Number(query.section) || null, content: null, error: null });
  const [progress, setProgress] = useState(null);
  async function onOpen(section) {
    setOpen({ id: section.id, content: null, error: null });
    try {
      setOpen({ id: section.id, content: await get(`/api/v1/sections/${section.id}/content`), error: null });
    } catch (error) {
      setOpen({ id: section.id, content: null, error });
    }
  }
  async function onDone(section, done) {
    try {
      const answer = await api("PUT", `/api/v1/sections/${section.id}/progress`, { done });
      section.done = answer.done;
      setProgress(answer.progress);
    } catch (error) {
      toast(missingFeature("progress", error) ? t("shop.not_yet") : errorText(error), "warn");
    }
  }
  return html`<${Async} state=${state} ready=${([course, chapters]) => html`<section class="narrow">
    ${(progress || (course.my && course.my.progress)) && html`<div class="card"><${Progress} progress=${progress || course.my.progress} /></div>`}
    ${chapters.items.map((chapter) => html`<div class="card" key=${chapter.id}>
      <h2>${t("shop.chapter", { n: chapter.chapter })} ${chapter.name}</h2>
      <ul class="list">${chapter.sections.map((s) => html`<${Section} key=${s.id} section=${s} open=${open.id === s.id} onOpen=${onOpen} onDone=${onDone} />
        ${open.id === s.id && html`<${Content} content=${open.content} error=${open.error} />`}`)}</ul>
    </div>`)}
    <a class="button secondary block" href=${"#/course/" + id}>${t("shop.course_page")}</a>
  </section>`} />`;
}

function MyCourses() {
  useTitle(t("shop.my_courses"), "/me");
  const state = useAsync(() => get("/api/v1/shop/enrolments"));
  return html`<section class="narrow">
    <ul class="card list"><li><a class="list-link" href="#/shop/orders">${t("shop.orders")}</a></li>
      <li><a class="list-link" href="#/shop/coupons">${t("shop.coupons")}</a></li></ul>
    <${Async} state=${state} ready=${(data) =>
    data.items.length === 0
      ? html`<${Empty} text=${t("shop.no_courses")} /><a class="button primary block" href="#/courses">${t("shop.browse")}</a>`
      : html`<ul class="card list">${data.items.map((e) => {
          const status = e.status === "expired" ? "expired" : "valid";
          return html`<li key=${e.id} class="shop-enrolment"><a href=${(status === "valid" ? "#/learn/" : "#/course/") + e.course_id}>
            <${Picture} picture=${e.picture || null} alt=${e.course_name || ""} className="acct-thumb" sizes="72px" />
            <span class="shop-grow"><strong>${e.course_name || t("shop.course")}</strong><br />
              <span class=${"badge " + (status === "valid" ? "good" : "bad")}>${t("shop.enrolment." + status)}</span>
              <span class="small muted"> ${t("shop.valid_to", { date: formatDate(e.valid_to_ms ?? Date.parse(e.valid_to)) })}</span>
              ${e.progress && html`<${Progress} progress=${e.progress} />`}</span></a></li>`;
        })}</ul>`} /></section>`;
}

export const routes = [
  { pattern: /^\/learn\/(\d{1,16})$/, view: signedInOnly(Learn) },
  { pattern: /^\/me\/courses$/, view: signedInOnly(MyCourses) },
];
