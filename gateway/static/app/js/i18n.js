// Chinese (zh-CN) and English. Chinese by default when the browser prefers it; the choice is
// remembered. Each screen module adds its own strings with addStrings().
import { createStore, useStore } from "./store.js";

export const LANGUAGES = [
  { code: "zh-CN", label: "中文" },
  { code: "en", label: "English" },
];
const STORAGE_KEY = "gavel-lang";
const dictionaries = { "zh-CN": {}, en: {} };

export function addStrings(table) {
  for (const [language, strings] of Object.entries(table)) Object.assign(dictionaries[language], strings);
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

export function setLanguage(lang) {
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
  const table = dictionaries[lang];
  let text = (singular && table[singular]) ?? table[key] ?? dictionaries.en[key] ?? key;
  if (params) text = text.replace(/\{(\w+)\}/g, (whole, name) => (name in params ? String(params[name]) : whole));
  return text;
}

/** Re-render the calling component when the language changes; returns the language code. */
export function useLanguage() {
  return useStore(language, (state) => state.lang);
}

addStrings({
  en: {
    "app.name": "Gavel",
    "nav.auctions": "Auctions",
    "nav.account": "Me",
    "nav.back": "Back",
    "nav.language": "Language",
    "nav.signin": "Sign in",
    "net.offline": "Offline — reconnecting…",
    "net.reconnected": "Back online",
    "common.loading": "Loading…",
    "common.retry": "Try again",
    "common.cancel": "Cancel",
    "common.confirm": "Confirm",
    "common.save": "Save",
    "common.close": "Close",
    "common.edit": "Edit",
    "common.delete": "Delete",
    "common.more": "Load more",
    "common.empty": "Nothing here yet.",
    "common.error": "Something went wrong: {message}",
    "common.not_found": "This page does not exist.",
    "money.empty": "Enter an amount in yuan.",
    "money.format": "Enter an amount like 1234.50.",
    "money.precision": "At most two decimals (fen).",
    "money.range": "The amount is out of range.",
    "time.days": "{d} d {h} h",
    "time.hours": "{h} h {m} min",
    "time.minutes": "{m} min",
    "time.seconds": "{s} s",
    "time.ended": "Ended",
  },
  "zh-CN": {
    "app.name": "Gavel 拍卖",
    "nav.auctions": "拍卖",
    "nav.account": "我的",
    "nav.back": "返回",
    "nav.language": "语言",
    "nav.signin": "登录",
    "net.offline": "网络已断开，正在重连…",
    "net.reconnected": "已重新连接",
    "common.loading": "加载中…",
    "common.retry": "重试",
    "common.cancel": "取消",
    "common.confirm": "确认",
    "common.save": "保存",
    "common.close": "关闭",
    "common.edit": "编辑",
    "common.delete": "删除",
    "common.more": "加载更多",
    "common.empty": "暂无内容。",
    "common.error": "出错了：{message}",
    "common.not_found": "页面不存在。",
    "money.empty": "请输入金额（元）。",
    "money.format": "请输入金额，例如 1234.50。",
    "money.precision": "最多两位小数（分）。",
    "money.range": "金额超出范围。",
    "time.days": "{d}天{h}小时",
    "time.hours": "{h}小时{m}分",
    "time.minutes": "{m}分钟",
    "time.seconds": "{s}秒",
    "time.ended": "已结束",
  },
});
