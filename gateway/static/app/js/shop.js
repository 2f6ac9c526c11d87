// The course shop (issue 21): the catalogue with search and filters, and the course page
// (shop-course.js). The cart and checkout (shop-buy.js), orders and coupons (shop-orders.js) and
// learning (shop-learn.js) are groups of their own: each loads on its first visit (main.js).
import { html, useState } from "./html.js";
import { t } from "./i18n.js";
import { get } from "./api.js";
import { navigate } from "./router.js";
import { useTitle } from "./shell.js";
import { useAsync, Async, Empty, Sheet, Field } from "./ui.js";
import { parseYuan, yuanInput } from "./money.js";
import { CourseCard, level, courseType } from "./shop-common.js";
import { routes as courseRoutes } from "./shop-course.js";

const LEVELS = ["beginner", "intermediate", "advanced"];
const TYPES = ["paid", "vip", "degree"];
const SORTS = ["order", "price", "newest"];
const PAGE_SIZE = 20;

/** The catalogue's state is its URL (#/courses?cat=&level=&…): shareable, and back works. */
function go(query, patch) {
  const next = { ...query, ...patch };
  const search = new URLSearchParams(Object.entries(next).filter(([, value]) => value !== "" && value != null));
  navigate("/courses" + (search.toString() ? "?" + search : ""), { replace: true });
}

function apiQuery(query, pageNo) {
  const search = new URLSearchParams({ page: pageNo, page_size: PAGE_SIZE });
  const map = { cat: "category", level: "level", type: "course_type", min: "min_price", max: "max_price", q: "q", sort: "sort" };
  for (const [from, to] of Object.entries(map)) if (query[from]) search.set(to, query[from]);
  return "/api/v1/courses?" + search;
}

function CategoryChips({ query, categories }) {
  const tops = categories.filter((c) => c.parent_id == null);
  const chosen = categories.find((c) => String(c.id) === query.cat);
  const top = chosen && chosen.parent_id != null ? categories.find((c) => c.id === chosen.parent_id) : chosen;
  const subs = top ? categories.filter((c) => c.parent_id === top.id) : [];
  const chip = (id, name, on) => html`<button key=${id} type="button" class=${on ? "on" : ""} aria-pressed=${on}
    onClick=${() => go(query, { cat: id, page: "" })}>${name}</button>`;
  return html`<div class="chips" role="group" aria-label=${t("shop.categories")}>
      ${chip("", t("shop.all"), !top)}${tops.map((c) => chip(String(c.id), c.name, top && top.id === c.id))}
    </div>
    ${subs.length > 0 && html`<div class="chips shop-subs" role="group" aria-label=${t("shop.subcategories")}>
      ${chip(String(top.id), t("shop.all"), chosen === top)}${subs.map((c) => chip(String(c.id), c.name, chosen && chosen.id === c.id))}
    </div>`}`;
}

function Filters({ query, done }) {
  const [min, setMin] = useState(query.min ? yuanInput(Number(query.min)) : "");
  const [max, setMax] = useState(query.max ? yuanInput(Number(query.max)) : "");
  const [errors, setErrors] = useState({});
  const radio = (name, value, label) => html`<label key=${value} class=${"acct-choice" + ((query[name] || "") === value ? " on" : "")}>
    <input type="radio" name=${"shop-" + name} checked=${(query[name] || "") === value} onChange=${() => go(query, { [name]: value })} />${label}</label>`;
  function apply(event) {
    event.preventDefault();
    const low = min.trim() ? parseYuan(min) : { fen: "" };
    const high = max.trim() ? parseYuan(max) : { fen: "" };
    const found = {};
    if (low.error) found.min = t("money." + low.error);
    if (high.error) found.max = t("money." + high.error);
    if (!found.min && !found.max && low.fen !== "" && high.fen !== "" && low.fen > high.fen) found.max = t("shop.price_order");
    setErrors(found);
    if (Object.keys(found).length) return;
    go(query, { min: low.fen, max: high.fen });
    if (done) done();
  }
  return html`<form class="form shop-filter-form" onSubmit=${apply} novalidate>
    <fieldset><legend>${t("shop.level")}</legend>${radio("level", "", t("shop.all"))}${LEVELS.map((v) => radio("level", v, level(v)))}</fieldset>
    <fieldset><legend>${t("shop.type")}</legend>${radio("type", "", t("shop.all"))}${TYPES.map((v) => radio("type", v, courseType(v)))}</fieldset>
    <fieldset><legend>${t("shop.price")}</legend><div class="shop-range">
      <${Field} id="shop-min" label=${t("shop.min_price")} error=${errors.min}>
        <input id="shop-min" inputmode="decimal" value=${min} onInput=${(e) => setMin(e.target.value)} /><//>
      <${Field} id="shop-max" label=${t("shop.max_price")} error=${errors.max}>
        <input id="shop-max" inputmode="decimal" value=${max} onInput=${(e) => setMax(e.target.value)} /><//>
    </div></fieldset>
    <div class="actions">
      <button class="button secondary" type="button" onClick=${() => (go(query, { level: "", type: "", min: "", max: "" }), done && done())}>${t("shop.clear")}</button>
      <button class="button primary" type="submit">${t("shop.apply")}</button>
    </div>
  </form>`;
}

