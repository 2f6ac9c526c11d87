// The community's feed (issue 23): article banners on top, tabs latest / following / topics, posts
// with infinite scroll; a topic's page with follow.
import { html, useState } from "./html.js";
import { t } from "./i18n.js";
import { api, auth } from "./api.js";
import { useStore } from "./store.js";
import { useTitle } from "./shell.js";
import { useAsync, Async, Picture } from "./ui.js";
import { API, Posts, FollowButton, Tabs } from "./community-common.js";

/** Articles placed as banners: one big, a row of small ones (none when there are none). */
function Banners() {
  const load = (position, limit) => api("GET", `${API}/articles?position=${position}&limit=${limit}`).then((p) => p.items, () => []);
  const state = useAsync(() => Promise.all([load("banner_big", 1), load("banner_small", 4)]), []);
  if (!state.data) return null;
  const [big, small] = state.data;
  const card = (a, cls) => html`<a key=${a.id} class=${cls} href=${"#/community/article/" + a.id}>
    <${Picture} picture=${a.head_img} alt="" className="cm-banner-img" sizes=${cls === "cm-banner" ? "(min-width: 900px) 860px, 100vw" : "40vw"} />
    <span class="cm-banner-title">${a.title}</span></a>`;
  return html`<section class="cm-banners" aria-label=${t("cm.articles")}>
    ${big.map((a) => card(a, "cm-banner"))}
    ${small.length > 0 && html`<div class="cm-banner-row">${small.map((a) => card(a, "cm-banner-small"))}</div>`}
    <a class="cm-more-link" href="#/community/articles">${t("cm.all_articles")} ›</a>
  </section>`;
}

function TopicRow({ topic }) {
  const [state, setState] = useState({ following: topic.followed_by_me, followers: topic.followers });
  return html`<li class="cm-topic">
    <a class="cm-topic-link" href=${"#/community/topic/" + topic.id}><strong>#${topic.title}</strong>
      <small class="muted">${t("cm.topic_counts", { followers: state.followers, posts: topic.posts })}</small></a>
    <${FollowButton} path=${"/topics/" + topic.id} following=${state.following} onChange=${setState} />
  </li>`;
}

function Topics() {
  const state = useAsync(() => api("GET", API + "/topics"), []);
  return html`<${Async} state=${state} ready=${(data) =>
    data.items.length ? html`<ul class="list cm-topics">${data.items.map((topic) => html`<${TopicRow} key=${topic.id} topic=${topic} />`)}</ul>`
      : html`<p class="state empty">${t("common.empty")}</p>`} />`;
}

function Feed({ query }) {
  useTitle(t("nav.community"));
  const token = useStore(auth, (s) => s.token);
  const tab = ["following", "topics"].includes(query.tab) ? query.tab : "latest";
  return html`<div class="cm-page">
    <${Banners} />
    <div class="cm-bar">
      <${Tabs} label=${t("nav.community")} current=${tab} items=${[
        ["latest", "#/community", t("cm.latest")],
        ["following", "#/community?tab=following", t("cm.following_feed")],
        ["topics", "#/community?tab=topics", t("cm.topics")],
      ]} />
      <a class="button primary cm-new" href="#/community/new">＋ ${t("cm.new_post")}</a>
    </div>
    ${tab === "topics" ? html`<${Topics} />`
      : tab === "following" && !token ? html`<p class="state"><a href="#/signin?next=%2Fcommunity%3Ftab%3Dfollowing">${t("nav.signin")}</a></p>`
      : html`<${Posts} key=${tab} path=${"/posts?feed=" + tab} empty=${t(tab === "following" ? "cm.following_empty" : "cm.feed_empty")} />`}
  </div>`;
}

function TopicPage({ params: [id] }) {
  const state = useAsync(() => api("GET", `${API}/topics/${id}`), [id]);
  const [follow, setFollow] = useState(null);
  useTitle(state.data ? "#" + state.data.title : t("cm.topics"), "/community?tab=topics");
  return html`<${Async} state=${state} ready=${(topic) => {
    const f = follow || { following: topic.followed_by_me, followers: topic.followers };
    return html`<div class="cm-page">
      <section class="card cm-topic-head">
        <h2>#${topic.title}</h2>
        ${topic.intro && html`<p class="cm-text">${topic.intro}</p>`}
        <p class="muted">${t("cm.topic_counts", { followers: f.followers, posts: topic.posts })}</p>
        <${FollowButton} path=${"/topics/" + id} following=${f.following} onChange=${setFollow} />
        <a class="button secondary cm-new" href=${"#/community/new?topic=" + id}>＋ ${t("cm.new_post")}</a>
      </section>
      <${Posts} path=${`/posts?feed=topic&topic_id=${id}`} empty=${t("cm.feed_empty")} />
    </div>`;
  }} />`;
}

export const routes = [
  { pattern: /^\/community$/, view: Feed },
  { pattern: /^\/community\/topic\/(\d+)$/, view: TopicPage },
];
