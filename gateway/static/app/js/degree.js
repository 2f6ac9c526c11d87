// A degree course's page (issue 22): what it is, its scholarship and tiers, modules, teachers,
// FAQs and reviews; buy through the shop's cart and checkout, or go to my degree once bought.
import { html, useState } from "./html.js";
import { t } from "./i18n.js";
import { useStore } from "./store.js";
import { get, post, auth } from "./api.js";
import { navigate, here } from "./router.js";
import { useTitle } from "./shell.js";
import { useAsync, Async, Money, Picture, Field, toast, errorText } from "./ui.js";
import { formatDate } from "./time.js";
import { yuan, optional, Badge } from "./degree-common.js";

const SCORES = ["teacher", "content", "clarity"];
const MAY_REVIEW = ["studying", "suspended", "graduated", "timed_out"];

function Text({ title, text }) {
  return text ? html`<div class="card"><h2>${title}</h2><p class="deg-text">${text}</p></div>` : null;
}

function Buy({ degree }) {
  const token = useStore(auth, (state) => state.token);
  const [policy, setPolicy] = useState(degree.policies.length ? degree.policies[0].id : null);
  const [busy, setBusy] = useState(false);
  async function act(now) {
    if (!token) return navigate("/signin?next=" + encodeURIComponent(here()));
    setBusy(true);
    try {
      await post("/api/v1/cart", { degree_course_id: degree.id, price_policy_id: policy });
      if (now) {
        await post("/api/v1/checkout", { degree_course_ids: [degree.id] });
        return navigate("/checkout");
      }
      toast(t("deg.added"), "good");
    } catch (error) {
      toast(errorText(error), "warn");
    } finally {
      setBusy(false);
    }
  }
  if (!degree.policies.length) return html`<p class="muted">${t("deg.no_price")}</p>`;
  return html`<fieldset class="deg-plans"><legend>${t("deg.plans")}</legend>
      ${degree.policies.map((p) => html`<label key=${p.id} class=${"acct-choice" + (p.id === policy ? " on" : "")}>
        <input type="radio" name="deg-plan" checked=${p.id === policy} onChange=${() => setPolicy(p.id)} />
        <span class="spread deg-grow"><span>${t("deg.days", { n: p.valid_days })}</span><${Money} fen=${p.price} className="money strong" /></span></label>`)}
    </fieldset>
    ${degree.status === "offline"
      ? html`<p class="notice">${t("error.DEGREE_NOT_ON_SALE")}</p>`
      : html`<div class="row two">
          <button class="button secondary" type="button" disabled=${busy} onClick=${() => act(false)}>${t("deg.add_to_cart")}</button>
          <button class="button primary" type="button" disabled=${busy} onClick=${() => act(true)}>${t("deg.buy_now")}</button>
        </div>`}`;
}

function Mine({ degree }) {
  const e = degree.my.enrolment;
  return html`<div class="card"><p><${Badge} group="status" value=${e.status} /></p>
    ${e.status === "refunded"
      ? html`<${Buy} degree=${degree} />`
      : html`<a class="button primary block" href=${"#/me/degree/" + degree.id}>${t("deg.go_mine")}</a>`}</div>`;
}

