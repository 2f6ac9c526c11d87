// A post (issue 23): its view recorded once, images, the live lot card, likes and counts live
// (`watch` of post:{id}), comments with replies, report or delete.
import { html } from "./html.js";
import { t } from "./i18n.js";
import { api } from "./api.js";
import { navigate } from "./router.js";
import { useTitle } from "./shell.js";
import { useAsync, Async, toast } from "./ui.js";
import { API, PostCard, showError } from "./community-common.js";
import { Comments, ReportButton } from "./community-comments.js";

function PostPage({ params: [id] }) {
  useTitle(t("cm.post"), "/community");
  // The view first (the server counts one per user), so the post comes with it counted.
  const state = useAsync(() => api("POST", `${API}/posts/${id}/view`).catch(() => null).then(() => api("GET", `${API}/posts/${id}`)), [id]);
  const remove = async () => {
    if (!confirm(t("cm.delete_confirm"))) return;
    try {
      await api("DELETE", `${API}/posts/${id}`);
      toast(t("cm.deleted"), "good");
      navigate("/community", { replace: true });
    } catch (error) {
      showError(error);
    }
  };
  return html`<${Async} state=${state} ready=${(post) => html`<div class="cm-page">
    <${PostCard} post=${post} full=${true} onDelete=${remove} Report=${ReportButton} />
    <${Comments} target=${"post:" + post.id} limit=${255} />
  </div>`} />`;
}

export const routes = [{ pattern: /^\/community\/post\/(\d+)$/, view: PostPage }];