function Catalogue({ query }) {
  useTitle(t("shop.title"));
  const [sheet, setSheet] = useState(false);
  const [text, setText] = useState(query.q || "");
  const categories = useAsync(() => get("/api/v1/shop/categories").then((a) => a.items), []);
  const key = JSON.stringify(query);
  const [paging, setPaging] = useState({ key, pages: 1 });
  const pages = paging.key === key ? paging.pages : 1; // a new search starts at page 1
  const list = useAsync(async () => {
    const answers = await Promise.all(Array.from({ length: pages }, (_, i) => get(apiQuery(query, i + 1))));
    return { items: answers.flatMap((a) => a.items), total: answers[0].total };
  }, [key, pages]);
  const filtered = ["level", "type", "min", "max"].filter((name) => query[name]).length;
  return html`<section class="shop-catalogue">
    <form class="shop-search" role="search" onSubmit=${(e) => (e.preventDefault(), go(query, { q: text.trim() }))}>
      <label class="visually-hidden" for="shop-q">${t("shop.search")}</label>
      <input id="shop-q" class="input" type="search" maxlength="64" placeholder=${t("shop.search")} value=${text} onInput=${(e) => setText(e.target.value)} />
      <button class="button primary" type="submit">${t("shop.search_go")}</button>
    </form>
    ${categories.data && html`<${CategoryChips} query=${query} categories=${categories.data} />`}
    <div class="spread shop-tools">
      <button class="button secondary shop-filter-button" type="button" onClick=${() => setSheet(true)}>
        ${t("shop.filters")}${filtered ? ` (${filtered})` : ""}</button>
      <label class="row"><span>${t("shop.sort")}</span>
        <select class="input shop-sort" value=${query.sort || "order"} onChange=${(e) => go(query, { sort: e.target.value === "order" ? "" : e.target.value })}>
          ${SORTS.map((s) => html`<option key=${s} value=${s}>${t("shop.sort." + s)}</option>`)}
        </select></label>
      <a class="button secondary" href="#/cart">${t("shop.cart")}</a>
    </div>
    <div class="shop-browse">
      <aside class="card shop-side" aria-label=${t("shop.filters")}><${Filters} query=${query} key=${key} /></aside>
      <${Async} state=${list} ready=${(data) =>
        data.items.length === 0
          ? html`<${Empty} text=${t("shop.none")} />`
          : html`<div><p class="muted small" role="status">${t("shop.count", { n: data.total })}</p>
              <ul class="shop-grid">${data.items.map((c) => html`<${CourseCard} key=${c.id} course=${c} />`)}</ul>
              ${data.items.length < data.total && html`<button class="button secondary block" type="button" onClick=${() => setPaging({ key, pages: pages + 1 })}>${t("shop.more")}</button>`}
            </div>`} />
    </div>
    ${sheet && html`<${Sheet} title=${t("shop.filters")} onClose=${() => setSheet(false)}><${Filters} query=${query} done=${() => setSheet(false)} /><//>`}
  </section>`;
}

export const routes = [{ pattern: /^\/courses$/, view: Catalogue }, ...courseRoutes];
