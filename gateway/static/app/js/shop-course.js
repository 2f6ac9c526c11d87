// A course's page: what it teaches, its outline, teachers, FAQs, price plans, reviews and
// recommendations; add to cart or buy now.
import { html, useState } from "./html.js";
import { t } from "./i18n.js";
import { useStore } from "./store.js";
import { api, get, post, auth } from "./api.js";
import { navigate, here } from "./router.js";
import { useTitle } from "./shell.js";
import { useAsync, Async, Money, Picture, Field, toast, errorText } from "./ui.js";
import { formatDate } from "./time.js";
import { days, level, courseType, optional, missingFeature, Rating, Progress } from "./shop-common.js";

const SCORES = ["teacher", "content", "clarity"];

function Text({ title, text }) {
  return text ? html`<div class="card"><h2>${title}</h2><p class="shop-text">${text}</p></div>` : null;
}

export function Outline({ chapters, courseId, learning }) {
  return html`<ol class="list shop-outline">${chapters.map(
    (chapter) => html`<li key=${chapter.id}><h3>${t("shop.chapter", { n: chapter.chapter })} ${chapter.name}</h3>
      <ul class="list">${chapter.sections.map((s) => {
        const open = learning || s.free_trial || s.locked === false;
        const name = html`<span class="shop-section-name">${s.done ? html`<span class="shop-done" aria-label=${t("shop.done")}>✓ </span>` : ""}${s.name}</span>`;
        return html`<li key=${s.id} class="shop-section">
          ${open ? html`<a href=${`#/learn/${courseId}?section=${s.id}`}>${name}</a>` : name}
          <span class="muted small shop-section-meta">${s.video_time}
            ${s.free_trial ? html`<span class="badge good">${t("shop.free_preview")}</span>` : ""}
            ${s.locked ? html`<span aria-label=${t("shop.locked")} title=${t("shop.locked")}>🔒</span>` : ""}</span>
        </li>`;
      })}</ul></li>`,
  )}</ol>`;
}

function Buy({ course }) {
  const token = useStore(auth, (state) => state.token);
  const [policy, setPolicy] = useState(course.policies.length ? course.policies[0].id : null);
  const [busy, setBusy] = useState(false);
  async function act(now) {
    if (!token) return navigate("/signin?next=" + encodeURIComponent(here()));
    setBusy(true);
    try {
      await post("/api/v1/cart", { course_id: course.id, price_policy_id: policy });
      if (now) {
        await post("/api/v1/checkout", { course_ids: [course.id] });
        return navigate("/checkout");
      }
      toast(t("shop.added"), "good");
    } catch (error) {
      toast(errorText(error), "warn");
    } finally {
      setBusy(false);
    }
  }
  if (!course.policies.length) return html`<p class="muted">${t("shop.no_price")}</p>`;
  return html`<fieldset class="shop-plans"><legend>${t("shop.plans")}</legend>
      ${course.policies.map((p) => html`<label key=${p.id} class=${"acct-choice" + (p.id === policy ? " on" : "")}>
        <input type="radio" name="shop-plan" checked=${p.id === policy} onChange=${() => setPolicy(p.id)} />
        <span class="spread shop-grow"><span>${days(p.valid_days)}</span><${Money} fen=${p.price} className="money strong" /></span></label>`)}
    </fieldset>
    ${course.status !== "online"
      ? html`<p class="notice">${t("shop.not_on_sale")}</p>`
      : html`<div class="row two">
          <button class="button secondary" type="button" disabled=${busy} onClick=${() => act(false)}>${t("shop.add_to_cart")}</button>
          <button class="button primary" type="button" disabled=${busy} onClick=${() => act(true)}>${t("shop.buy_now")}</button>
        </div>`}`;
}

// Collect: PUT is idempotent, so no need to ask first.
function Collect({ id }) {
  const [on, setOn] = useState(false);
  const go = () => api(on ? "DELETE" : "PUT", `/api/v1/me/collections/course/${id}`).then((r) => setOn(r.collected), (e) => toast(errorText(e), "warn"));
  return html`<button class="button secondary block" aria-pressed=${on} onClick=${go}>${on ? "★" : "☆"} ${t("shop.collect")}</button>`;
}

