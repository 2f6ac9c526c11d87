// Comments of a post or an article (issue 23): roots oldest first, each with its first replies and
// "more replies"; a reply to a reply names whom it answers; likes, report, delete own; new comments
// and counts arrive live (frames `comment` and `comment_counts` of the watched topic).
import { html, useState, useEffect, useRef } from "./html.js";
import { t } from "./i18n.js";
import { api, auth } from "./api.js";
import { useStore } from "./store.js";
import { onFrame } from "./live.js";
import { Sheet, toast } from "./ui.js";
import { API, usePaged, PageEnd, Author, LikeButton, needUser, showError } from "./community-common.js";

const replyCount = (root) => root.replies ?? 0;

/** `comments` of `target` ("post:12"): `limit` characters per comment (255 posts, 1024 articles). */
export function Comments({ target, limit }) {
  const [kind, id] = target.split(":");
  const base = `/${kind}s/${id}`;
  const paged = usePaged(base + "/comments");
  const [threads, setThreads] = useState({}); // root id -> { items, cursor, done } once expanded
  const [replyTo, setReplyTo] = useState(null);
  const me = useStore(auth, (s) => s.me && s.me.user_id);
  const threadsRef = useRef(threads);
  threadsRef.current = threads;

  // Apply `fn` to the comment `cid` wherever it shows (a root, a preview, an expanded thread).
  const patch = (cid, fn) => {
    paged.setItems((roots) => roots.map((r) => (r.id === cid ? fn(r) : r.reply_preview && r.reply_preview.some((c) => c.id === cid)
      ? { ...r, reply_preview: r.reply_preview.map((c) => (c.id === cid ? fn(c) : c)) } : r)));
    setThreads((all) => Object.fromEntries(Object.entries(all).map(([k, th]) => [k, { ...th, items: th.items.map((c) => (c.id === cid ? fn(c) : c)) }])));
  };
  const shown = (roots, cid) => roots.some((r) => r.id === cid || (r.reply_preview || []).some((c) => c.id === cid));

  // A new comment (mine, or live): placed once, under its root when it is a reply.
  const add = (c) => {
    c = { liked_by_me: false, mine: c.author.user_id === me, likes: 0, ...c };
    if (c.depth <= 1 || !c.root) {
      paged.setItems((roots) => (shown(roots, c.id) ? roots : [...roots, { ...c, replies: 0, reply_preview: [] }]));
      return;
    }
    const grow = (r) => ({ ...r, replies: replyCount(r) + 1 });
    if (threadsRef.current[c.root]) {
      if (threadsRef.current[c.root].items.some((x) => x.id === c.id)) return;
      setThreads((all) => ({ ...all, [c.root]: { ...all[c.root], items: [...all[c.root].items.filter((x) => x.id !== c.id), c] } }));
      paged.setItems((roots) => roots.map((r) => (r.id === c.root ? grow(r) : r)));
    } else
      paged.setItems((roots) => roots.map((r) => (r.id !== c.root || (r.reply_preview || []).some((x) => x.id === c.id) ? r
        : { ...grow(r), reply_preview: [...(r.reply_preview || []), c] })));
  };
  const addRef = useRef(add);
  addRef.current = add;

  useEffect(() => {
    const offs = [
      onFrame("comment", (f) => f.topic === target && addRef.current(f.comment)),
      onFrame("comment_counts", (f) => f.topic === target && patch(f.comment_id, (c) => ({ ...c, likes: f.likes, ...(c.depth <= 1 ? { replies: f.replies } : {}) }))),
    ];
    return () => offs.forEach((off) => off());
  }, [target]);

  const moreReplies = async (root) => {
    const th = threads[root.id];
    try {
      const page = await api("GET", `${API}/comments/${root.id}/replies` + (th && th.cursor ? "?cursor=" + encodeURIComponent(th.cursor) : ""));
      setThreads((all) => {
        const had = (all[root.id] && all[root.id].items) || [];
        const items = [...had, ...page.items.filter((c) => !had.some((x) => x.id === c.id))];
        return { ...all, [root.id]: { items, cursor: page.next_cursor, done: !page.next_cursor } };
      });
    } catch (error) {
      showError(error);
    }
  };

  const remove = async (c) => {
    if (!confirm(t("cm.delete_confirm"))) return;
    try {
      await api("DELETE", `${API}/comments/${c.id}`);
      paged.setItems((roots) => roots.filter((r) => r.id !== c.id).map((r) => (r.reply_preview || []).some((x) => x.id === c.id)
        ? { ...r, replies: replyCount(r) - 1, reply_preview: r.reply_preview.filter((x) => x.id !== c.id) } : r));
      setThreads((all) => Object.fromEntries(Object.entries(all).map(([k, th]) => [k, { ...th, items: th.items.filter((x) => x.id !== c.id) }])));
    } catch (error) {
      showError(error);
    }
  };

  const one = (c) => html`<li key=${c.id} class=${"cm-comment" + (c.depth > 1 ? " reply" : "")} id=${"comment-" + c.id}>
    <${Author} user=${c.author} at=${c.created_at} />
    <p class="cm-text">${c.reply_to_user && c.reply_to !== c.root && html`<span class="cm-reply-to">${t("cm.reply_to", { name: c.reply_to_user.name })} </span>`}${c.text}</p>
    <div class="cm-actions">
      <${LikeButton} path=${"/comments/" + c.id} liked=${c.liked_by_me} likes=${c.likes}
        onChange=${(r) => patch(c.id, (x) => ({ ...x, liked_by_me: r.liked, likes: r.likes }))} />
      <button type="button" class="cm-act" onClick=${() => needUser() && setReplyTo(c)}>${t("cm.reply")}</button>
      ${c.mine ? html`<button type="button" class="cm-act" onClick=${() => remove(c)}>${t("common.delete")}</button>`
        : html`<${ReportButton} target=${"comment:" + c.id} />`}
    </div>
  </li>`;

  return html`<section class="card cm-comments" aria-labelledby="cm-comments-h">
    <h2 id="cm-comments-h">${t("cm.comments")}</h2>
    <ul class="cm-thread">
      ${paged.items.map((root) => {
        const th = threads[root.id];
        const replies = th ? th.items : root.reply_preview || [];
        const left = th ? !th.done : replyCount(root) > replies.length;
        return html`${one(root)}${replies.length > 0 && html`<li key=${"r" + root.id} class="cm-replies"><ul>${replies.map(one)}</ul></li>`}
          ${left && html`<li key=${"m" + root.id} class="cm-replies"><button type="button" class="cm-act cm-more-replies" onClick=${() => moreReplies(root)}>
            ${t("cm.more_replies", { n: Math.max(replyCount(root) - replies.length, 1) })}</button></li>`}`;
      })}
    </ul>
    <${PageEnd} paged=${paged} empty=${t("cm.no_comments")} />
    <${Composer} base=${base} limit=${limit} replyTo=${replyTo} clear=${() => setReplyTo(null)} onSent=${add} />
  </section>`;
}