function ReviewForm({ degree, done }) {
  const [scores, setScores] = useState({ teacher: 5, content: 5, clarity: 5 });
  const [moduleId, setModuleId] = useState("");
  const [text, setText] = useState("");
  const [failure, setFailure] = useState(null);
  async function save(event) {
    event.preventDefault();
    try {
      await post(`/api/v1/degree-courses/${degree.id}/reviews`, { module_id: moduleId ? Number(moduleId) : null, scores, text: text.trim() });
      toast(t("deg.review_saved"), "good");
      done();
    } catch (error) {
      setFailure(error);
    }
  }
  return html`<form class="form" onSubmit=${save} novalidate>
    <${Field} id="deg-review-target" label=${t("deg.review_of")}>
      <select id="deg-review-target" value=${moduleId} onChange=${(e) => setModuleId(e.target.value)}>
        <option value="">${t("deg.whole_degree")}</option>
        ${degree.modules.map((m) => html`<option key=${m.id} value=${m.id}>${m.name}</option>`)}</select><//>
    <div class="deg-scores">${SCORES.map((s) => html`<${Field} key=${s} id=${"deg-score-" + s} label=${t("deg.score." + s)}>
      <select id=${"deg-score-" + s} value=${scores[s]} onChange=${(e) => setScores({ ...scores, [s]: Number(e.target.value) })}>
        ${[5, 4, 3, 2, 1].map((n) => html`<option key=${n} value=${n}>${"★".repeat(n)} ${n}</option>`)}</select><//>`)}</div>
    <${Field} id="deg-review-text" label=${t("deg.review_text")} error=${failure && errorText(failure)}>
      <textarea id="deg-review-text" rows="4" maxlength="1024" value=${text} onInput=${(e) => setText(e.target.value)}></textarea><//>
    <div class="row two"><button class="button secondary" type="button" onClick=${done}>${t("common.cancel")}</button>
      <button class="button primary" type="submit">${t("common.save")}</button></div>
  </form>`;
}

function Reviews({ degree }) {
  const token = useStore(auth, (state) => state.token);
  const [writing, setWriting] = useState(false);
  const state = useAsync(() => optional(() => get(`/api/v1/degree-courses/${degree.id}/reviews?page=1&page_size=20`)), [token]);
  if (state.data === null && !state.error && !state.loading) return null; // not offered here yet
  const e = degree.my && degree.my.enrolment;
  const names = Object.fromEntries(degree.modules.map((m) => [m.id, m.name]));
  return html`<div class="card" id="reviews"><h2>${t("deg.reviews")}</h2>
    <${Async} state=${state} ready=${(data) => {
      const a = data.averages || {};
      return html`${a.count > 0
          ? html`<p class="row"><span class="deg-rating">★ ${a.overall}</span><span class="muted">(${a.count})</span>
              ${SCORES.map((s) => a[s] != null && html`<span key=${s} class="small muted">${t("deg.score." + s)} ${a[s]}</span>`)}</p>`
          : html`<p class="muted">${t("deg.no_reviews")}</p>`}
        ${writing
          ? html`<${ReviewForm} degree=${degree} done=${() => (setWriting(false), state.reload())} />`
          : e && MAY_REVIEW.includes(e.status) && html`<button class="button secondary" type="button" onClick=${() => setWriting(true)}>${t("deg.write_review")}</button>`}
        <ul class="list">${data.items.map((r) => html`<li key=${r.id}>
          <p class="spread"><strong>${r.author}</strong><span class="muted small">${formatDate(r.created_at_ms)}</span></p>
          <p class="small">${r.module_id ? html`<span class="badge">${names[r.module_id] || t("deg.module")}</span> ` : ""}
            ${SCORES.map((s) => `${t("deg.score." + s)} ${(r.scores || {})[s]}`).join(" · ")}</p>
          <p class="deg-text">${r.text}</p></li>`)}</ul>`;
    }} />
  </div>`;
}

function DegreePage({ params }) {
  const token = useStore(auth, (state) => state.token);
  const id = params[0];
  const state = useAsync(() => get(`/api/v1/degree-courses/${id}`), [id, token]);
  useTitle(state.data ? state.data.name : t("deg.degree"), "/courses");
  return html`<${Async} state=${state} ready=${(d) => html`<div class="deg-page">
    <div>
      <div class="card">
        <${Picture} picture=${d.image || null} alt=${d.name} className="deg-hero" eager=${true} />
        <h2 class="lot-heading">${d.name}</h2>
        <p class="muted small">${t("deg.period", { n: d.period_days })} · ${t("deg.n_modules", { n: d.modules.length })}</p>
        <p class="deg-text">${d.brief}</p>
      </div>
      <${Text} title=${t("deg.prerequisite")} text=${d.prerequisite} />
      <div class="card"><h2>${t("deg.scholarship")}</h2>
        <p>${t("deg.scholarship_total", { amount: yuan(d.total_scholarship) })}</p>
        ${(d.scholarships || []).length > 0 && html`<p class="muted small">${t("deg.tiers_note", { n: d.period_days })}</p>
          <table class="lines"><tbody>${[...d.scholarships].sort((a, b) => a.time_percent - b.time_percent).map((s) => html`<tr key=${s.time_percent}>
            <th scope="row">${t("deg.tier", { p: s.time_percent })}</th><td class="money">${yuan(s.value)}</td></tr>`)}</tbody></table>`}
      </div>
      <div class="card"><h2>${t("deg.modules")}</h2><ol class="list">${d.modules.map((m, i) => html`<li key=${m.id}>
        <a class="list-link" href=${"#/course/" + m.id}><span>${t("deg.module_n", { n: i + 1 })} · ${m.name}</span></a></li>`)}</ol></div>
      ${d.teachers && d.teachers.length > 0 && html`<div class="card"><h2>${t("deg.teachers")}</h2><ul class="list">${d.teachers.map(
        (teacher) => html`<li key=${teacher.id}><strong>${teacher.name}</strong> <span class="muted">${teacher.title}</span><p class="deg-text small">${teacher.brief}</p></li>`,
      )}</ul></div>`}
      ${d.faqs && d.faqs.length > 0 && html`<div class="card"><h2>${t("deg.faqs")}</h2>${d.faqs.map(
        (faq) => html`<details key=${faq.id} class="deg-faq"><summary>${faq.question}</summary><p class="deg-text">${faq.answer}</p></details>`,
      )}</div>`}
      <${Reviews} degree=${d} />
    </div>
    <div class="deg-aside">
      ${d.my && d.my.enrolment ? html`<${Mine} degree=${d} />` : html`<div class="card"><${Buy} degree=${d} /></div>`}
    </div>
  </div>`} />`;
}

export const routes = [{ pattern: /^\/degree\/(\d{1,16})$/, view: DegreePage }];