function MyCourse({ my, courseId }) {
  if (!my || !my.enrolment) return null;
  const e = my.enrolment;
  const p = my.progress || { done: 0, total: 0 };
  return html`<div class="card shop-mine">
    <p><span class=${"badge " + (e.status === "valid" ? "good" : "bad")}>${t("shop.enrolment." + e.status)}</span>
      ${" "}${t("shop.valid_to", { date: formatDate(e.valid_to_ms) })}</p>
    <${Progress} progress=${p} />
    ${e.status === "valid" && html`<a class="button primary block" href=${"#/learn/" + courseId}>${t("shop.study")}</a>`}
  </div>`;
}


function ReviewForm({ courseId, review, done }) {
  const [scores, setScores] = useState(review ? review.scores : { teacher: 5, content: 5, clarity: 5 });
  const [text, setText] = useState(review ? review.text : "");
  const [failure, setFailure] = useState(null);
  async function save(event) {
    event.preventDefault();
    try {
      const body = { scores, text: text.trim() };
      if (review) await api("PATCH", `/api/v1/reviews/${review.id}`, body);
      else await post(`/api/v1/courses/${courseId}/reviews`, body);
      toast(t("shop.review_saved"), "good");
      done();
    } catch (error) {
      setFailure(error);
    }
  }
  return html`<form class="form" onSubmit=${save} novalidate>
    <div class="shop-scores">${SCORES.map((s) => html`<${Field} key=${s} id=${"shop-score-" + s} label=${t("shop.score." + s)}>
      <select id=${"shop-score-" + s} value=${scores[s]} onChange=${(e) => setScores({ ...scores, [s]: Number(e.target.value) })}>
        ${[5, 4, 3, 2, 1].map((n) => html`<option key=${n} value=${n}>${"★".repeat(n)} ${n}</option>`)}</select><//>`)}</div>
    <${Field} id="shop-review-text" label=${t("shop.review_text")} error=${failure && errorText(failure)}>
      <textarea id="shop-review-text" rows="4" maxlength="1024" value=${text} onInput=${(e) => setText(e.target.value)}></textarea><//>
    <div class="actions"><button class="button secondary" type="button" onClick=${done}>${t("common.cancel")}</button>
      <button class="button primary" type="submit">${t("common.save")}</button></div>
  </form>`;
}

function Review({ review, onVote, onEdit }) {
  const vote = (kind) => html`<button type="button" class=${"button secondary shop-vote" + (review.my_vote === kind ? " on" : "")}
    aria-pressed=${review.my_vote === kind} onClick=${() => onVote(review, kind)}>${t("shop.vote." + kind)} ${review[kind]}</button>`;
  // The text is rendered as text (never as HTML): what a student typed is shown as typed.
  return html`<li>
    <p class="spread"><strong>${review.author}</strong><span class="muted small">${formatDate(review.created_at_ms)}</span></p>
    <p class="small">${review.recommended ? html`<span class="badge good">${t("shop.recommended")}</span> ` : ""}
      ${SCORES.map((s) => `${t("shop.score." + s)} ${review.scores[s]}`).join(" · ")}</p>
    <p class="shop-text">${review.text}</p>
    <div class="row">${vote("agree")}${vote("disagree")}
      ${review.mine && html`<button class="button secondary" type="button" onClick=${() => onEdit(review)}>${t("common.edit")}</button>`}</div>
  </li>`;
}

function Reviews({ course }) {
  const token = useStore(auth, (state) => state.token);
  const [editing, setEditing] = useState(null); // null, "new" or a review
  const state = useAsync(() => optional("reviews", () => get(`/api/v1/courses/${course.id}/reviews?page=1&page_size=20`)), [token]);
  if (state.data === null && !state.error && !state.loading) return null; // not offered here yet
  async function onVote(review, vote) {
    if (!token) return navigate("/signin?next=" + encodeURIComponent(here()));
    try {
      await post(`/api/v1/reviews/${review.id}/vote`, { vote });
      state.reload();
    } catch (error) {
      if (!missingFeature("votes", error)) toast(errorText(error), "warn");
    }
  }
  const enrolled = course.my && course.my.enrolment;
  return html`<div class="card" id="reviews"><h2>${t("shop.reviews")}</h2>
    <${Async} state=${state} ready=${(data) => {
      const a = data.averages || {};
      const mine = data.items.find((r) => r.mine);
      return html`${a.count > 0
          ? html`<p class="shop-averages"><${Rating} average=${a.overall} count=${a.count} />
              ${SCORES.map((s) => html`<span key=${s} class="small muted">${t("shop.score." + s)} ${a[s]}</span>`)}</p>`
          : html`<p class="muted">${t("shop.no_reviews")}</p>`}
        ${editing
          ? html`<${ReviewForm} courseId=${course.id} review=${editing === "new" ? null : editing} done=${() => (setEditing(null), state.reload())} />`
          : enrolled && !mine && html`<button class="button secondary" type="button" onClick=${() => setEditing("new")}>${t("shop.write_review")}</button>`}
        <ul class="list">${data.items.map((r) => html`<${Review} key=${r.id} review=${r} onVote=${onVote} onEdit=${setEditing} />`)}</ul>`;
    }} />
  </div>`;
}

function CoursePage({ params }) {
  const token = useStore(auth, (state) => state.token);
  const id = params[0];
  const state = useAsync(() => Promise.all([get(`/api/v1/courses/${id}`), get(`/api/v1/courses/${id}/chapters`)]), [id, token]);
  useTitle(state.data ? state.data[0].name : t("shop.course"), "/courses");
  return html`<${Async} state=${state} ready=${([course, chapters]) => {
    const d = course.detail || {};
    return html`<div class="shop-course">
      <div class="shop-main">
        <div class="card">
          <${Picture} picture=${course.image || null} alt=${course.name} className="shop-hero" eager=${true} />
          <h2 class="lot-heading">${course.name}</h2>
          ${d.slogan && html`<p class="strong">${d.slogan}</p>`}
          <p class="muted small">${[level(course.level), courseType(course.course_type), d.hours != null && t("shop.hours", { n: d.hours })].filter(Boolean).join(" · ")}</p>
          <p class="shop-text">${course.brief}</p>
        </div>
        <${Text} title=${t("shop.why")} text=${d.why_study} />
        <${Text} title=${t("shop.what")} text=${d.what_to_study_brief} />
        <${Text} title=${t("shop.career")} text=${d.career_improvement} />
        <${Text} title=${t("shop.prerequisite")} text=${d.prerequisite} />
        ${chapters.items.length > 0 && html`<div class="card"><h2>${t("shop.outline")}</h2><${Outline} chapters=${chapters.items} courseId=${course.id} /></div>`}
        ${d.teachers && d.teachers.length > 0 && html`<div class="card"><h2>${t("shop.teachers")}</h2><ul class="list">${d.teachers.map(
          (teacher) => html`<li key=${teacher.id}><strong>${teacher.name}</strong> <span class="muted">${teacher.title}</span><p class="shop-text small">${teacher.brief}</p></li>`,
        )}</ul></div>`}
        ${course.faqs.length > 0 && html`<div class="card"><h2>${t("shop.faqs")}</h2>${course.faqs.map(
          (faq) => html`<details key=${faq.id} class="shop-faq"><summary>${faq.question}</summary><p class="shop-text">${faq.answer}</p></details>`,
        )}</div>`}
        <${Reviews} course=${course} />
      </div>
      <div class="shop-aside">
        ${course.degree_course_id && html`<div class="card"><a class="button primary block" href=${"#/degree/" + course.degree_course_id}>${t("shop.degree_part")}</a></div>`}
        <${MyCourse} my=${course.my} courseId=${course.id} />
        <div class="card"><${Buy} course=${course} /><${Collect} id=${course.id} /></div>
        ${d.recommended && d.recommended.length > 0 && html`<div class="card"><h2>${t("shop.recommend")}</h2><ul class="list">${d.recommended.map(
          (c) => html`<li key=${c.id}><a class="list-link" href=${"#/course/" + c.id}>${c.name}</a></li>`,
        )}</ul></div>`}
      </div>
    </div>`;
  }} />`;
}

export const routes = [{ pattern: /^\/course\/(\d{1,16})$/, view: CoursePage }];
