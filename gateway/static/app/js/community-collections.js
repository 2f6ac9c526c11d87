// My collections (issue 23): articles and courses, newest first; an offline article or a
// withdrawn course stays listed, marked unavailable.
import { html, useEffect } from "./html.js";
import { t } from "./i18n.js";
import { api, auth } from "./api.js";
import { useStore } from "./store.js";
import { useTitle } from "./shell.js";
import { API, when, usePaged, PageEnd, Tabs, needUser, showError } from "./community-common.js";

function CollectionRow({ item, onRemoved }) {
  const href = item.kind === "article" ? "#/community/article/" + item.id : "#/course/" + item.id;
  const remove = async () => {
    try {
      await api("DELETE", `${API}/me/collections/${item.kind}/${item.id}`);
      onRemoved();
    } catch (error) {
      showError(error);
    }
  };
  return html`<li class="cm-collection">
    ${item.available ? html`<a class="cm-author" href=${href}>${item.image && html`<img class="cm-col-img" src=${item.image} alt="" loading="lazy" />`}
      <span><strong>${item.title}</strong><br /><small class="muted">${t("cm.kind_" + item.kind)} · ${when(item.collected_at)}</small></span></a>`
      : html`<span class="cm-author"><span><strong>${item.title}</strong><br /><small class="muted">${t("cm.unavailable")}</small></span></span>`}
    <button type="button" class="cm-act" onClick=${remove}>${t("cm.uncollect")}</button>
  </li>`;
}

function Collections({ query }) {
  useTitle(t("cm.collections"), "/me");
  const token = useStore(auth, (s) => s.token);
  useEffect(() => void needUser(), []);
  const kind = ["article", "course"].includes(query.kind) ? query.kind : "all";
  if (!token) return null;
  return html`<div class="cm-page">
    <${Tabs} label=${t("cm.collections")} current=${kind} items=${[["all", "#/me/collections", t("cm.all")],
      ["article", "#/me/collections?kind=article", t("cm.kind_article")], ["course", "#/me/collections?kind=course", t("cm.kind_course")]]} />
    <${CollectionList} key=${kind} kind=${kind} />
  </div>`;
}

function CollectionList({ kind }) {
  const paged = usePaged("/me/collections?kind=" + kind);
  return html`<ul class="list">${paged.items.map((item) => html`<${CollectionRow} key=${item.kind + item.id} item=${item}
      onRemoved=${() => paged.setItems((items) => items.filter((x) => x !== item))} />`)}</ul>
    <${PageEnd} paged=${paged} empty=${t("cm.no_collections")} />`;
}

export const routes = [{ pattern: /^\/me\/collections$/, view: Collections }];
