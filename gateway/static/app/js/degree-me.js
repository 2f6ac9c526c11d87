// My degrees (issue 22): the list, the registration form after payment, and one degree: status,
// mentor, validity, scholarship, modules with their homework (open the next module here).
import { html, useState } from "./html.js";
import { t } from "./i18n.js";
import { api, get, post } from "./api.js";
import { useTitle } from "./shell.js";
import { useAsync, Async, Empty, Field, toast, errorText } from "./ui.js";
import { formatDate, parseIso } from "./time.js";
import { signedInOnly } from "./account-common.js";
import { yuan, today, Badge, useDegreeFrame } from "./degree-common.js";

const SALARY_BANDS = ["<5k", "5-10k", "10-15k", "15-20k", "20-30k", ">30k"];
const ACTIVE = ["not_started", "studying"];
const date = (doc, name) => formatDate(doc[name + "_ms"] ?? parseIso(doc[name]));
const day = (iso) => String(iso || "").slice(0, 10); // validity is in UTC days (docs/degree.md)
const experience = (n) => (n === 0 ? t("deg.exp_new") : n === 11 ? t("deg.exp_more") : t("deg.years", { n }));

function Progress({ progress }) {
  const { done = 0, total = 0 } = progress || {};
  const label = t("deg.progress", { done, total });
  return html`<div class="deg-progress"><progress max=${total || 1} value=${done} aria-label=${label}></progress><span class="small muted">${label}</span></div>`;
}

function MyDegrees() {
  useTitle(t("deg.mine"), "/me");
  const state = useAsync(() => get("/api/v1/me/degrees"));
  return html`<section class="narrow"><${Async} state=${state} ready=${(data) =>
    data.items.length === 0
      ? html`<${Empty} text=${t("deg.none")} /><a class="button primary block" href="#/courses?type=degree">${t("deg.browse")}</a>`
      : html`<ul class="card list">${data.items.map((e) => html`<li key=${e.id}><a class="deg-item" href=${"#/me/degree/" + e.degree_course_id}>
          <strong>${e.degree_name}</strong>
          <span class="row"><${Badge} group="status" value=${e.status} />${!e.registered && e.status !== "refunded" && html`<span class="badge warn">${t("deg.to_register")}</span>`}</span>
          <${Progress} progress=${e.progress} />
          <span class="small muted">${t("deg.earned_of", { earned: yuan(e.money.scholarship_awarded), total: yuan(e.money.total_scholarship) })}</span>
        </a></li>`)}</ul>`} /></section>`;
}

