// Profiles (issue 23): a user's avatar, bio, counts, follow button, their posts and their
// followers / following; my profile: avatar upload and bio.
import { html, useState, useEffect } from "./html.js";
import { t } from "./i18n.js";
import { api, auth } from "./api.js";
import { useStore } from "./store.js";
import { useTitle } from "./shell.js";
import { useAsync, Async, Field, toast, errorText } from "./ui.js";
import { API, Avatar, Posts, FollowButton, Tabs, usePaged, PageEnd, needUser } from "./community-common.js";
import { ACCEPT_IMAGES, imageProblem, upload } from "./community-upload.js";

export const MAX_BIO = 120;

function People({ path }) {
  const paged = usePaged(path);
  return html`<ul class="list cm-people">${paged.items.map((u) => html`<li key=${u.user_id}>
    <a class="cm-author" href=${"#/community/user/" + u.user_id}><${Avatar} user=${u} /><strong class="cm-name">${u.name}</strong></a></li>`)}</ul>
    <${PageEnd} paged=${paged} />`;
}

function Head({ profile, follow, setFollow }) {
  const f = follow || { following: profile.followed_by_me, followers: profile.followers };
  const count = (n, key, tab) => html`<a href=${`#/community/user/${profile.user_id}?tab=${tab}`}><strong>${n}</strong> ${t(key)}</a>`;
  return html`<section class="card cm-profile">
    <${Avatar} user=${profile} big=${true} />
    <div class="cm-profile-body">
      <h2 class="cm-name">${profile.name}</h2>
      ${profile.bio && html`<p class="cm-text">${profile.bio}</p>`}
      <p class="cm-counts">${count(profile.posts, "cm.posts", "posts")}${count(f.followers, "cm.followers", "followers")}${count(profile.following, "cm.following_n", "following")}</p>
      ${profile.me ? html`<a class="button secondary" href="#/me/profile">${t("cm.edit_profile")}</a>`
        : html`<${FollowButton} path=${"/profiles/" + profile.user_id} following=${f.following} onChange=${setFollow} />`}
    </div>
  </section>`;
}

function Profile({ params: [id], query }) {
  const state = useAsync(() => api("GET", `${API}/profiles/${id}`), [id]);
  const [follow, setFollow] = useState(null);
  useTitle(state.data ? state.data.name : t("cm.profile"), "/community");
  const tab = ["followers", "following"].includes(query.tab) ? query.tab : "posts";
  const base = `#/community/user/${id}`;
  return html`<${Async} state=${state} ready=${(profile) => html`<div class="cm-page">
    <${Head} profile=${profile} follow=${follow} setFollow=${setFollow} />
    <${Tabs} label=${profile.name} current=${tab} items=${[["posts", base, t("cm.posts")], ["followers", base + "?tab=followers", t("cm.followers")],
      ["following", base + "?tab=following", t("cm.following_n")]]} />
    ${tab === "posts" ? html`<${Posts} path=${`/profiles/${id}/posts`} empty=${t("cm.feed_empty")} />` : html`<${People} key=${tab} path=${`/profiles/${id}/${tab}`} />`}
  </div>`} />`;
}

function MyProfile() {
  useTitle(t("cm.edit_profile"), "/me");
  const me = useStore(auth, (s) => s.me);
  useEffect(() => void needUser(), []);
  const state = useAsync(() => (me ? api("GET", `${API}/profiles/${me.user_id}`) : new Promise(() => {})), [me && me.user_id]);
  const [bio, setBio] = useState(null);
  const [error, setError] = useState("");
  const [progress, setProgress] = useState(null);
  const [profile, setProfile] = useState(null);
  const shown = profile || state.data;
  const text = bio ?? (shown ? shown.bio : "");
  const size = [...text].length;

  const avatar = async (event) => {
    const file = event.target.files[0];
    event.target.value = "";
    if (!file) return;
    const problem = await imageProblem(file);
    if (problem) return setError(t("error." + problem));
    const form = new FormData();
    form.append("file", file, file.name);
    setError("");
    setProgress(0);
    try {
      setProfile(await upload("PUT", "/me/profile/avatar", form, setProgress));
      toast(t("cm.saved"), "good");
    } catch (failure) {
      setError(errorText(failure));
    }
    setProgress(null);
  };
  const save = async (event) => {
    event.preventDefault();
    if (size > MAX_BIO) return;
    try {
      setProfile(await api("PUT", API + "/me/profile", { bio: text }));
      setBio(null);
      toast(t("cm.saved"), "good");
    } catch (failure) {
      setError(errorText(failure));
    }
  };
  return html`<${Async} state=${state} ready=${() => html`<form class="form card cm-page" onSubmit=${save}>
    <div class="cm-profile"><${Avatar} user=${shown} big=${true} /><div class="cm-profile-body"><h2 class="cm-name">${shown.name}</h2>
      <a class="cm-more-link" href=${"#/community/user/" + shown.user_id}>${t("cm.view_profile")}</a></div></div>
    <${Field} id="cm-avatar" label=${t("cm.avatar")} hint=${t("cm.avatar_hint")}>
      <input id="cm-avatar" type="file" accept=${ACCEPT_IMAGES} onChange=${avatar} disabled=${progress !== null} /><//>
    ${progress !== null && html`<progress class="cm-progress" max="1" value=${progress} aria-label=${t("cm.uploading")}></progress>`}
    <div class="field"><label for="cm-bio">${t("cm.bio")}</label>
      <textarea id="cm-bio" rows="3" value=${text} onInput=${(e) => setBio(e.target.value)} aria-describedby="cm-bio-count"></textarea>
      <p id="cm-bio-count" class=${"hint" + (size > MAX_BIO ? " field-error" : "")}>${size} / ${MAX_BIO}</p></div>
    ${error && html`<p class="form-error" role="alert">${error}</p>`}
    <button class="button primary block" disabled=${size > MAX_BIO}>${t("common.save")}</button>
    <p><a href="#/me/collections">${t("cm.collections")}</a></p>
  </form>`} />`;
}

export const routes = [
  { pattern: /^\/community\/user\/(\d+)$/, view: Profile },
  { pattern: /^\/me\/profile$/, view: MyProfile },
];
