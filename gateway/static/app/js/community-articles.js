// Articles 深科技 (issue 23): the list by weight, an article (its body is the server's sanitised
// `body_html`, the only HTML the app inserts), like, collect and comments.
import { html } from "./html.js";
import { t } from "./i18n.js";
import { api } from "./api.js";
import { useTitle } from "./shell.js";
import { useAsync, Async, Picture } from "./ui.js";
import { API, when, usePaged, PageEnd, useCounts, LikeButton, needUser, showError } from "./community-common.js";
import { Comments } from "./community-comments.js";

const Counts = ({ a }) => html`<small class="muted">${t("cm.views")} ${a.views} · ♥ ${a.likes} · ${t("cm.comments")} ${a.comments}</small>`;

function ArticleCard({ a }) {
  return html`<li class="card cm-art-card"><a href=${"#/community/article/" + a.id}>
    <${Picture} picture=${a.head_img} alt="" className="cm-art-img" sizes="(min-width: 900px) 240px, 35vw" />
    <span class="cm-art-body"><strong class="cm-art-title">${a.kind === "video" ? "▶ " : ""}${a.title}</strong>
      <small class="muted">${a.source && a.source.name} · ${when(a.pub_at)}</small><${Counts} a=${a} /></span></a></li>`;
}

function Articles({ query }) {
  useTitle(t("cm.articles"), "/community");
  const sources = useAsync(() => api("GET", API + "/article-sources").then((d) => d.items || d, () => []), []);
  const source = query.source_id || "";
  const path = "/articles?position=feed" + (source ? "&source_id=" + encodeURIComponent(source) : "");
  return html`<div class="cm-page">
    ${(sources.data || []).length > 0 && html`<nav class="chips" aria-label=${t("cm.sources")}>
      <a href="#/community/articles" class=${source ? "" : "on"}>${t("cm.all")}</a>
      ${sources.data.map((s) => html`<a key=${s.id} href=${"#/community/articles?source_id=" + s.id} class=${String(s.id) === source ? "on" : ""}>${s.name}</a>`)}
    </nav>`}
    <${ArticleList} key=${path} path=${path} />
  </div>`;
}

function ArticleList({ path }) {
  const paged = usePaged(path);
  return html`<ul class="cm-art-list">${paged.items.map((a) => html`<${ArticleCard} key=${a.id} a=${a} />`)}</ul><${PageEnd} paged=${paged} />`;
}

/** Collect / uncollect (PUT/DELETE /me/collections/{kind}/{id} → { collected, collects }). */
export function CollectButton({ kind, id, collected, count, onChange }) {
  const toggle = async () => {
    if (!needUser()) return;
    try {
      onChange(await api(collected ? "DELETE" : "PUT", `${API}/me/collections/${kind}/${id}`));
    } catch (error) {
      showError(error);
    }
  };
  return html`<button type="button" class=${"cm-act" + (collected ? " on" : "")} aria-pressed=${collected} onClick=${toggle}>
    <span aria-hidden="true">${collected ? "★" : "☆"}</span> ${t(collected ? "cm.collected" : "cm.collect")} ${count}</button>`;
}

function ArticleBody({ a }) {
  const [c, setC] = useCounts("article:" + a.id, { views: a.views, likes: a.likes, comments: a.comments, collects: a.collects,
    liked: a.liked_by_me, collected: a.collected_by_me });
  return html`<article class="card cm-article">
    ${a.head_img && html`<${Picture} picture=${a.head_img} alt="" className="cm-art-hero" eager=${true} />`}
    <h2 class="cm-art-h">${a.title}</h2>
    <p class="muted">${a.source && a.source.name} · ${when(a.pub_at)}</p>
    ${a.kind === "video" && html`<p class="notice">▶ ${t("cm.video")}</p>`}
    ${a.brief && html`<p class="cm-brief">${a.brief}</p>`}
    <div class="cm-md" dangerouslySetInnerHTML=${{ __html: a.body_html /* sanitised by the server (community/markdown.py) */ }}></div>
    <div class="cm-actions">
      <${LikeButton} path=${"/articles/" + a.id} liked=${c.liked} likes=${c.likes} onChange=${(r) => setC((x) => ({ ...x, ...r }))} />
      <${CollectButton} kind="article" id=${a.id} collected=${c.collected} count=${c.collects} onChange=${(r) => setC((x) => ({ ...x, ...r }))} />
      <span class="cm-act muted">${t("cm.views")} ${c.views}</span>
    </div>
  </article>`;
}

function Article({ params: [id] }) {
  const state = useAsync(() => api("POST", `${API}/articles/${id}/view`).catch(() => null).then(() => api("GET", `${API}/articles/${id}`)), [id]);
  useTitle(t("cm.article"), "/community/articles");
  return html`<${Async} state=${state} ready=${(a) => html`<div class="cm-page">
    <${ArticleBody} a=${a} />
    <${Comments} target=${"article:" + a.id} limit=${1024} />
  </div>`} />`;
}

export const routes = [
  { pattern: /^\/community\/articles$/, view: Articles },
  { pattern: /^\/community\/article\/(\d+)$/, view: Article },
];