// -- registration (once, after payment) -------------------------------------------------------------
function Registration({ degree, done }) {
  const mentors = useAsync(() => get("/api/v1/mentors").then((a) => a.items, () => []));
  const [form, setForm] = useState({ company: "", position: "", salary_band: "", experience: "", study_hours: "2",
    why_course: "", why_us: "", expectations: "", open_first_module: true, preferred_mentor_id: "" });
  const [errors, setErrors] = useState({});
  const [failure, setFailure] = useState(null);
  const [busy, setBusy] = useState(false);
  const set = (name) => (event) => setForm({ ...form, [name]: event.target.type === "checkbox" ? event.target.checked : event.target.value });
  async function submit(event) {
    event.preventDefault();
    const found = {};
    for (const name of ["company", "position"]) if (!form[name].trim()) found[name] = t("deg.required");
    for (const name of ["salary_band", "experience"]) if (form[name] === "") found[name] = t("deg.choose");
    setErrors(found);
    if (Object.keys(found).length) return;
    setBusy(true);
    setFailure(null);
    try {
      await api("PUT", `/api/v1/me/degrees/${degree.degree_course_id}/registration`, {
        ...form, company: form.company.trim(), position: form.position.trim(),
        experience: Number(form.experience), study_hours: Number(form.study_hours),
        preferred_mentor_id: form.preferred_mentor_id ? Number(form.preferred_mentor_id) : null,
      });
      toast(t("deg.registered"), "good");
      done();
    } catch (error) {
      setFailure(error);
      setBusy(false);
    }
  }
  const input = (name, max) => html`<${Field} id=${"deg-" + name} label=${t("deg.f." + name)} error=${errors[name]}>
    <input id=${"deg-" + name} maxlength=${max} value=${form[name]} onInput=${set(name)} /><//>`;
  const area = (name) => html`<${Field} id=${"deg-" + name} label=${t("deg.f." + name)}>
    <textarea id=${"deg-" + name} rows="3" maxlength="1024" value=${form[name]} onInput=${set(name)}></textarea><//>`;
  return html`<form class="card form" onSubmit=${submit} novalidate>
    <h2>${t("deg.register_title")}</h2><p class="muted small">${t("deg.register_note")}</p>
    ${input("company", 64)}${input("position", 64)}
    <${Field} id="deg-salary_band" label=${t("deg.f.salary_band")} error=${errors.salary_band}>
      <select id="deg-salary_band" value=${form.salary_band} onChange=${set("salary_band")}><option value="">${t("deg.choose")}</option>
        ${SALARY_BANDS.map((b) => html`<option key=${b} value=${b}>${t("deg.salary." + b)}</option>`)}</select><//>
    <${Field} id="deg-experience" label=${t("deg.f.experience")} error=${errors.experience}>
      <select id="deg-experience" value=${form.experience} onChange=${set("experience")}><option value="">${t("deg.choose")}</option>
        ${Array.from({ length: 12 }, (_, n) => html`<option key=${n} value=${n}>${experience(n)}</option>`)}</select><//>
    <${Field} id="deg-study_hours" label=${t("deg.f.study_hours")}>
      <select id="deg-study_hours" value=${form.study_hours} onChange=${set("study_hours")}>
        ${Array.from({ length: 16 }, (_, i) => html`<option key=${i} value=${i + 1}>${t("deg.hours_day", { n: i + 1 })}</option>`)}</select><//>
    ${area("why_course")}${area("why_us")}${area("expectations")}
    <${Field} id="deg-mentor" label=${t("deg.f.mentor")}>
      <select id="deg-mentor" value=${form.preferred_mentor_id} onChange=${set("preferred_mentor_id")}><option value="">${t("deg.no_preference")}</option>
        ${(mentors.data || []).map((m) => html`<option key=${m.id} value=${m.id}>${m.name}</option>`)}</select><//>
    <label class="check"><input type="checkbox" checked=${form.open_first_module} onChange=${set("open_first_module")} />${t("deg.f.open_first")}</label>
    ${failure && html`<p class="form-error" role="alert">${errorText(failure)}</p>`}
    <button class="button primary block" type="submit" disabled=${busy}>${t("deg.register")}</button>
  </form>`;
}

