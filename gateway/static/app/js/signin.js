// Sign in and register (username + password; an optional display name, any script).
import { html, useState, useEffect } from "./html.js";
import { t } from "./i18n.js";
import { api, auth, signedIn, ApiError } from "./api.js";
import { navigate } from "./router.js";
import { useTitle } from "./shell.js";
import { Field, errorText } from "./ui.js";

function SignIn({ query }) {
  const [mode, setMode] = useState(query.mode === "register" ? "register" : "signin");
  const [form, setForm] = useState({ username: "", password: "", display_name: "", totp: "" });
  const [needsCode, setNeedsCode] = useState(false);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const registering = mode === "register";
  useTitle(registering ? t("signin.register") : t("signin.title"), "/");
  // Already signed in (another tab, a reload): straight on to where the sign-in was asked for.
  useEffect(() => {
    if (auth.get().token && query.next && query.next.startsWith("/")) navigate(query.next, { replace: true });
  }, []);
  const change = (name) => (event) => setForm({ ...form, [name]: event.target.value });

  async function submit(event) {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const credentials = { username: form.username.trim(), password: form.password };
      if (needsCode && form.totp) credentials.totp = form.totp.trim();
      const answer = await api("POST", registering ? "/api/v1/auth/register" : "/api/v1/auth/login", credentials);
      await signedIn(answer.token);
      if (registering && form.display_name.trim()) {
        await api("PATCH", "/api/v1/me", { display_name: form.display_name.trim() });
      }
      navigate(query.next && query.next.startsWith("/") ? query.next : "/", { replace: true });
    } catch (failure) {
      if (failure instanceof ApiError && failure.code === "TWO_FACTOR_REQUIRED") setNeedsCode(true);
      setError(failure);
    } finally {
      setBusy(false);
    }
  }

  return html`<form class="card form narrow" onSubmit=${submit} novalidate>
    <div class="segmented" role="tablist">
      <button type="button" role="tab" aria-selected=${!registering} class=${registering ? "" : "on"} onClick=${() => setMode("signin")}>${t("signin.title")}</button>
      <button type="button" role="tab" aria-selected=${registering} class=${registering ? "on" : ""} onClick=${() => setMode("register")}>${t("signin.register")}</button>
    </div>
    <${Field} id="username" label=${t("signin.username")} hint=${registering ? t("signin.username_hint") : null}>
      <input id="username" name="username" autocomplete="username" required minlength="3" maxlength="32"
        autocapitalize="none" spellcheck="false" value=${form.username} onInput=${change("username")} />
    <//>
    <${Field} id="password" label=${t("signin.password")} hint=${registering ? t("signin.password_hint") : null}>
      <input id="password" name="password" type="password" required minlength=${registering ? 8 : 1} maxlength="128"
        autocomplete=${registering ? "new-password" : "current-password"} value=${form.password} onInput=${change("password")} />
    <//>
    ${registering &&
    html`<${Field} id="display_name" label=${t("signin.display_name")} hint=${t("signin.display_name_hint")}>
      <input id="display_name" name="display_name" maxlength="32" autocomplete="nickname" value=${form.display_name} onInput=${change("display_name")} />
    <//>`}
    ${needsCode &&
    html`<${Field} id="totp" label=${t("signin.code")}>
      <input id="totp" name="totp" inputmode="numeric" autocomplete="one-time-code" maxlength="32" value=${form.totp} onInput=${change("totp")} />
    <//>`}
    ${error && html`<p class="form-error" role="alert">${errorText(error)}</p>`}
    <button class="button primary block" type="submit" disabled=${busy}>
      ${registering ? t("signin.register_go") : t("signin.go")}
    </button>
  </form>`;
}

export const routes = [{ pattern: /^\/signin$/, view: SignIn }];