function Composer({ base, limit, replyTo, clear, onSent }) {
  const [text, setText] = useState("");
  const [busy, setBusy] = useState(false);
  const box = useRef(null);
  useEffect(() => {
    if (replyTo && box.current) box.current.focus();
  }, [replyTo]);
  const size = [...text.trim()].length;
  const send = async (event) => {
    event.preventDefault();
    if (!needUser() || !size || size > limit) return;
    setBusy(true);
    try {
      const body = replyTo ? { text, reply_to: replyTo.id } : { text };
      onSent(await api("POST", `${API}${base}/comments`, body));
      setText("");
      clear();
    } catch (error) {
      showError(error);
    }
    setBusy(false);
  };
  return html`<form class="form cm-composer" onSubmit=${send}>
    ${replyTo && html`<p class="cm-replying">${t("cm.reply_to", { name: replyTo.author.name })}
      <button type="button" class="cm-act" onClick=${clear} aria-label=${t("common.cancel")}>✕</button></p>`}
    <div class="field"><label for="cm-comment">${t("cm.write_comment")}</label>
      <textarea id="cm-comment" ref=${box} rows="2" value=${text} onInput=${(e) => setText(e.target.value)}
        aria-describedby="cm-comment-count"></textarea>
      <p id="cm-comment-count" class=${"hint" + (size > limit ? " field-error" : "")} aria-live="polite">${size} / ${limit}</p></div>
    <button class="button primary" disabled=${busy || !size || size > limit}>${t("cm.send")}</button>
  </form>`;
}

export const REASONS = ["spam", "abuse", "illegal", "privacy", "other"];

/** "Report" with a sheet of reasons and a note (POST /reports). */
export function ReportButton({ target }) {
  const [open, setOpen] = useState(false);
  const [reason, setReason] = useState("spam");
  const [note, setNote] = useState("");
  const send = async (event) => {
    event.preventDefault();
    try {
      await api("POST", API + "/reports", { target, reason, note });
      toast(t("cm.reported"), "good");
      setOpen(false);
    } catch (error) {
      showError(error);
    }
  };
  return html`<button type="button" class="cm-act" onClick=${() => needUser() && setOpen(true)}>${t("cm.report")}</button>
    ${open && html`<${Sheet} title=${t("cm.report")} onClose=${() => setOpen(false)}>
      <form class="form" onSubmit=${send}>
        ${REASONS.map((r) => html`<label class="check" key=${r}><input type="radio" name="reason" value=${r}
          checked=${reason === r} onChange=${() => setReason(r)} /> ${t("cm.reason_" + r)}</label>`)}
        <div class="field"><label for="cm-note">${t("cm.note")}</label>
          <input id="cm-note" maxlength="255" value=${note} onInput=${(e) => setNote(e.target.value)} /></div>
        <div class="actions"><button type="button" class="button secondary" onClick=${() => setOpen(false)}>${t("common.cancel")}</button>
          <button class="button primary">${t("cm.report")}</button></div>
      </form><//>`}`;
}