// -- one degree ----------------------------------------------------------------------------------------
function Homework({ degreeId, hw, open }) {
  const r = hw.record;
  const overdue = open && hw.recommended_date && hw.recommended_date < today() && (!r || (r.status !== "passed" && !r.submit_count) || r.reward_status === "missed");
  return html`<li class="deg-hw"><a class="deg-item" href=${`#/me/degree/${degreeId}/homework/${hw.id}`}>
    <span class="spread"><strong>${hw.title}</strong><span class="badge">${t("deg.kind." + hw.kind)}</span></span>
    <span class="small muted">${t("deg.chapter", { n: hw.chapter })}${hw.recommended_date ? " · " + t("deg.due", { date: hw.recommended_date }) : ""}
      ${hw.scholarship_value > 0 ? " · " + t("deg.worth", { amount: yuan(hw.scholarship_value) }) : ""}</span>
    <span class="row">${overdue && html`<span class="badge bad deg-overdue">${t("deg.overdue")}</span>`}
      ${r ? html`${r.submit_count > 0 && html`<${Badge} group="record" value=${r.status} />`}${r.grade && html`<span class="badge">${r.grade}</span>`}
        <${Badge} group="reward" value=${r.reward_status} />` : html`<span class="small muted">${t("deg.not_handed_in")}</span>`}</span>
  </a></li>`;
}

function Module({ degree, module, n, next, onOpen, busy }) {
  const open = module.status !== "not_opened";
  return html`<li class="card deg-module">
    <p class="spread"><strong>${t("deg.module_n", { n })} · ${module.name}</strong><${Badge} group="module" value=${module.status} /></p>
    ${module.opened_at && html`<p class="small muted">${t("deg.opened_on", { date: date(module, "opened_at") })}${module.done_at ? " · " + t("deg.done_on", { date: date(module, "done_at") }) : ""}</p>`}
    ${next && html`<button class="button primary block" type="button" disabled=${busy} onClick=${() => onOpen(module)}>${t("deg.open_module")}</button>`}
    ${open && module.homework.length > 0 && html`<ul class="list">${module.homework.map((hw) => html`<${Homework} key=${hw.id} degreeId=${degree.degree_course_id} hw=${hw} open=${open && module.status !== "done"} />`)}</ul>`}
  </li>`;
}

function Overview({ degree, reload }) {
  const [busy, setBusy] = useState(false);
  const [failure, setFailure] = useState(null);
  const m = degree.money;
  const nextModule = ACTIVE.includes(degree.status) && degree.modules.find((x) => x.status === "not_opened");
  async function onOpen(module) {
    setBusy(true);
    setFailure(null);
    try {
      await post(`/api/v1/me/degrees/${degree.degree_course_id}/modules/${module.module_id}/open`);
      toast(t("deg.module_opened"), "good");
      reload();
    } catch (error) {
      setFailure(error);
    } finally {
      setBusy(false);
    }
  }
  return html`<div class="deg-wide">
    <div class="card">
      <p class="spread"><${Badge} group="status" value=${degree.status} /><${Progress} progress=${degree.progress} /></p>
      <dl class="deg-facts">
        <dt>${t("deg.mentor")}</dt><dd>${degree.mentor ? degree.mentor.name : t("deg.mentor_pending")}</dd>
        <dt>${t("deg.validity")}</dt><dd>${degree.valid_from ? `${day(degree.valid_from)} – ${day(degree.valid_to)}` : t("deg.validity_pending")}</dd>
      </dl>
      <div class="deg-money">
        <p><span class="small muted">${t("deg.m.earned")}</span><strong class="money">${yuan(m.scholarship_awarded)}</strong></p>
        <p><span class="small muted">${t("deg.m.left")}</span><strong class="money">${yuan(m.scholarship_left)}</strong></p>
        <p><span class="small muted">${t("deg.m.graduation")}</span><strong class="money">${yuan(m.graduation_award)}</strong></p>
      </div>
    </div>
    ${failure && html`<p class="form-error" role="alert">${errorText(failure)}</p>`}
    <ol class="list deg-modules">${degree.modules.map((module, i) => html`<${Module} key=${module.module_id} degree=${degree} module=${module} n=${i + 1}
      next=${module === nextModule} onOpen=${onOpen} busy=${busy} />`)}</ol>
    <a class="button secondary block" href=${"#/degree/" + degree.degree_course_id}>${t("deg.page_and_reviews")}</a>
  </div>`;
}

function OneDegree({ params }) {
  const id = params[0];
  const frame = useDegreeFrame((f) => String(f.degree_course_id) === id);
  const state = useAsync(() => get(`/api/v1/me/degrees/${id}`), [id, frame]);
  useTitle(state.data ? state.data.degree_name : t("deg.mine"), "/me/degrees");
  return html`<${Async} state=${state} ready=${(degree) =>
    !degree.registered && degree.status !== "refunded"
      ? html`<section class="narrow"><${Registration} degree=${degree} done=${state.reload} /></section>`
      : html`<${Overview} degree=${degree} reload=${state.reload} />`} />`;
}

export const routes = [
  { pattern: /^\/me\/degrees$/, view: signedInOnly(MyDegrees) },
  { pattern: /^\/me\/degree\/(\d{1,16})$/, view: signedInOnly(OneDegree) },
];
