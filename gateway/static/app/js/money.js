// Money is integer fen everywhere; yuan only on screen. Parsing is exact decimal string work:
// "1,234.5" -> 123450, never through floating point.

export const MAX_FEN = 10_000_000_000_000; // the server's limit (10^13 fen)

/** ¥1,234.50 (a minus sign for negative amounts, a plus when `sign` is set). */
export function formatYuan(fen, { sign = false } = {}) {
  if (fen === null || fen === undefined || !Number.isInteger(fen)) return "—";
  const negative = fen < 0;
  const abs = Math.abs(fen);
  const yuan = String(Math.floor(abs / 100)).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  const cents = String(abs % 100).padStart(2, "0");
  return (negative ? "−" : sign && fen > 0 ? "+" : "") + "¥" + yuan + "." + cents;
}

/** "1234.50" without the symbol or separators: the value to put back in an input. */
export function yuanInput(fen) {
  return Number.isInteger(fen) ? Math.floor(fen / 100) + "." + String(fen % 100).padStart(2, "0") : "";
}

/**
 * Yuan typed by a person -> { fen } or { error } where error is one of
 * "empty", "format" (not a number), "precision" (more than 2 decimals), "range" (zero or too big).
 * Accepts full-width digits, "¥"/"￥", spaces and thousands separators.
 */
export function parseYuan(text) {
  let value = String(text ?? "").normalize("NFKC").trim();
  value = value.replace(/^[¥￥]/, "").replace(/[\s,，]/g, "").replace(/。/g, ".");
  if (value === "") return { error: "empty" };
  const match = /^(\d+)(?:\.(\d*))?$/.exec(value);
  if (!match) return { error: "format" };
  const [, whole, decimals = ""] = match;
  if (decimals.length > 2) return { error: "precision" };
  const digits = whole.replace(/^0+(?=\d)/, "");
  if (digits.length > 11) return { error: "range" };
  const fen = Number(digits) * 100 + Number(decimals.padEnd(2, "0"));
  if (fen <= 0 || fen > MAX_FEN) return { error: "range" };
  return { fen };
}
