// Site settings (owners and admins): name and allowed origins, the widget (colour, position,
// texts, pre-chat form, offline message, attachment limit), business hours, routing,
// automations, translation and the bot (site-automation.ts), data retention, the identity
// secret, and the site's webhooks. Edits are kept in a draft and saved together; only the parts
// that changed are sent, and the server's answer is what is shown.
import { api } from '../../api';
import { h, icon, mount } from '../../dom';
import { holdEdits } from '../../edits';
import { lang, LANGS } from '../../i18n';
import { t, type Key } from './strings';
import {
  RULE_KINDS, WEEKDAYS, type FormField, type Localized, type RoutingRule, type SiteDetail, type Span, type Weekday,
} from '../../types';
import { chipsInput } from './agents';
import {
  browserZone, card, checkbox, confirmDialog, copyButton, errorRow, errorText, field, loadingRow, markRefused, pageHead, refusedField, secretDialog, select,
  type FieldRefusal, type Page, type PageCtx,
} from './common';
import { localizedInputs } from './form';
import {
  automationSection, botSection, checkAutomationSections, keyChanged, normalizeAutomation, translationSection, withKey,
  type AutomationCtx, type KeySection,
} from './site-automation';
import { WebhooksCard } from './webhooks';
import { zoneSelectFor } from './zones';

