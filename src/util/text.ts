/** Small text helpers that workflows in code and workflow files share. */

/** The content of the last complete `\boxed{...}` in a text (nested braces allowed), if any. */
export function lastBoxed(text: string): string | undefined {
  const open = "\\boxed{";
  let found: string | undefined;
  for (let at = text.indexOf(open); at >= 0; at = text.indexOf(open, at + 1)) {
    let depth = 0;
    for (let i = at + open.length - 1; i < text.length; i++) {
      if (text[i] === "{") depth++;
      else if (text[i] === "}" && --depth === 0) {
        found = text.slice(at + open.length, i).trim();
        break;
      }
    }
  }
  return found;
}

/**
 * A text cut at a word boundary past `maxChars` and marked ` [...]`;
 * unchanged when it fits.
 */
export function excerpt(text: string, maxChars: number): string {
  if (text.length <= maxChars) return text;
  const cut = text.lastIndexOf(" ", maxChars);
  return `${text.slice(0, cut > maxChars / 2 ? cut : maxChars)} [...]`;
}
