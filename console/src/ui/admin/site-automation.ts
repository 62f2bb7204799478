// The site page's sections for what works without an agent: automations (away reply, keyword
// auto-replies, closing idle chats, invitations), translation, and the bot. They edit the page's
// draft in place; the page validates, sends the changed parts and shows the server's answer.
// Rules follow the server's (src/admin.rs, core/src/{translate,automation,bot}.rs).
import { h } from '../../dom';
import type { AutomationSettings, BotSettings, SiteDetail, TranslationSettings } from '../../types';
import { card, checkbox, field } from './common';
import {
  checkSpec, hasText, keyToSend, listEditor, localizedInputs, optionalLocalized, specFields, wordsInput,
  type FieldSpec, type FormCtx, type KeyEdit, type Problem, type SpecCtx,
} from './form';
import { t } from './strings';

/** The settings that hold a write-only key. */
export type KeySection = 'translation' | 'bot';

export interface AutomationCtx extends FormCtx {
  /** Key edits by section: a new key typed, or null to remove the stored one (cleared once saved or discarded). */
  keyEdits: Map<KeySection, string | null>;
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

/** The Workers AI model the server asks when the settings name none of its own (`@cf/…`). */
const DEFAULT_WORKERS_AI_MODEL = '@cf/meta/llama-3.1-8b-instruct';
const WORKERS_AI_MODEL_RE = /^@cf\/\S+$/;

/** A model that suits the bot's new kind: Workers AI takes only its own (`@cf/…`), others none of those. */
function fitModelToKind(s: BotSettings): void {
  const workersAiModel = WORKERS_AI_MODEL_RE.test(s.model);
  if (s.kind === 'workers_ai' && !workersAiModel) s.model = DEFAULT_WORKERS_AI_MODEL;
  else if (s.kind === 'llm' && workersAiModel) s.model = '';
}

/** The team's own bot answers through the API (as its key's name), with no model or knowledge of Parley's. */
const isWebhook = (s: BotSettings) => s.kind === 'webhook';
const hasEndpoint = (s: BotSettings) => s.kind !== 'workers_ai';

const BOT_FIELDS: FieldSpec<BotSettings>[] = [
  { kind: 'check', key: 'enabled', label: 'botEnabled' },
  {
    kind: 'select', key: 'kind', label: 'botKind', hint: (s) => `botKindHint_${s.kind}`, wide: true, chosen: fitModelToKind,
    options: [['llm', 'botKind_llm'], ['workers_ai', 'botKind_workers_ai'], ['webhook', 'botKind_webhook']],
  },
  { kind: 'text', key: 'name', label: 'botName', hint: 'botNameHint', max: 60, shown: (s) => !isWebhook(s), required: (s) => s.enabled },
  { kind: 'text', key: 'model', label: 'modelLabel', max: 100, mono: true, shown: (s) => s.kind === 'llm', required: (s) => s.enabled },
  {
    kind: 'text', key: 'model', label: 'modelLabel', hint: 'botWorkersAiModelHint', max: 100, mono: true, shown: (s) => s.kind === 'workers_ai',
    required: (s) => s.enabled, pattern: WORKERS_AI_MODEL_RE, invalid: 'botWorkersAiModelInvalid', suggestions: [DEFAULT_WORKERS_AI_MODEL],
  },
  {
    kind: 'text', key: 'endpoint', label: (s) => (isWebhook(s) ? 'botWebhookUrl' : 'endpointLabel'), hint: (s) => (isWebhook(s) ? 'botWebhookUrlHint' : 'botEndpointHint'),
    max: 2048, mono: true, wide: true, placeholder: 'https://', pattern: URL_RE, invalid: 'endpointInvalid', shown: hasEndpoint, required: (s) => s.enabled,
  },
  {
    kind: 'key', key: 'api_key_set', label: (s) => (isWebhook(s) ? 'botWebhookSecret' : 'apiKeyLabel'), hint: (s) => (isWebhook(s) ? 'botWebhookSecretHint' : 'botKeyHint'),
    shown: hasEndpoint,
  },
  { kind: 'seconds', key: 'timeout_ms', label: 'timeoutLabel', hint: (s) => (isWebhook(s) ? 'botWebhookTimeoutHint' : 'botTimeoutHint'), min: 1, max: 60 },
  { kind: 'textarea', key: 'knowledge', label: 'botKnowledge', hint: 'botKnowledgeHint', max: 20_000, rows: 8, wide: true, shown: (s) => !isWebhook(s) },
  { kind: 'words', key: 'handoff_keywords', label: 'botHandoff', hint: 'botHandoffHint', max: 30, wide: true },
];

/** Fills in what a server that predates a part leaves out. */
export function normalizeAutomation(site: SiteDetail): void {
  const a: Partial<AutomationSettings> = site.automation ?? {};
  site.automation = {
    away_reply: a.away_reply ?? null, auto_close_seconds: a.auto_close_seconds ?? null, close_notice: a.close_notice ?? null,
    keyword_replies: a.keyword_replies ?? [], invitations: a.invitations ?? [],
  };
  site.bot = { ...site.bot, kind: site.bot?.kind ?? 'llm', handoff_keywords: site.bot?.handoff_keywords ?? [] };
  // Show the model the server asks (it falls back to its default for a Workers AI bot).
  if (site.bot.kind === 'workers_ai') fitModelToKind(site.bot);
}

/** The settings as a PATCH carries them: without `api_key_set`, with the key's edit if it changes anything. */
export function withKey<S extends { api_key_set: boolean }>(settings: S, edit: KeyEdit): Omit<S, 'api_key_set'> & { api_key?: string } {
  const { api_key_set: _stored, ...rest } = settings;
  const key = keyToSend(edit);
  return key === null ? rest : { ...rest, api_key: key };
}

/** Whether a key's edit changes anything when saved. */
export const keyChanged = (edit: KeyEdit): boolean => keyToSend(edit) !== null;

function specCtx(ctx: AutomationCtx, section: KeySection): SpecCtx {
  return {
    ...ctx,
    // A removal is kept in the map as null; absent means the stored key stays.
    keyEdit: ctx.keyEdits.get(section),
    setKeyEdit: (edit) => (edit === undefined ? ctx.keyEdits.delete(section) : ctx.keyEdits.set(section, edit)),
  };
}

export function translationSection(ctx: AutomationCtx, s: TranslationSettings): HTMLElement {
  return card(t('secTranslation'), { id: 'site-translation', sub: t('secTranslationSub') },
    specFields(specCtx(ctx, 'translation'), s, TRANSLATION_FIELDS, 'translation'));
}

export function botSection(ctx: AutomationCtx, s: BotSettings): HTMLElement {
  return card(t('secBot'), { id: 'site-bot', sub: t('secBotSub') }, specFields(specCtx(ctx, 'bot'), s, BOT_FIELDS, 'bot'),
    // The team's own bot needs an API key to answer with: say where to make one.
    isWebhook(s) ? h('p.field-hint.bot-api-note', null, t('botWebhookApiNote'), ' ', h('a', { href: '#/api-keys', 'data-k': 'bot-api-keys-link' }, t('botWebhookApiLink'))) : null);
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