type Patchable = 'name' | 'allowed_origins' | 'settings' | 'routing' | 'retention_days' | KeySection | 'automation';
const PATCHABLE: Patchable[] = ['name', 'allowed_origins', 'settings', 'routing', 'retention_days', 'translation', 'automation', 'bot'];
const MB = 1024 * 1024;
const TIME_RE = /^([01]\d|2[0-3]):[0-5]\d$|^24:00$/;
/** A real day written `YYYY-MM-DD`, as the server requires of holidays (2030-02-30 is not one). */
function isCalendarDate(v: string): boolean {
  if (!/^\d{4}-\d{2}-\d{2}$/.test(v)) return false;
  const day = new Date(`${v}T00:00:00Z`);
  return !Number.isNaN(day.getTime()) && day.toISOString().slice(0, 10) === v;
}
/** A seconds field as milliseconds; an empty field is no number (and fails the checks). */
function seconds(value: string): number {
  return value.trim() === '' ? NaN : Math.round(Number(value) * 1000);
}
const ORIGIN_RE = /^https?:\/\/[^/?#@\s]+$/;

/** The fields of a site's change the server may refuse (its `field`), in words and by control. */
const REFUSED_FIELDS: Record<string, FieldRefusal> = {
  name: { text: () => t('siteNameInvalid'), key: 'name' },
  allowed_origins: { text: () => t('originsRefused'), key: 'origins' },
  'routing.hours': { text: () => t('hoursRefused'), key: 'timezone' },
  'routing.answer_timeout_ms': { text: () => t('answerTimeoutInvalid'), key: 'answer-timeout' },
  'routing.heartbeat_timeout_ms': { text: () => t('presenceTimeoutInvalid'), key: 'presence-timeout' },
  'routing.reconnect_grace_ms': { text: () => t('reconnectGraceInvalid'), key: 'reconnect-grace' },
  'translation.endpoint': { text: () => t('publicUrlRefused', { field: t('endpointLabel') }), key: 'translation-endpoint' },
  'translation.agent_language': { text: () => t('trLanguageInvalid'), key: 'translation-agent_language' },
  'automation.keyword_replies': { text: () => t('keywordRepliesRefused'), key: 'kw-add' },
  'automation.invitations': { text: () => t('invitationsRefused'), key: 'inv-add' },
  'automation.auto_close_seconds': { text: () => t('closeMinutesInvalid'), key: 'close-minutes' },
  'bot.endpoint': { text: () => t('publicUrlRefused', { field: t('endpointLabel') }), key: 'bot-endpoint' },
  'bot.api_key': { text: () => t('botSecretRefused'), key: 'bot-api-key' },
  retention_days: { text: () => t('retentionInvalid'), key: 'retention' },
};

/** Now in `zone`: its date, weekday and time, or null for an unknown zone. */
export function zoneNow(zone: string, at = Date.now()): { date: string; day: Weekday; time: string } | null {
  try {
    const parts = new Intl.DateTimeFormat('en-US', {
      timeZone: zone, year: 'numeric', month: '2-digit', day: '2-digit', weekday: 'short', hour: '2-digit', minute: '2-digit', hourCycle: 'h23',
    }).formatToParts(at);
    const get = (type: string) => parts.find((p) => p.type === type)?.value ?? '';
    const day = get('weekday').toLowerCase().slice(0, 3) as Weekday;
    return { date: `${get('year')}-${get('month')}-${get('day')}`, day, time: `${get('hour')}:${get('minute')}` };
  } catch {
    return null;
  }
}

/** Whether hours say open at `at` (as the server decides it). */
export function openAt(hours: SiteDetail['routing']['hours'], at = Date.now()): boolean | null {
  if (!hours.enabled) return true;
  const now = zoneNow(hours.timezone || 'UTC', at);
  if (!now) return null;
  if (hours.holidays.includes(now.date)) return false;
  return (hours.weekly[now.day] ?? []).some((s) => s.open <= now.time && (now.time < s.close || s.close === '24:00'));
}

/** Scrolls the page (not the console around it) to a section and moves focus to its title. */
export function scrollToSection(id: string): void {
  const target = document.getElementById(id);
  const host = target?.closest<HTMLElement>('.pages');
  if (!target || !host) return;
  const top = target.getBoundingClientRect().top - host.getBoundingClientRect().top + host.scrollTop - 16;
  host.scrollTo({ top, behavior: matchMedia('(prefers-reduced-motion: reduce)').matches ? 'auto' : 'smooth' });
  const title = target.querySelector<HTMLElement>('h2');
  if (title) {
    title.tabIndex = -1;
    title.focus({ preventScroll: true });
  }
}

function weekdayName(day: Weekday): string {
  // 2024-01-01 was a Monday.
  const i = WEEKDAYS.indexOf(day);
  return new Intl.DateTimeFormat(lang(), { weekday: 'long', timeZone: 'UTC' }).format(Date.UTC(2024, 0, 1 + i));
}

function normalize(site: SiteDetail): SiteDetail {
  const s = structuredClone(site);
  s.allowed_origins ??= [];
  const hours = s.routing.hours;
  hours.weekly = Object.fromEntries(WEEKDAYS.map((d) => [d, hours.weekly?.[d] ?? []])) as typeof hours.weekly;
  hours.holidays = [...(hours.holidays ?? [])].sort();
  hours.timezone ||= browserZone();
  s.routing.rules ??= [];
  s.settings.prechat.fields ??= [];
  normalizeAutomation(s);
  return s;
}

export class SitePage implements Page {
  readonly el = h('div.page.page--site');
  private siteId: string | null = null;
  private loaded: SiteDetail | null = null;
  private draft: SiteDetail | null = null;
  private error: string | null = null;
  private saving = false;
  private message: { text: string; kind: 'error' | 'info' } | null = null;
  private origins = '';
  private webhooks: WebhooksCard | null = null;
  private bar = h('div.save-bar', { role: 'region' });
  private departments: string[] = [];
  /** Key edits (translation, bot): the keys are write-only, so not part of the draft. */
  private keyEdits = new Map<KeySection, string | null>();
  /** The site whose settings are being fetched. */
  private loadingSite: string | null = null;
  private form: AutomationCtx = { edited: () => this.edited(), render: (focus) => this.render(focus), keyEdits: this.keyEdits };

  /** Leaving the console (reload, close) with unsaved settings asks first. */
  private beforeUnload = (ev: BeforeUnloadEvent) => {
    if (!this.dirty()) return;
    ev.preventDefault();
    ev.returnValue = '';
  };

  /** A sign-in that ends keeps the draft and a webhook being added (see edits.ts). */
  private releaseEdits = holdEdits(() => this.dirty() || Boolean(this.webhooks?.holdsEdits()));

  constructor(private ctx: PageCtx) {
    window.addEventListener('beforeunload', this.beforeUnload);
  }

  show(arg?: string): void {
    const sites = this.ctx.store.sites;
    const want = arg && sites.some((s) => s.id === arg) ? arg : this.siteId && sites.some((s) => s.id === this.siteId) ? this.siteId : sites[0]?.id ?? arg ?? null;
    // Shown again while its first load is under way (the sites list arrived): that load will do.
    if (want !== this.siteId || (!this.loaded && this.loadingSite !== want)) {
      this.siteId = want;
      this.loaded = null;
      this.draft = null;
      this.error = null;
      this.message = null;
      this.keyEdits.clear();
      this.webhooks?.destroy();
      this.webhooks = want ? new WebhooksCard(this.ctx, want) : null;
      this.render();
      void this.load();
    } else {
      this.render();
    }
    this.webhooks?.load();
  }

  relabel(): void {
    this.render();
  }

  destroy(): void {
    window.removeEventListener('beforeunload', this.beforeUnload);
    this.releaseEdits();
    this.webhooks?.destroy();
  }

  private async load(): Promise<void> {
    const id = this.siteId;
    if (!id) {
      this.render();
      return;
    }
    this.loadingSite = id;
    try {
      const [site, depts] = await Promise.all([
        api<SiteDetail>(`/api/v1/sites/${encodeURIComponent(id)}`),
        api<{ departments: { name: string }[] }>('/api/v1/departments').catch(() => ({ departments: [] })),
      ]);
      if (id !== this.siteId) return;
      if (typeof site.identity_verification !== 'boolean') {
        // Servers that leave it out of the site still tell the widget whether ids are verified.
        const config = await api<{ identity?: { verification?: boolean } }>(`/api/v1/widget/config?site=${encodeURIComponent(site.site_key)}`).catch(() => null);
        site.identity_verification = Boolean(config?.identity?.verification);
      }
      this.loaded = normalize(site);
      this.draft = normalize(site);
      this.origins = this.draft.allowed_origins.join('\n');
      this.departments = (depts?.departments ?? []).map((d) => d.name);
      this.error = null;
    } catch (e) {
      this.error = errorText(e);
    } finally {
      if (this.loadingSite === id) this.loadingSite = null;
    }
    this.render();
  }

  /** The top-level parts whose draft differs from what was loaded (or whose key was edited), as sent. */
  private changes(): Record<string, unknown> {
    const d = this.draft;
    const l = this.loaded;
    if (!d || !l) return {};
    const out: Record<string, unknown> = {};
    for (const k of PATCHABLE) {
      const keyEdit = k === 'translation' || k === 'bot' ? this.keyEdits.get(k) : undefined;
      if (JSON.stringify(d[k]) === JSON.stringify(l[k]) && !keyChanged(keyEdit)) continue;
      out[k] = k === 'translation' || k === 'bot' ? withKey(d[k], keyEdit) : d[k];
    }
    return out;
  }

  private dirty(): boolean {
    return Object.keys(this.changes()).length > 0;
  }

  /** Called after every edit: the save bar follows. */
  private edited = () => {
    if (this.message?.kind === 'info') this.message = null;
    this.renderBar();
  };

  // ---- rendering --------------------------------------------------------------------------------

  private render(focus?: string): void {
    const sites = this.ctx.store.sites;
    const picker = sites.length > 1
      ? h('label.site-picker', null, h('span.sr-only', null, t('siteLabel')),
        select(sites.map((s) => [s.id, s.name || s.id] as [string, string]), this.siteId ?? '', (v) => {
          if (this.dirty() && !window.confirm(t('discardChanges'))) {
            this.render();
            return;
          }
          location.hash = `#/settings/${encodeURIComponent(v)}`;
        }, { name: 'site' }))
      : null;
    const d = this.draft;
    let body: Node[];
    if (!this.siteId) body = [this.ctx.store.sitesLoaded ? h('p.muted', null, t('noSites')) : loadingRow()];
    else if (this.error && !d) body = [errorRow(this.error, () => void this.load())];
    else if (!d) body = [loadingRow()];
    else body = [
      h('div.settings-layout', null,
        h('nav.settings-nav', { 'aria-label': t('settingsSections') },
          ([['site-general', 'secGeneral'], ['site-widget', 'secWidget'], ['site-prechat', 'secPrechat'], ['site-hours', 'secHours'],
            ['site-routing', 'secRouting'], ['site-automation', 'secAutomation'], ['site-translation', 'secTranslation'], ['site-bot', 'secBot'],
            ['site-data', 'secData'], ['site-identity', 'secIdentity'], ['site-webhooks', 'secWebhooks']] as [string, Key][])
            .map(([id, key]) => h('a.settings-nav-link', {
              href: `#${id}`,
              onclick: (ev: MouseEvent) => {
                // In-page jumps must not touch the route (#/settings/…), and only the page scrolls.
                ev.preventDefault();
                scrollToSection(id);
              },
            }, t(key)))),
        h('div.settings-main', null,
          this.general(d), this.widget(d), this.prechat(d), this.hours(d), this.routing(d),
          automationSection(this.form, d.automation), translationSection(this.form, d.translation), botSection(this.form, d.bot),
          this.data(d), this.identity(d),
          this.webhooks ? this.webhooks.el : null)),
    ];
    mount(this.el, pageHead(t('siteSettingsTitle'), d ? t('siteSettingsSub', { name: this.loaded?.name ?? '' }) : null, picker), ...body, d ? this.bar : null);
    this.renderBar();
    if (focus) (this.el.querySelector(`[data-k="${focus}"]`) as HTMLElement | null)?.focus();
  }

  private renderBar(): void {
    const dirty = this.dirty();
    const msg = this.message;
    // It follows the scrolling while there is something to save or to say; otherwise it ends the page.
    this.bar.className = `save-bar ${dirty ? 'is-dirty' : ''} ${dirty || msg ? 'is-floating' : ''}`;
    this.bar.setAttribute('aria-label', t('saveBar'));
    mount(this.bar,
      h('div.save-bar-text', { role: msg?.kind === 'error' ? 'alert' : 'status' },
        msg ? h('span', { class: `save-msg save-msg--${msg.kind}` }, msg.kind === 'error' ? icon('warn', 15) : icon('check', 15), msg.text)
          : h('span.muted', null, dirty ? t('unsavedChanges') : t('allSaved'))),
      h('button.btn.btn-ghost', { type: 'button', disabled: !dirty || this.saving, onclick: () => this.discard() }, t('discardEdits')),
      h('button.btn.btn-primary', { type: 'button', 'data-action': 'save-site', disabled: !dirty || this.saving, onclick: () => void this.save() },
        this.saving ? t('saving') : t('saveChanges')));
  }

  private discard(): void {
    if (!this.loaded) return;
    this.draft = normalize(this.loaded);
    this.origins = this.draft.allowed_origins.join('\n');
    this.keyEdits.clear();
    this.message = null;
    this.render();
  }

  /** The first problem in the draft, in words, with the field to focus. */
  private validate(): { text: string; key: string } | null {
    const d = this.draft!;
    if (!d.name.trim()) return { text: t('nameRequired'), key: 'name' };
    const bad = d.allowed_origins.find((o) => !ORIGIN_RE.test(o));
    if (bad !== undefined) return { text: t('originInvalid', { origin: bad }), key: 'origins' };
    if (!/^#[0-9a-f]{6}$/i.test(d.settings.appearance.color)) return { text: t('colorInvalid'), key: 'color' };
    const names = new Set<string>();
    for (const [i, f] of d.settings.prechat.fields.entries()) {
      if (!/^[a-z0-9_]{1,32}$/.test(f.name)) return { text: t('fieldNameInvalid'), key: `pf-${i}-name` };
      if (names.has(f.name)) return { text: t('fieldNameTaken', { name: f.name }), key: `pf-${i}-name` };
      names.add(f.name);
    }
    const mb = d.settings.attachments.max_bytes / MB;
    if (!(mb >= 0.1 && mb <= 100)) return { text: t('maxSizeInvalid'), key: 'max-size' };
    const hours = d.routing.hours;
    for (const day of WEEKDAYS) {
      for (const [i, s] of hours.weekly[day].entries()) {
        if (!TIME_RE.test(s.open) || !TIME_RE.test(s.close) || s.open >= s.close) {
          return { text: t('spanInvalid', { day: weekdayName(day) }), key: `span-${day}-${i}-open` };
        }
      }
    }
    if (!(d.routing.answer_timeout_ms >= 5000)) return { text: t('answerTimeoutInvalid'), key: 'answer-timeout' };
    const presence = d.routing.heartbeat_timeout_ms;
    // The server's bounds (src/admin.rs).
    if (!(presence >= 5_000 && presence <= 86_400_000)) return { text: t('presenceTimeoutInvalid'), key: 'presence-timeout' };
    const grace = d.routing.reconnect_grace_ms;
    if (!(grace >= 0 && grace <= 3_600_000)) return { text: t('reconnectGraceInvalid'), key: 'reconnect-grace' };
    for (const [i, r] of d.routing.rules.entries()) {
      if (!r.value.trim()) return { text: t('ruleValueRequired'), key: `rule-${i}-value` };
      if (!r.department.trim()) return { text: t('ruleDepartmentRequired'), key: `rule-${i}-department` };
    }
    const automation = checkAutomationSections(d);
    if (automation) return automation;
    const days = d.retention_days;
    if (days !== null && !(Number.isInteger(days) && days >= 1 && days <= 3650)) return { text: t('retentionInvalid'), key: 'retention' };
    return null;
  }

  private async save(): Promise<void> {
    if (!this.draft || !this.siteId || this.saving) return;
    this.draft.allowed_origins = this.origins.split(/[\s,]+/).map((o) => o.trim().replace(/\/+$/, '')).filter(Boolean);
    const problem = this.validate();
    for (const el of this.el.querySelectorAll('[aria-invalid="true"]')) el.removeAttribute('aria-invalid');
    if (problem) {
      this.showProblem(problem.text, problem.key);
      return;
    }
    const body = this.changes();
    if (!Object.keys(body).length) return;
    this.saving = true;
    this.message = null;
    this.renderBar();
    try {
      await api(`/api/v1/sites/${encodeURIComponent(this.siteId)}`, { method: 'PATCH', body });
      // What the server kept (defaults filled in, texts trimmed) becomes the form.
      const fresh = await api<SiteDetail>(`/api/v1/sites/${encodeURIComponent(this.siteId)}`);
      this.loaded = normalize(fresh);
      this.draft = normalize(fresh);
      this.origins = this.draft.allowed_origins.join('\n');
      this.keyEdits.clear();
      const site = this.ctx.store.sites.find((s) => s.id === this.siteId);
      if (site) site.name = fresh.name;
      this.message = { text: t('siteSaved'), kind: 'info' };
      this.saving = false;
      this.render();
    } catch (e) {
      this.saving = false;
      const refused = refusedField(e, REFUSED_FIELDS);
      this.showProblem(refused?.text() ?? errorText(e), refused?.key);
    }
  }

  /** Says what is wrong in the save bar, and marks and focuses the control to fix it in. */
  private showProblem(text: string, key?: string): void {
    this.message = { text, kind: 'error' };
    this.renderBar();
    if (key) markRefused(this.el.querySelector<HTMLElement>(`[data-k="${key}"]`));
  }

  // ---- sections ---------------------------------------------------------------------------------

  /** Inputs for one text in English and Chinese. */
  private localized(label: string, text: Localized, key: string, opts: { multiline?: boolean; max?: number } = {}): HTMLElement {
    return localizedInputs(label, text, key, () => this.edited(), opts);
  }

  private general(d: SiteDetail): HTMLElement {
    const name = h('input', { 'data-k': 'name', maxlength: 100, value: d.name, oninput: () => { d.name = name.value; this.edited(); } });
    const origins = h('textarea', {
      'data-k': 'origins', rows: 3, spellcheck: 'false', placeholder: 'https://www.example.com',
      oninput: () => {
        this.origins = origins.value;
        d.allowed_origins = origins.value.split(/[\s,]+/).map((o) => o.trim().replace(/\/+$/, '')).filter(Boolean);
        this.edited();
      },
    });
    origins.value = this.origins;
    return card(t('secGeneral'), { id: 'site-general' },
      h('div.form-grid', null,
        field(t('siteName'), name),
        h('div.field', null, h('span.field-label', null, t('siteKey')),
          h('div.inline-copy', null, h('code.mono', null, d.site_key), copyButton(() => d.site_key))),
        field(t('allowedOrigins'), origins, { hint: t('allowedOriginsHint'), className: 'field--wide' })));
  }

  private widget(d: SiteDetail): HTMLElement {
    const a = d.settings.appearance;
    const preview = h('div.launcher-preview', { class: `is-${a.position}`, 'aria-hidden': 'true' },
      h('span.launcher-chip', null, icon('chat', 16), h('span.launcher-label', null, a.launcher_text[lang()] ?? a.launcher_text.en ?? '')));
    const paint = () => {
      preview.style.setProperty('--c', /^#[0-9a-f]{6}$/i.test(a.color) ? a.color : '#2563eb');
      preview.className = `launcher-preview is-${a.position}`;
      (preview.querySelector('.launcher-label') as HTMLElement).textContent = a.launcher_text[lang()] ?? a.launcher_text.en ?? '';
    };
    paint();
    const hex = h('input.color-hex', {
      'data-k': 'color', maxlength: 7, value: a.color, spellcheck: 'false', 'aria-label': t('colorHex'),
      oninput: () => {
        a.color = hex.value.trim().toLowerCase();
        if (/^#[0-9a-f]{6}$/.test(a.color)) picker.value = a.color;
        paint();
        this.edited();
      },
    });
    const picker = h('input.color-pick', {
      type: 'color', value: /^#[0-9a-f]{6}$/i.test(a.color) ? a.color : '#2563eb',
      oninput: () => {
        a.color = picker.value.toLowerCase();
        hex.value = a.color;
        paint();
        this.edited();
      },
    });
    const position = select([['right', t('posRight')], ['left', t('posLeft')]], a.position, (v) => {
      a.position = v;
      paint();
      this.edited();
    }, { 'data-k': 'position' });
    const theme = select(
      [['auto', t('themeAuto')], ['light', t('themeLight')], ['dark', t('themeDark')]],
      a.theme,
      (v) => {
        a.theme = v;
        this.edited();
      },
      { 'data-k': 'theme' },
    );
    const size = h('input', {
      'data-k': 'max-size', type: 'number', min: 0.1, max: 100, step: 0.1,
      value: Math.round((d.settings.attachments.max_bytes / MB) * 10) / 10,
      oninput: () => {
        d.settings.attachments.max_bytes = Math.round(Number(size.value) * MB);
        this.edited();
      },
    });
    const launcherInputs = this.localized(t('launcherText'), a.launcher_text, 'launcher', { max: 40 });
    launcherInputs.addEventListener('input', paint);
    return card(t('secWidget'), { id: 'site-widget', sub: t('secWidgetSub') },
      h('div.widget-top', null,
        h('div.form-grid', null,
          field(t('colorLabel'), h('div.color-row', null, picker, hex), { target: picker }),
          field(t('positionLabel'), position),
          field(t('themeLabel'), theme)),
        preview),
      launcherInputs,
      this.localized(t('welcomeLabel'), d.settings.welcome, 'welcome', { multiline: true }),
      this.localized(t('offlineMessageLabel'), d.settings.offline.message, 'offline', { multiline: true }),
      h('div.form-grid', null, field(t('maxSizeLabel'), size, { hint: t('maxSizeHint') })));
  }

  private prechat(d: SiteDetail): HTMLElement {
    const p = d.settings.prechat;
    const types: [FormField['type'], string][] = [['text', t('ft_text')], ['email', t('ft_email')], ['tel', t('ft_tel')], ['textarea', t('ft_textarea')]];
    const rows = p.fields.map((f, i) => {
      const name = h('input.mono', {
        'data-k': `pf-${i}-name`, value: f.name, maxlength: 32, spellcheck: 'false', 'aria-label': t('fieldName'), placeholder: 'name',
        oninput: () => { f.name = name.value.trim(); this.edited(); },
      });
      const label = (tag: string) => {
        const el = h('input', {
          'data-k': `pf-${i}-label-${tag}`, value: f.label[tag] ?? '', maxlength: 100, lang: tag,
          'aria-label': `${t('fieldLabel')} (${LANGS.find((l) => l.tag === tag)?.label ?? tag})`,
          oninput: () => {
            if (el.value) f.label[tag] = el.value;
            else delete f.label[tag];
            this.edited();
          },
        });
        return el;
      };
      return h('tr', null,
        h('td', null, name),
        h('td', null, label('en')),
        h('td', null, label('zh-CN')),
        h('td', null, select(types, f.type, (v) => { f.type = v; this.edited(); }, { 'aria-label': t('fieldType') })),
        h('td.center', null, h('input', { type: 'checkbox', checked: f.required, 'aria-label': t('fieldRequired'), onchange: (ev: Event) => { f.required = (ev.target as HTMLInputElement).checked; this.edited(); } })),
        h('td.row-actions', null,
          h('button.icon-btn.icon-btn--sm', { type: 'button', 'aria-label': t('moveUp'), title: t('moveUp'), disabled: i === 0, onclick: () => this.move(p.fields, i, -1, `pf-${i - 1}-name`) }, icon('up')),
          h('button.icon-btn.icon-btn--sm', { type: 'button', 'aria-label': t('moveDown'), title: t('moveDown'), disabled: i === p.fields.length - 1, onclick: () => this.move(p.fields, i, 1, `pf-${i + 1}-name`) }, icon('down')),
          h('button.icon-btn.icon-btn--sm', { type: 'button', 'aria-label': t('removeItem', { item: f.name || t('fieldName') }), title: t('remove'), onclick: () => { p.fields.splice(i, 1); this.edited(); this.render('add-field'); } }, icon('trash', 16))));
    });
    return card(t('secPrechat'), { id: 'site-prechat', sub: t('secPrechatSub') },
      checkbox(t('prechatEnabled'), p.enabled, (on) => { p.enabled = on; this.edited(); }, { 'data-k': 'prechat-enabled' }),
      p.fields.length
        ? h('div.table-wrap', null, h('table.table.table--form', null,
          h('thead', null, h('tr', null,
            h('th', { scope: 'col' }, t('fieldName')), h('th', { scope: 'col' }, `${t('fieldLabel')} · English`), h('th', { scope: 'col' }, `${t('fieldLabel')} · 简体中文`),
            h('th', { scope: 'col' }, t('fieldType')), h('th.center', { scope: 'col' }, t('fieldRequired')), h('th', { scope: 'col' }, h('span.sr-only', null, t('actionsCol'))))),
          h('tbody', null, rows)))
        : h('p.muted.empty-line', null, t('noPrechatFields')),
      h('button.btn.btn-secondary.btn-sm', {
        type: 'button', 'data-k': 'add-field', disabled: p.fields.length >= 10,
        onclick: () => {
          p.fields.push({ name: '', label: {}, type: 'text', required: false });
          this.edited();
          this.render(`pf-${p.fields.length - 1}-name`);
        },
      }, icon('plus', 14), t('addField')));
  }

  private move<T>(list: T[], i: number, by: number, focus: string): void {
    const j = i + by;
    if (j < 0 || j >= list.length) return;
    [list[i], list[j]] = [list[j], list[i]];
    this.edited();
    this.render(focus);
  }

  private hours(d: SiteDetail): HTMLElement {
    const hours = d.routing.hours;
    const status = h('p.hours-now', { role: 'status', 'aria-live': 'polite' });
    const paintStatus = () => {
      const now = zoneNow(hours.timezone);
      const open = openAt(hours);
      status.replaceChildren(
        now ? t('hoursNowIn', { zone: hours.timezone, time: `${weekdayName(now.day)} ${now.time}` }) : '',
        ' ',
        !hours.enabled ? h('span.pill.pill--open', null, t('alwaysOpen'))
          : open ? h('span.pill.pill--open', { 'data-open': 'true' }, t('openNow')) : h('span.pill.pill--closed', { 'data-open': 'false' }, t('closedNow')));
    };
    const changed = () => {
      paintStatus();
      this.edited();
    };
    paintStatus();
    const tz = zoneSelectFor(hours.timezone, (v) => { hours.timezone = v; changed(); });
    tz.dataset.k = 'timezone';
    const days = WEEKDAYS.map((day) => {
      const spans = hours.weekly[day];
      const spanEls = spans.map((s: Span, i) => {
        const time = (which: 'open' | 'close') => {
          const el = h('input', {
            type: 'time', 'data-k': `span-${day}-${i}-${which}`, value: s[which] === '24:00' ? '23:59' : s[which], step: 300,
            'aria-label': `${weekdayName(day)} ${which === 'open' ? t('opens') : t('closes')}`,
            oninput: () => { s[which] = el.value; changed(); },
          });
          return el;
        };
        return h('span.span', null, time('open'), h('span.span-dash', { 'aria-hidden': 'true' }, '–'), time('close'),
          h('button.icon-btn.icon-btn--sm', {
            type: 'button', 'aria-label': t('removeHours', { day: weekdayName(day) }), title: t('remove'),
            onclick: () => { spans.splice(i, 1); changed(); this.render(`add-span-${day}`); },
          }, icon('close', 12)));
      });
      return h('div.day-row', { dataset: { day } },
        h('div.day-name', null, weekdayName(day)),
        h('div.day-spans', null, spanEls.length ? spanEls : h('span.muted.day-closed', null, t('closedAllDay')),
          h('button.btn.btn-ghost.btn-sm', {
            type: 'button', 'data-k': `add-span-${day}`, 'data-action': 'add-span', disabled: spans.length >= 6,
            onclick: () => {
              const last = spans[spans.length - 1];
              spans.push(last ? { open: last.close < '23:00' ? last.close : '22:00', close: '23:59' } : { open: '09:00', close: '18:00' });
              changed();
              this.render(`span-${day}-${spans.length - 1}-open`);
            },
          }, icon('plus', 14), t('addHours'))),
      );
    });
    const mon = hours.weekly.mon;
    const copy = h('button.btn.btn-ghost.btn-sm', {
      type: 'button', disabled: !mon.length, 'data-k': 'copy-days',
      onclick: () => {
        for (const other of WEEKDAYS.slice(1, 5)) hours.weekly[other] = mon.map((s) => ({ ...s }));
        changed();
        this.render('copy-days');
      },
    }, icon('copy', 14), t('copyToWeekdays'));
    const holidays = chipsInput(hours.holidays, {
      placeholder: '', type: 'date', name: 'holiday', validate: isCalendarDate,
      onchange: (values) => {
        const next = [...values].sort();
        if (next.join() !== hours.holidays.join()) {
          hours.holidays = next;
          changed();
        }
      },
    });
    holidays.input.dataset.k = 'holidays';
    return card(t('secHours'), { id: 'site-hours', sub: t('secHoursSub') },
      checkbox(t('hoursEnabled'), hours.enabled, (on) => { hours.enabled = on; changed(); this.render('hours-enabled'); }, { 'data-k': 'hours-enabled' }),
      h('div', { class: hours.enabled ? 'hours' : 'hours is-off' },
        h('div.form-grid', null, field(t('timezoneLabel'), tz, { hint: t('timezoneHint') })),
        status,
        h('div.week', { role: 'group', 'aria-label': t('weeklyHours') }, days),
        h('div.week-tools', null, copy),
        field(t('holidaysLabel'), holidays.el, { hint: t('holidaysHint'), target: holidays.input, className: 'field--holidays' })));
  }

  private routing(d: SiteDetail): HTMLElement {
    const r = d.routing;
    const timeout = h('input', {
      'data-k': 'answer-timeout', type: 'number', min: 5, max: 86400, step: 5, value: Math.round(r.answer_timeout_ms / 1000),
      oninput: () => { r.answer_timeout_ms = Math.round(Number(timeout.value) * 1000); this.edited(); },
    });
    const presence = h('input', {
      'data-k': 'presence-timeout', type: 'number', min: 5, max: 86400, step: 5, value: Math.round(r.heartbeat_timeout_ms / 1000),
      oninput: () => { r.heartbeat_timeout_ms = seconds(presence.value); this.edited(); },
    });
    const grace = h('input', {
      'data-k': 'reconnect-grace', type: 'number', min: 0, max: 3600, step: 1, value: Math.round(r.reconnect_grace_ms / 1000),
      oninput: () => { r.reconnect_grace_ms = seconds(grace.value); this.edited(); },
    });
    const kinds = RULE_KINDS.map((k) => [k, t(`rule_${k}` as Key)] as [RoutingRule['when'], string]);
    const listId = 'dept-suggestions';
    const rules = r.rules.map((rule, i) => {
      const value = h('input', {
        'data-k': `rule-${i}-value`, value: rule.value, maxlength: 200, 'aria-label': t('ruleValue'),
        placeholder: t(`rulePh_${rule.when}` as Key),
        oninput: () => { rule.value = value.value; this.edited(); },
      });
      const dept = h('input', {
        'data-k': `rule-${i}-department`, value: rule.department, maxlength: 64, list: listId, 'aria-label': t('ruleDepartment'),
        oninput: () => { rule.department = dept.value; this.edited(); },
      });
      return h('li.rule', null,
        h('span.rule-n', { 'aria-hidden': 'true' }, String(i + 1)),
        select(kinds, rule.when, (v) => { rule.when = v; this.edited(); this.render(`rule-${i}-value`); }, { 'aria-label': t('ruleWhen') }),
        value,
        h('span.rule-arrow', null, t('ruleThen')),
        dept,
        h('span.rule-tools', null,
          h('button.icon-btn.icon-btn--sm', { type: 'button', 'aria-label': t('moveUp'), title: t('moveUp'), disabled: i === 0, onclick: () => this.move(r.rules, i, -1, `rule-${i - 1}-value`) }, icon('up')),
          h('button.icon-btn.icon-btn--sm', { type: 'button', 'aria-label': t('moveDown'), title: t('moveDown'), disabled: i === r.rules.length - 1, onclick: () => this.move(r.rules, i, 1, `rule-${i + 1}-value`) }, icon('down')),
          h('button.icon-btn.icon-btn--sm', { type: 'button', 'aria-label': t('removeRule', { n: i + 1 }), title: t('remove'), onclick: () => { r.rules.splice(i, 1); this.edited(); this.render('add-rule'); } }, icon('trash', 16))));
    });
    return card(t('secRouting'), { id: 'site-routing', sub: t('secRoutingSub') },
      h('div.form-grid', null,
        field(t('policyLabel'), select([['round_robin', t('policy_round_robin')], ['least_loaded', t('policy_least_loaded')]], r.policy, (v) => { r.policy = v; this.edited(); }, { 'data-k': 'policy' })),
        field(t('answerTimeout'), timeout, { hint: t('answerTimeoutHint') }),
        field(t('offlineBehavior'), select([['requeue', t('offline_requeue')], ['keep', t('offline_keep')]], r.offline_behavior, (v) => { r.offline_behavior = v; this.edited(); }, { 'data-k': 'offline-behavior' }), { className: 'field--wide' }),
        field(t('presenceTimeout'), presence, { hint: t('presenceTimeoutHint') }),
        field(t('reconnectGrace'), grace, { hint: t('reconnectGraceHint') })),
      h('h3.sub-title', null, t('rulesTitle')),
      h('p.card-sub', null, t('rulesSub')),
      r.rules.length ? h('ol.rules', null, rules) : h('p.muted.empty-line', null, t('noRules')),
      h('datalist', { id: listId }, this.departments.map((n) => h('option', { value: n }))),
      h('button.btn.btn-secondary.btn-sm', {
        type: 'button', 'data-k': 'add-rule', disabled: r.rules.length >= 50,
        onclick: () => {
          r.rules.push({ when: 'url_contains', value: '', department: '' });
          this.edited();
          this.render(`rule-${r.rules.length - 1}-value`);
        },
      }, icon('plus', 14), t('addRule')));
  }

  private data(d: SiteDetail): HTMLElement {
    const keep = d.retention_days === null;
    const days = h('input', {
      'data-k': 'retention', type: 'number', min: 1, max: 3650, step: 1, value: d.retention_days ?? 365, disabled: keep, 'aria-label': t('retentionDays'),
      oninput: () => { d.retention_days = Math.round(Number(days.value)); this.edited(); },
    });
    const radio = (on: boolean, label: (Node | string)[], value: string) => h('label.radio', null,
      h('input', {
        type: 'radio', name: 'retention', value, checked: on,
        onchange: () => {
          d.retention_days = value === 'keep' ? null : Math.round(Number(days.value)) || 365;
          days.disabled = value === 'keep';
          this.edited();
        },
      }), h('span', null, label));
    const [before, after] = t('retentionErase', { days: '\u0000' }).split('\u0000');
    return card(t('secData'), { id: 'site-data', sub: t('secDataSub') },
      h('div.radio-group', { role: 'radiogroup', 'aria-label': t('retentionLabel') },
        radio(keep, [t('retentionKeep')], 'keep'),
        radio(!keep, [before, days, after ?? ''], 'erase')));
  }

  private identity(d: SiteDetail): HTMLElement {
    return card(t('secIdentity'), { id: 'site-identity', sub: t('secIdentitySub') },
      h('div.identity-row', null,
        h('span.pill', { class: d.identity_verification ? 'pill--open' : 'pill--closed' }, d.identity_verification ? t('identityOn') : t('identityOff')),
        h('button.btn.btn-secondary', {
          type: 'button', 'data-action': 'rotate-secret',
          onclick: () => confirmDialog({
            title: t('rotateTitle'),
            body: d.identity_verification ? t('rotateText') : t('rotateTextNew'),
            confirm: t('rotateConfirm'),
            danger: d.identity_verification,
            run: async () => {
              const r = await api<{ identity_secret: string }>(`/api/v1/sites/${encodeURIComponent(this.siteId!)}/identity-secret`, { method: 'POST' });
              if (this.loaded) this.loaded.identity_verification = true;
              d.identity_verification = true;
              this.render();
              secretDialog(t('identitySecretTitle'), t('identitySecretIntro'), r.identity_secret);
            },
          }),
        }, icon('key', 15), d.identity_verification ? t('rotateSecret') : t('createSecret'))));
  }
}
