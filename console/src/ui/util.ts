import { h } from '../dom';
import { type Lang, LANGS, lang, setLang, t } from '../i18n';

/**
 * The console's language menu (the top bar's, the sign-in page's, the sign-in dialog's): picking
 * a language switches the whole console. Shows the language now; `showLanguage` again after a
 * change.
 */
export function languageSelect(): HTMLSelectElement {
  const select: HTMLSelectElement = h('select.lang-select', { onchange: () => setLang(select.value as Lang) },
    LANGS.map((l) => h('option', { value: l.tag }, l.label)));
  showLanguage(select);
  return select;
}

/** Sets a language menu to the language now, and its label to that language's word for it. */
export function showLanguage(select: HTMLSelectElement): void {
  select.value = lang();
  select.setAttribute('aria-label', t('language'));
}

/** Up to two initials for an avatar ("Demo Admin" → "DA", "张三" → "张"). */
export function initials(name: string): string {
  const parts = name.trim().split(/\s+/).filter(Boolean);
  if (!parts.length) return '?';
  const first = Array.from(parts[0])[0] ?? '';
  if (/[\u3400-\u9fff]/.test(first)) return first;
  const second = parts.length > 1 ? Array.from(parts[parts.length - 1])[0] ?? '' : '';
  return (first + second).toUpperCase();
}

/** A stable hue for an id, for avatar colours. */
export function hue(id: string): number {
  let h = 0;
  for (let i = 0; i < id.length; i += 1) h = (h * 31 + id.charCodeAt(i)) >>> 0;
  return h % 360;
}

/** 🇨🇳 for "CN"; empty for anything that is not two letters. */
export function flag(country?: string | null): string {
  if (!country || !/^[a-z]{2}$/i.test(country)) return '';
  return String.fromCodePoint(...country.toUpperCase().split('').map((c) => 0x1f1e6 + c.charCodeAt(0) - 65));
}

function displayName(type: 'region' | 'language', code: string): string {
  try {
    return new Intl.DisplayNames([lang()], { type }).of(code) ?? code;
  } catch {
    return code;
  }
}

export function countryName(code?: string | null): string {
  return code ? displayName('region', code.toUpperCase()) : '';
}

export function languageName(code?: string | null): string {
  return code ? displayName('language', code) : '';
}

/** One line for a message preview: whitespace collapsed, cut to n characters. */
export function oneLine(text: string, n = 120): string {
  const s = text.replace(/\s+/g, ' ').trim();
  return s.length > n ? `${s.slice(0, n - 1)}…` : s;
}

/**
 * A short word beside a visitor's name saying how far to trust it (`word`, with an optional icon),
 * explained by its tooltip and, since a tooltip needs a mouse, by the same words for screen
 * readers (or by `spoken` instead, where the explanation would be read too often).
 */
export function trustMark(className: string, word: string, explanation: string, glyph?: Node, spoken = explanation): Node[] {
  return [
    h(`span.${className}`, { title: explanation, 'aria-hidden': 'true' }, glyph ?? null, word),
    h('span.sr-only', null, spoken),
  ];
}

/**
 * The mark of a name or address the visitor typed into a form themselves (isSelfStated).
 * `brief`: screen readers hear the word only, where the whole explanation would be read again
 * on every move (a tab list); the tooltip still explains.
 */
export function selfStatedMark(brief = false): Node[] {
  const word = t('selfStated');
  return trustMark('self-stated', word, t('selfStatedTitle'), undefined, brief ? word : undefined);
}
