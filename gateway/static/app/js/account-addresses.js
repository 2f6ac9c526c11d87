// Delivery addresses: list, add, edit, delete, choose the default (docs/openapi-orders.yaml).
import { html, useState } from "./html.js";
import { t } from "./i18n.js";
import { api, get } from "./api.js";
import { useTitle } from "./shell.js";
import { useAsync, Async, Empty, Field, Sheet, toast, errorText } from "./ui.js";
import { signedInOnly } from "./account-common.js";
import "./account-strings.js";

// The server's rule (gateway/rest_orders.py PHONE), so the form says what is wrong before sending.
const PHONE = /^\+?[0-9][0-9 -]{4,19}$/;
const FIELDS = [
  { name: "name", max: 32, required: true, autocomplete: "name" },
  { name: "phone", max: 20, required: true, autocomplete: "tel", type: "tel" },
  { name: "province", max: 32, autocomplete: "address-level1" },
  { name: "city", max: 32, autocomplete: "address-level2" },
  { name: "district", max: 32, autocomplete: "address-level3" },
  { name: "detail", max: 255, required: true, autocomplete: "street-address" },
];

export function addressLine(address) {
  return [address.province, address.city, address.district, address.detail].filter(Boolean).join(" ");
}

function validate(values) {
  const errors = {};
  for (const field of FIELDS) {
    if (field.required && !values[field.name].trim()) errors[field.name] = t("addr.required");
  }
  if (values.phone.trim() && !PHONE.test(values.phone.trim())) errors.phone = t("addr.phone_bad");
  return errors;
}

/** Add (no `address`) or edit an address; `onSaved(address)` after the server accepted it. */
export function AddressForm({ address, onSaved, onCancel }) {
  const [values, setValues] = useState(() => {
    const start = { is_default: false };
    for (const field of FIELDS) start[field.name] = address ? address[field.name] || "" : "";
    return start;
  });
  const [errors, setErrors] = useState({});
  const [failure, setFailure] = useState(null);
  const [busy, setBusy] = useState(false);
  const prefix = address ? "addr-" + address.id + "-" : "addr-new-";

  async function submit(event) {
    event.preventDefault();
    const found = validate(values);
    setErrors(found);
    if (Object.keys(found).length) return;
    const body = {};
    for (const field of FIELDS) body[field.name] = values[field.name].trim();
    if (values.is_default) body.is_default = true;
    setBusy(true);
    setFailure(null);
    try {
      const saved = address
        ? await api("PUT", `/api/v1/addresses/${address.id}`, body)
        : await api("POST", "/api/v1/addresses", body);
      onSaved(saved);
    } catch (error) {
      setFailure(error);
    } finally {
      setBusy(false);
    }
  }

  const change = (name) => (event) =>
    setValues({ ...values, [name]: event.target.type === "checkbox" ? event.target.checked : event.target.value });
  return html`<form class="form" onSubmit=${submit} novalidate>
    ${FIELDS.map(
      (field) => html`<${Field} key=${field.name} id=${prefix + field.name} label=${t("addr." + field.name) + (field.required ? "" : " " + t("addr.optional"))}
        error=${errors[field.name]}>
        <input id=${prefix + field.name} name=${field.name} type=${field.type || "text"} maxlength=${field.max}
          autocomplete=${field.autocomplete} required=${field.required} value=${values[field.name]} onInput=${change(field.name)}
          aria-invalid=${errors[field.name] ? "true" : undefined} aria-describedby=${errors[field.name] ? prefix + field.name + "-error" : undefined} />
      <//>`,
    )}
    ${!(address && address.is_default) &&
    html`<label class="check"><input type="checkbox" checked=${values.is_default} onChange=${change("is_default")} />${t("addr.make_default")}</label>`}
    ${failure && html`<p class="form-error" role="alert">${errorText(failure)}</p>`}
    <div class="actions">
      <button class="button secondary" type="button" onClick=${onCancel}>${t("common.cancel")}</button>
      <button class="button primary" type="submit" disabled=${busy}>${t("common.save")}</button>
    </div>
  </form>`;
}

/** The default first, then the rest oldest first (the server's order). */
export function sortAddresses(items) {
  return [...items].sort((a, b) => Number(b.is_default) - Number(a.is_default));
}

function AddressCard({ address, onEdit, onChanged }) {
  const [confirming, setConfirming] = useState(false);
  const [busy, setBusy] = useState(false);
  async function act(request, done) {
    setBusy(true);
    try {
      await request();
      toast(done, "good");
      onChanged();
    } catch (error) {
      toast(errorText(error), "warn");
    } finally {
      setBusy(false);
      setConfirming(false);
    }
  }
  return html`<li class="acct-address">
    <div class="spread">
      <strong>${address.name}</strong>
      ${address.is_default && html`<span class="badge good">${t("addr.default")}</span>`}
    </div>
    <p class="muted small">${address.phone}</p>
    <p>${addressLine(address)}</p>
    <div class="row">
      <button class="button secondary" type="button" onClick=${() => onEdit(address)} aria-label=${t("common.edit") + " " + address.name}>${t("common.edit")}</button>
      ${!address.is_default &&
      html`<button class="button secondary" type="button" disabled=${busy}
        onClick=${() => act(() => api("PUT", `/api/v1/addresses/${address.id}`, { is_default: true }), t("addr.default_set"))}>${t("addr.set_default")}</button>`}
      <button class="button secondary" type="button" onClick=${() => setConfirming(true)} aria-label=${t("common.delete") + " " + address.name}>${t("common.delete")}</button>
    </div>
    ${confirming &&
    html`<${Sheet} title=${t("addr.delete_title")} onClose=${() => setConfirming(false)}>
      <p>${addressLine(address)}</p>
      <div class="actions">
        <button class="button secondary" type="button" onClick=${() => setConfirming(false)}>${t("common.cancel")}</button>
        <button class="button primary" type="button" disabled=${busy}
          onClick=${() => act(() => api("DELETE", `/api/v1/addresses/${address.id}`), t("addr.deleted"))}>${t("common.delete")}</button>
      </div>
    <//>`}
  </li>`;
}

function Addresses() {
  useTitle(t("addr.title"), "/me");
  const state = useAsync(() => get("/api/v1/addresses"));
  const [editing, setEditing] = useState(null); // null | "new" | an address
  const saved = () => {
    setEditing(null);
    toast(t("addr.saved"), "good");
    state.reload();
  };
  return html`<section class="narrow">
    <${Async} state=${state} ready=${(data) =>
      data.items.length
        ? html`<ul class="list card">${sortAddresses(data.items).map(
            (address) => html`<${AddressCard} key=${address.id} address=${address} onEdit=${setEditing} onChanged=${state.reload} />`,
          )}</ul>`
        : html`<${Empty} text=${t("addr.none")} />`} />
    <button class="button primary block" type="button" onClick=${() => setEditing("new")}>${t("addr.add")}</button>
    ${editing &&
    html`<${Sheet} title=${editing === "new" ? t("addr.add") : t("addr.edit")} onClose=${() => setEditing(null)}>
      <${AddressForm} address=${editing === "new" ? null : editing} onSaved=${saved} onCancel=${() => setEditing(null)} />
    <//>`}
  </section>`;
}

export const routes = [{ pattern: /^\/me\/addresses$/, view: signedInOnly(Addresses) }];
