// Chinese (zh-CN) and English. Chinese by default when the browser prefers it; the choice is
// remembered. The strings live in js/lang/<code>.js; only the chosen language is loaded.
import { createStore, useStore } from "./store.js";

export const LANGUAGES = [
  { code: "zh-CN", label: "中文" },
  { code: "en", label: "English" },
];
const STORAGE_KEY = "gavel-lang";
const dictionaries = {};
export const groupStrings = []; // lang => table

/** Load a language's strings (once); resolves when t() can use them. */
export async function loadLanguage(lang) {
  if (!dictionaries[lang]) dictionaries[lang] = (await import(`./lang/${lang}.js`)).default;
  for (const load of groupStrings) Object.assign(dictionaries[lang], await load(lang));
}

export function preferredLanguage(stored, browserLanguages) {
  if (stored === "zh-CN" || stored === "en") return stored;
  for (const language of browserLanguages) {
    if (/^zh\b/i.test(language)) return "zh-CN";
    if (/^en\b/i.test(language)) return "en";
  }
  return "en";
}

function storedLanguage() {
  try {
    return localStorage.getItem(STORAGE_KEY);
  } catch {
    return null;
  }
}

export const language = createStore({
  lang: preferredLanguage(storedLanguage(), navigator.languages || [navigator.language || ""]),
});
document.documentElement.lang = language.get().lang;

export async function setLanguage(lang) {
  await loadLanguage(lang);
  try {
    localStorage.setItem(STORAGE_KEY, lang);
  } catch {
    /* private mode: the choice lasts for this page only */
  }
  document.documentElement.lang = lang;
  language.set({ lang });
}

/** The string for `key` in the current language with {name} placeholders filled. */
export function t(key, params) {
  const lang = language.get().lang;
  // "{n} bids" / "1 bid": a `key_one` string is used when n is 1 (Chinese needs none).
  const singular = params && params.n === 1 ? key + "_one" : null;
  const table = dictionaries[lang] || {};
  let text = (singular && table[singular]) ?? table[key] ?? key;
  if (params) text = text.replace(/\{(\w+)\}/g, (whole, name) => (name in params ? String(params[name]) : whole));
  return text;
}

/** Re-render the calling component when the language changes; returns the language code. */
export function useLanguage() {
  return useStore(language, (state) => state.lang);
}
