// The account screens' strings (js/lang/account.<lang>.js), loaded with those screens only, so the
// first screen does not carry them.
import { groupStrings, loadLanguage, language } from "./i18n.js";

await (groupStrings.push(async (lang) => (await import(`./lang/account.${lang}.js`)).default) &&
  loadLanguage(language.get().lang));
