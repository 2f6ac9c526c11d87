// The composer (issue 23): text with a live counter, a topic, a place, up to 9 images checked here
// as the server checks them (PNG, JPEG, WebP or GIF by their bytes, 5 MiB each), sent as
// multipart with a progress bar; the server's refusals shown by their codes.
import { html, useState, useEffect } from "./html.js";
import { t } from "./i18n.js";
import { api } from "./api.js";
import { navigate } from "./router.js";
import { useTitle } from "./shell.js";
import { useAsync, errorText } from "./ui.js";
import { API, needUser } from "./community-common.js";
import { ACCEPT_IMAGES, imageProblem, upload } from "./community-upload.js";

export const MAX_TEXT = 255;
export const MAX_IMAGES = 9;

const dataUrl = (file) => new Promise((resolve) => {
  const reader = new FileReader();
  reader.onload = () => resolve(reader.result); // data: (the page's CSP allows no blob: images)
  reader.onerror = () => resolve("");
  reader.readAsDataURL(file);
});

function NewPost({ query }) {
  useTitle(t("cm.new_post"), "/community");
  const topics = useAsync(() => api("GET", API + "/topics").then((d) => d.items, () => []), []);
  const [text, setText] = useState("");
  const [topic, setTopic] = useState(query.topic || "");
  const [place, setPlace] = useState("");
  const [images, setImages] = useState([]); // { file, preview }
  const [progress, setProgress] = useState(null);
  const [error, setError] = useState("");
  const size = [...text.trim()].length;
  useEffect(() => void needUser(), []);

  const pick = async (event) => {
    const files = [...event.target.files];
    event.target.value = "";
    setError("");
    if (images.length + files.length > MAX_IMAGES) return setError(t("error.TOO_MANY_IMAGES"));
    for (const file of files) {
      const problem = await imageProblem(file);
      if (problem) return setError(`${file.name}: ${t("error." + problem)}`);
    }
    const added = await Promise.all(files.map(async (file) => ({ file, preview: await dataUrl(file) })));
    setImages((list) => [...list, ...added]);
  };

  const submit = async (event) => {
    event.preventDefault();
    if (!size) return setError(t("cm.text_needed"));
    if (size > MAX_TEXT) return setError(t("cm.text_too_long", { n: MAX_TEXT }));
    const form = new FormData();
    form.append("text", text);
    if (topic) form.append("topic_id", topic);
    if (place.trim()) form.append("place", place.trim());
    if (query.link_kind && query.link_id) {
      form.append("link_kind", query.link_kind);
      form.append("link_id", query.link_id);
    }
    for (const { file } of images) form.append("images", file, file.name);
    setError("");
    setProgress(0);
    try {
      const post = await upload("POST", "/posts", form, setProgress);
      navigate("/community/post/" + post.id, { replace: true });
    } catch (failure) {
      setProgress(null);
      setError(errorText(failure));
    }
  };

  return html`<form class="form card cm-page cm-new-form" onSubmit=${submit} novalidate>
    <div class="field"><label for="cm-text">${t("cm.text")}</label>
      <textarea id="cm-text" rows="5" value=${text} onInput=${(e) => setText(e.target.value)} aria-describedby="cm-text-count"></textarea>
      <p id="cm-text-count" class=${"hint" + (size > MAX_TEXT ? " field-error" : "")} aria-live="polite">${size} / ${MAX_TEXT}</p></div>
    <div class="field"><label for="cm-topic">${t("cm.topic")}</label>
      <select id="cm-topic" value=${topic} onChange=${(e) => setTopic(e.target.value)}>
        <option value="">${t("cm.no_topic")}</option>
        ${(topics.data || []).map((tp) => html`<option key=${tp.id} value=${String(tp.id)}>#${tp.title}</option>`)}
      </select></div>
    <div class="field"><label for="cm-place">${t("cm.place")}</label>
      <input id="cm-place" maxlength="64" value=${place} onInput=${(e) => setPlace(e.target.value)} /></div>
    <div class="field"><label for="cm-images">${t("cm.images", { n: MAX_IMAGES })}</label>
      <input id="cm-images" type="file" accept=${ACCEPT_IMAGES} multiple disabled=${images.length >= MAX_IMAGES} onChange=${pick} />
      <p class="hint">${t("cm.images_hint")}</p></div>
    ${images.length > 0 && html`<ul class="cm-previews">${images.map((img, i) => html`<li key=${img.preview + i}>
      <img src=${img.preview} alt=${img.file.name} />
      <button type="button" class="cm-remove" aria-label=${t("cm.remove_image", { name: img.file.name })}
        onClick=${() => setImages((list) => list.filter((x) => x !== img))}>✕</button></li>`)}</ul>`}
    ${progress !== null && html`<progress class="cm-progress" max="1" value=${progress} aria-label=${t("cm.uploading")}></progress>`}
    ${error && html`<p class="form-error" role="alert">${error}</p>`}
    <button class="button primary block" disabled=${progress !== null}>${t("cm.publish")}</button>
  </form>`;
}

export const routes = [{ pattern: /^\/community\/new$/, view: NewPost }];
