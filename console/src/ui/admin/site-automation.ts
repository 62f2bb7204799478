// The site page's sections for what works without an agent: automations (away reply, keyword
// auto-replies, closing idle chats, invitations), translation, and the bot. They edit the page's
// draft in place; the page validates, sends the changed parts and shows the server's answer.
// Rules follow the server's (src/admin.rs, core/src/{translate,automation,bot}.rs).
import { h } from '../../dom';
import type { AutomationSettings, BotSettings, SiteDetail, TranslationSettings } from '../../types';
import { card, checkbox, field } from './common';
import {
  checkSpec, hasText, listEditor, localizedInputs, newKey, optionalLocalized, specFields, wordsInput,
  type FieldSpec, type FormCtx, type Problem,
} from './form';
import { t } from './strings';

/** The settings that hold a write-only key. */
export type KeySection = 'translation' | 'bot';

export interface AutomationCtx extends FormCtx {
  /** New keys typed, by section (cleared once saved or discarded); the keys themselves are write-only. */
  keyEdits: Map<KeySection, string>;
}

const URL_RE = /^https?:\/\/[^\s/?#@]+(?:[/?#]\S*)?$/i;
const LANGUAGE_RE = /^[a-z]{2,3}(?:[-_][a-z0-9]{1,8})*$/i;
const MAX_TEXT = 4000;
/** Idle time before closing, as the server bounds it (10 s to 30 days). */
const CLOSE_MIN_S = 10;
const CLOSE_MAX_S = 30 * 86_400;
const MAX_INVITE_DELAY_S = 86_400;

const TRANSLATION_FIELDS: FieldSpec<TranslationSettings>[] = [
  { kind: 'check', key: 'enabled', label: 'trEnabled' },
  {
    kind: 'text', key: 'agent_language', label: 'trAgentLanguage', hint: 'trAgentLanguageHint', max: 35, mono: true,
    pattern: LANGUAGE_RE, invalid: 'trLanguageInvalid', required: () => true,
    suggestions: ['en', 'zh', 'ja', 'ko', 'es', 'fr', 'de', 'pt', 'ru', 'ar', 'it', 'vi', 'th', 'id'],
  },
  {
    kind: 'select', key: 'provider', label: 'trProvider', hint: 'trProviderHint',
    options: [['libretranslate', 'trProvider_libretranslate'], ['openai', 'trProvider_openai'], ['workers_ai', 'trProvider_workers_ai']],
  },
  {
    kind: 'text', key: 'endpoint', label: 'endpointLabel', hint: 'trEndpointHint', max: 2048, mono: true, wide: true, placeholder: 'https://',
    pattern: URL_RE, invalid: 'endpointInvalid', shown: (s) => s.provider !== 'workers_ai', required: (s) => s.enabled,
  },
  { kind: 'key', key: 'api_key_set', label: 'apiKeyLabel', hint: 'trKeyHint', shown: (s) => s.provider !== 'workers_ai' },
  { kind: 'text', key: 'model', label: 'modelLabel', max: 100, mono: true, shown: (s) => s.provider !== 'libretranslate', required: (s) => s.enabled },
  { kind: 'seconds', key: 'timeout_ms', label: 'timeoutLabel', hint: 'trTimeoutHint', min: 0.5, max: 30 },
];

const BOT_FIELDS: FieldSpec<BotSettings>[] = [
  { kind: 'check', key: 'enabled', label: 'botEnabled' },
  // A chooser of the bot's kind goes here as a 'select', with `shown` on the fields it decides.
  { kind: 'text', key: 'name', label: 'botName', hint: 'botNameHint', max: 60, required: (s) => s.enabled },
  { kind: 'text', key: 'model', label: 'modelLabel', max: 100, mono: true, required: (s) => s.enabled },
  {
    kind: 'text', key: 'endpoint', label: 'endpointLabel', hint: 'botEndpointHint', max: 2048, mono: true, wide: true, placeholder: 'https://',
    pattern: URL_RE, invalid: 'endpointInvalid', required: (s) => s.enabled,
  },
  { kind: 'key', key: 'api_key_set', label: 'apiKeyLabel', hint: 'botKeyHint' },
  { kind: 'seconds', key: 'timeout_ms', label: 'timeoutLabel', hint: 'botTimeoutHint', min: 1, max: 60 },
  { kind: 'textarea', key: 'knowledge', label: 'botKnowledge', hint: 'botKnowledgeHint', max: 20_000, rows: 8, wide: true },
  { kind: 'words', key: 'handoff_keywords', label: 'botHandoff', hint: 'botHandoffHint', max: 30, wide: true },
];

/** Fills in what a server that predates a part leaves out. */
export function normalizeAutomation(site: SiteDetail): void {
  const a: Partial<AutomationSettings> = site.automation ?? {};
  site.automation = {
    away_reply: a.away_reply ?? null, auto_close_seconds: a.auto_close_seconds ?? null, close_notice: a.close_notice ?? null,
    keyword_replies: a.keyword_replies ?? [], invitations: a.invitations ?? [],
  };
  site.bot = { ...site.bot, handoff_keywords: site.bot?.handoff_keywords ?? [] };
}

/** The settings as a PATCH carries them: without `api_key_set`, with a new key if one was typed. */
export function withKey<S extends { api_key_set: boolean }>(settings: S, typed: string | undefined): Omit<S, 'api_key_set'> & { api_key?: string } {
  const { api_key_set: _stored, ...rest } = settings;
  const key = newKey(typed);
  return key ? { ...rest, api_key: key } : rest;
}

/** Whether what was typed for a key changes anything when saved. */
export const keyChanged = (typed: string | undefined): boolean => newKey(typed) !== null;

function specCtx(ctx: AutomationCtx, section: KeySection) {
  return {
    ...ctx,
    keyTyped: ctx.keyEdits.get(section),
    setKeyTyped: (typed: string | undefined) => (typed === undefined ? ctx.keyEdits.delete(section) : ctx.keyEdits.set(section, typed)),
  };
}

export function translationSection(ctx: AutomationCtx, s: TranslationSettings): HTMLElement {
  return card(t('secTranslation'), { id: 'site-translation', sub: t('secTranslationSub') },
    specFields(specCtx(ctx, 'translation'), s, TRANSLATION_FIELDS, 'translation'));
}

export function botSection(ctx: AutomationCtx, s: BotSettings): HTMLElement {
  return card(t('secBot'), { id: 'site-bot', sub: t('secBotSub') }, specFields(specCtx(ctx, 'bot'), s, BOT_FIELDS, 'bot'));
}

export function automationSection(ctx: AutomationCtx, a: AutomationSettings): HTMLElement {
  const edited = () => ctx.edited();
  const keywordReplies = listEditor(ctx, {
    items: a.keyword_replies, key: 'kw', max: 50, addLabel: 'kwAdd', empty: 'kwNone',
    itemLabel: (i) => t('kwItem', { n: i + 1 }),
    make: () => ({ keywords: [], reply: {} }),
    focusOf: (i) => `kw-${i}-keywords`,
    row: (rule, i) => {
      const words = wordsInput(rule.keywords, `kw-${i}-keywords`, { max: 20, onchange: (next) => { rule.keywords = next; edited(); } });
      return [
        field(t('kwKeywords'), words.el, { target: words.input, hint: t('kwKeywordsHint'), className: 'field--words' }),
        localizedInputs(t('kwReply'), rule.reply, `kw-${i}-reply`, edited, { multiline: true, max: MAX_TEXT }),
      ];
    },
  });
  const invitations = listEditor(ctx, {
    items: a.invitations, key: 'inv', max: 20, addLabel: 'invAdd', empty: 'invNone',
    itemLabel: (i) => t('invItem', { n: i + 1 }),
    make: () => ({ url_contains: '', after_seconds: 30, message: {} }),
    focusOf: (i) => `inv-${i}-url`,
    row: (inv, i) => {
      const url = h('input.mono', {
        'data-k': `inv-${i}-url`, maxlength: 200, value: inv.url_contains, placeholder: '/pricing', spellcheck: 'false',
        oninput: () => { inv.url_contains = url.value.trim(); edited(); },
      });
      const after = h('input', {
        'data-k': `inv-${i}-after`, type: 'number', min: 0, max: MAX_INVITE_DELAY_S, step: 1, value: inv.after_seconds,
        oninput: () => { inv.after_seconds = Number(after.value); edited(); },
      });
      return [
        h('div.form-grid', null,
          field(t('invPage'), url, { hint: t('invPageHint') }),
          field(t('invAfter'), after, { hint: t('invAfterHint') })),
        localizedInputs(t('invMessage'), inv.message, `inv-${i}-message`, edited, { multiline: true, max: MAX_TEXT }),
      ];
    },
  });
  const closing = a.auto_close_seconds !== null;
  const minutes = h('input', {
    'data-k': 'close-minutes', type: 'number', min: 1, max: CLOSE_MAX_S / 60, step: 1,
    value: Math.round(((a.auto_close_seconds ?? 1800) / 60) * 100) / 100, disabled: !closing,
    oninput: () => { a.auto_close_seconds = Math.round(Number(minutes.value) * 60); edited(); },
  });
  return card(t('secAutomation'), { id: 'site-automation', sub: t('secAutomationSub') },
    optionalLocalized(ctx, t('awayReply'), a.away_reply, (v) => { a.away_reply = v; }, 'away', { multiline: true, max: MAX_TEXT }),
    h('p.field-hint.fieldset-hint', null, t('awayReplyHint')),
    h('h3.sub-title', null, t('kwTitle')),
    h('p.card-sub', null, t('kwSub')),
    keywordReplies,
    h('h3.sub-title', null, t('closeTitle')),
    h('div.close-row', null,
      checkbox(t('closeEnabled'), closing, (on) => {
        a.auto_close_seconds = on ? Math.round(Number(minutes.value) * 60) || 1800 : null;
        edited();
        ctx.render('close-enabled');
      }, { 'data-k': 'close-enabled' }),
      field(t('closeMinutes'), minutes)),
    closing ? optionalLocalized(ctx, t('closeNotice'), a.close_notice, (v) => { a.close_notice = v; }, 'close-notice', { multiline: true, max: MAX_TEXT }) : null,
    h('h3.sub-title', null, t('invTitle')),
    h('p.card-sub', null, t('invSub')),
    invitations);
}

function checkAutomation(a: AutomationSettings): Problem | null {
  for (const [i, rule] of a.keyword_replies.entries()) {
    if (!rule.keywords.some((k) => k.trim())) return { text: t('kwKeywordsRequired', { n: i + 1 }), key: `kw-${i}-keywords` };
    if (!hasText(rule.reply)) return { text: t('kwReplyRequired', { n: i + 1 }), key: `kw-${i}-reply-en` };
  }
  const s = a.auto_close_seconds;
  if (s !== null && !(Number.isInteger(s) && s >= CLOSE_MIN_S && s <= CLOSE_MAX_S)) return { text: t('closeMinutesInvalid'), key: 'close-minutes' };
  for (const [i, inv] of a.invitations.entries()) {
    if (!(Number.isInteger(inv.after_seconds) && inv.after_seconds >= 0 && inv.after_seconds <= MAX_INVITE_DELAY_S)) return { text: t('invAfterInvalid', { n: i + 1 }), key: `inv-${i}-after` };
    if (!hasText(inv.message)) return { text: t('invMessageRequired', { n: i + 1 }), key: `inv-${i}-message-en` };
  }
  return null;
}

/** The first problem in these sections of the draft, in words, with the control to fix it in. */
export function checkAutomationSections(d: SiteDetail): Problem | null {
  return checkAutomation(d.automation) ?? checkSpec(d.translation, TRANSLATION_FIELDS, 'translation') ?? checkSpec(d.bot, BOT_FIELDS, 'bot');
}
