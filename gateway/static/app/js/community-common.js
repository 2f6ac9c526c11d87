// What the community screens (issue 23) share: their strings and styles, the post card with its
// like button and live lot card, live counts (js/live.js `watch`), cursor pages with infinite
// scroll, image checks and uploads with progress, and the report menu. User text is rendered as
// text (Preact escapes it); nothing here sets innerHTML.
import { html, useState, useEffect, useRef } from "./html.js";
import { t, groupStrings, loadLanguage, language } from "./i18n.js";
import { api, auth } from "./api.js";
import { useStore } from "./store.js";
import { live, onFrame, watch, subscribe } from "./live.js";
import { navigate, here } from "./router.js";
import { formatYuan } from "./money.js";
import { formatWhen, parseIso } from "./time.js";
import { Picture, toast, errorText } from "./ui.js";

const STYLES = "/static/app/community.css";
await Promise.all([
  groupStrings.push(async (lang) => (await import(`./lang/community.${lang}.js`)).default) && loadLanguage(language.get().lang),
  document.querySelector(`link[href="${STYLES}"]`) ||
    new Promise((resolve) => {
      const link = Object.assign(document.createElement("link"), { rel: "stylesheet", href: STYLES, onload: resolve, onerror: resolve });
      document.head.append(link);
    }),
]);

export const API = "/api/v1";
export const when = (iso) => formatWhen(parseIso(iso));

/** Signed in, or sent to sign in (and back here); returns whether to go on. */
export function needUser() {
  if (auth.get().token) return true;
  navigate("/signin?next=" + encodeURIComponent(here()));
  return false;
}

export const showError = (error) => toast(errorText(error), "warn");

/** A cursor page loaded on demand: { items, setItems, more, done, error, loading, sentinel }. */
export function usePaged(path) {
  const [state, setState] = useState({ items: [], cursor: null, done: false, error: null, loading: false });
  const busy = useRef(false);
  const sentinel = useRef(null);
  const more = async () => {
    if (busy.current) return;
    busy.current = true;
    setState((s) => ({ ...s, loading: true, error: null }));
    const cursor = state.cursor;
    try {
      const sep = path.includes("?") ? "&" : "?";
      const page = await api("GET", API + path + (cursor ? sep + "cursor=" + encodeURIComponent(cursor) : ""));
      const key = (x) => (x.kind || "") + (x.id ?? "u" + x.user_id); // a live item may already be there
      setState((s) => ({ ...s, items: [...s.items, ...page.items.filter((x) => !s.items.some((y) => key(y) === key(x)))], cursor: page.next_cursor, done: !page.next_cursor, loading: false }));
    } catch (error) {
      setState((s) => ({ ...s, error, loading: false }));
    }
    busy.current = false;
  };
  useEffect(() => {
    more();
  }, []);
  // Infinite scroll: the next page when the end of the list comes into view.
  useEffect(() => {
    const end = sentinel.current;
    if (!end || state.done || state.error || state.loading || !window.IntersectionObserver) return;
    const observer = new IntersectionObserver((seen) => seen.some((e) => e.isIntersecting) && more(), { rootMargin: "400px" });
    observer.observe(end);
    return () => observer.disconnect();
  }, [state.cursor, state.done, state.error, state.loading]);
  const setItems = (fn) => setState((s) => ({ ...s, items: fn(s.items) }));
  return { ...state, more, setItems, sentinel };
}

/** The end of a paged list: loading, an error with retry, "more", or nothing left. */
export function PageEnd({ paged, empty }) {
  if (paged.error) return html`<p class="state error" role="alert">${errorText(paged.error)}
    <button class="button secondary" onClick=${paged.more}>${t("common.retry")}</button></p>`;
  if (paged.loading) return html`<p class="state" role="status">${t("common.loading")}</p>`;
  if (paged.done) return paged.items.length ? null : html`<p class="state empty">${empty || t("common.empty")}</p>`;
  return html`<div ref=${paged.sentinel}><button class="button secondary block" onClick=${paged.more}>${t("common.more")}</button></div>`;
}

/** Live counts of a topic ("post:12"): `initial` merged with every `counts` frame while shown. */
export function useCounts(topic, initial) {
  const [counts, setCounts] = useState(initial); // a new post or article remounts (key)
  useEffect(() => {
    if (!topic) return;
    const unwatch = watch(topic);
    const off = onFrame("counts", (f) => f.topic === topic && setCounts((c) => ({ ...c, ...f })));
    return () => {
      off();
      unwatch();
    };
  }, [topic]);
  return [counts, setCounts];
}

export function Avatar({ user, big }) {
  const name = (user && user.name) || "?";
  return user && user.avatar
    ? html`<img class=${"cm-avatar" + (big ? " big" : "")} src=${user.avatar} alt="" loading="lazy" />`
    : html`<span class=${"cm-avatar" + (big ? " big" : "")} aria-hidden="true">${[...name][0]}</span>`;
}

export function Author({ user, at }) {
  return html`<a class="cm-author" href=${"#/community/user/" + user.user_id}>
    <${Avatar} user=${user} /><span><strong class="cm-name">${user.name}</strong>
    ${at && html`<small class="muted">${when(at)}</small>`}</span></a>`;
}

/** Like toggle (PUT/DELETE `${path}/like`): optimistic, rolled back on error. */
export function LikeButton({ path, liked, likes, onChange }) {
  const toggle = async () => {
    if (!needUser()) return;
    const before = { liked, likes };
    onChange({ liked: !liked, likes: likes + (liked ? -1 : 1) });
    try {
      onChange(await api(liked ? "DELETE" : "PUT", API + path + "/like"));
    } catch (error) {
      onChange(before);
      showError(error);
    }
  };
  return html`<button type="button" class=${"cm-act cm-like" + (liked ? " on" : "")} aria-pressed=${liked} onClick=${toggle}
    aria-label=${t("cm.like")}><span aria-hidden="true">${liked ? "♥" : "♡"}</span> ${likes}</button>`;
}

/** A linked lot with its live price (the session subscribed while shown) or a session. */
function LinkCard({ link }) {
  const lot = useStore(live, (s) => (link.kind === "lot" ? s.lots[link.id] : null));
  useEffect(() => (link.session_id ? subscribe(link.session_id) : undefined), [link.session_id]);
  const price = (lot && lot.price) ?? link.price;
  const href = link.kind === "lot" ? "#/lot/" + link.id : "#/s/" + link.id;
  return html`<a class="cm-link" href=${href}><span class="cm-link-kind">${t("cm.link_" + link.kind)}</span>
    <span class="cm-link-title">${link.title}</span>${Number.isInteger(price) && html`<strong class="price">${formatYuan(price)}</strong>`}</a>`;
}

export function Images({ images }) {
  if (!images || !images.length) return null;
  const one = images.length === 1;
  return html`<div class=${"cm-images" + (one ? " one" : images.length === 4 ? " four" : "")}>
    ${images.map((p, i) => html`<a key=${p.url} href=${p.url} target="_blank" rel="noopener">
      <${Picture} picture=${p} alt=${t("cm.image_n", { n: i + 1 })} className="cm-img" sizes=${one ? "(min-width: 900px) 600px, 90vw" : "(min-width: 900px) 200px, 30vw"} /></a>`)}
  </div>`;
}

/** A post as every list and the post page show it. */
export function PostCard({ post, full, onDelete, Report }) {
  const [counts, setCounts] = useCounts(full ? "post:" + post.id : null, {
    likes: post.likes, comments: post.comments, views: post.views, liked: post.liked_by_me,
  });
  const open = "#/community/post/" + post.id;
  return html`<article class="card cm-post" aria-label=${t("cm.post_by", { name: post.author.name })}>
    <${Author} user=${post.author} at=${post.created_at} />
    ${full ? html`<p class="cm-text">${post.text}</p>` : html`<a class="cm-text cm-open" href=${open}>${post.text}</a>`}
    <${Images} images=${post.cover && !post.images.some((i) => i.url === post.cover.url) ? [post.cover, ...post.images] : post.images} />
    ${post.link && html`<${LinkCard} link=${post.link} />`}
    ${(post.topic || post.place) && html`<p class="cm-meta">
      ${post.topic && html`<a class="cm-chip" href=${"#/community/topic/" + post.topic.id}>#${post.topic.title}</a>`}
      ${post.place && html`<span class="muted">◎ ${post.place}</span>`}</p>`}
    <div class="cm-actions">
      <${LikeButton} path=${"/posts/" + post.id} liked=${counts.liked} likes=${counts.likes}
        onChange=${(r) => setCounts((c) => ({ ...c, liked: r.liked, likes: r.likes }))} />
      <a class="cm-act" href=${open}>${t("cm.comments")} ${counts.comments}</a>
      <span class="cm-act muted">${t("cm.views")} ${counts.views}</span>
      ${full && !post.mine && Report && html`<${Report} target=${"post:" + post.id} />`}
      ${full && post.mine && html`<button type="button" class="cm-act" onClick=${onDelete}>${t("common.delete")}</button>`}
    </div>
  </article>`;
}

export function Posts({ path, empty }) {
  const paged = usePaged(path);
  const remove = (id) => paged.setItems((items) => items.filter((p) => p.id !== id));
  return html`<div class="cm-list">
    ${paged.items.map((post) => html`<${PostCard} key=${post.id} post=${post} onDelete=${() => remove(post.id)} />`)}
    <${PageEnd} paged=${paged} empty=${empty} />
  </div>`;
}

/** Follow / unfollow (PUT/DELETE `${path}/follow` → { following, followers }). */
export function FollowButton({ path, following, onChange }) {
  const [busy, setBusy] = useState(false);
  const toggle = async () => {
    if (!needUser()) return;
    setBusy(true);
    try {
      onChange(await api(following ? "DELETE" : "PUT", API + path + "/follow"));
    } catch (error) {
      showError(error);
    }
    setBusy(false);
  };
  return html`<button type="button" class=${"button " + (following ? "secondary" : "primary") + " cm-follow"} disabled=${busy}
    aria-pressed=${following} onClick=${toggle}>${t(following ? "cm.following_btn" : "cm.follow")}</button>`;
}

/** Tabs as links (the URL holds the state). */
export function Tabs({ items, current, label }) {
  return html`<nav class="segmented cm-tabs" aria-label=${label}>
    ${items.map(([key, href, text]) => html`<a key=${key} href=${href} class=${key === current ? "on" : ""}
      aria-current=${key === current ? "page" : undefined}>${text}</a>`)}</nav>`;
}
