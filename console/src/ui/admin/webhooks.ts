// A site's webhooks on its settings page: the list, adding one (its signing secret is shown
// once), deleting, switching a disabled one back on, and each webhook's delivery log.
import { api } from '../../api';
import { h, icon, mount } from '../../dom';
import { t, tn, type Key } from './strings';
import { full, listTime } from '../../time';
import { WEBHOOK_EVENTS, type Delivery, type DeliveryErrorCode, type Webhook } from '../../types';
import { card, checkbox, confirmDialog, errorRow, errorText, field, loadingRow, markRefused, refusedField, secretDialog, type FieldRefusal, type PageCtx } from './common';

/** The fields of a new webhook the server may refuse (its `field`). */
const REFUSED_FIELDS: Record<string, FieldRefusal> = {
  url: { text: () => t('publicUrlRefused', { field: t('webhookUrl') }), key: 'webhook-url' },
  events: { text: () => t('webhookEventsRequired') },
};

/** Why a webhook is off, in the admin's language (the server sends a code). */
const reason = (code: string | null) => (code === 'too_many_failures' ? t('webhookOffFailing') : code ?? '');
/** The label of each delivery failure code (`error_code`). */
const FAILURE_LABELS: Record<DeliveryErrorCode, Key> = {
  http_status: 'dlErr_status',
  redirect_refused: 'dlErr_redirect',
  address_refused: 'dlErr_address_refused',
  timeout: 'dlErr_timeout',
  webhook_deleted: 'dlErr_deleted',
  not_delivered: 'dlErr_undelivered',
  network: 'dlErr_network',
};
/** Refused addresses whose reason (`error_detail`) has a label of its own. */
const REFUSAL_LABELS: Record<string, Key> = {
  scheme_not_allowed: 'dlErr_scheme_not_allowed',
  malformed_url: 'dlErr_malformed_url',
  credentials_in_url: 'dlErr_credentials_in_url',
  address_not_public: 'dlErr_address_not_public',
};
const knownFailure = (code: string | null): code is DeliveryErrorCode => code !== null && Object.hasOwn(FAILURE_LABELS, code);

/**
 * Why a delivery failed, in the admin's language, from the server's stable code (the server's
 * English words stay available as the label's title). A code or a reason this console does not
 * know yet (a newer server) reads as a failure without more said.
 */
function deliveryError(d: Delivery): string {
  if (d.error_code === 'address_refused' && d.error_detail && Object.hasOwn(REFUSAL_LABELS, d.error_detail)) {
    return t(REFUSAL_LABELS[d.error_detail]);
  }
  return t(knownFailure(d.error_code) ? FAILURE_LABELS[d.error_code] : 'dlErr_undelivered');
}

const eventLabel = (e: string) => ((WEBHOOK_EVENTS as readonly string[]).includes(e) ? t(`ev_${e.replace('.', '_')}` as Key) : e);

export class WebhooksCard {
  readonly el = h('div.webhooks-host');
  private hooks: Webhook[] | null = null;
  private error: string | null = null;
  private logs = new Map<string, { list: Delivery[] | null; error: string | null }>();
  private adding = { url: '', events: new Set<string>(WEBHOOK_EVENTS), busy: false, error: '' };
  private gone = false;

  constructor(private ctx: PageCtx, private site: string) {
    this.render();
  }

  destroy(): void {
    this.gone = true;
  }

  /** Whether a webhook is being added (its URL typed) and not yet saved. */
  holdsEdits(): boolean {
    return this.adding.url.trim() !== '';
  }

  private base(): string {
    return `/api/v1/sites/${encodeURIComponent(this.site)}/webhooks`;
  }

  async load(): Promise<void> {
    try {
      const r = await api<{ webhooks: Webhook[] }>(this.base());
      if (this.gone) return;
      this.hooks = r?.webhooks ?? [];
      this.error = null;
      // Open delivery logs are refreshed with the list.
      for (const id of this.logs.keys()) void this.loadLog(id, false);
    } catch (e) {
      this.error = errorText(e);
    }
    this.render();
  }

  private async loadLog(id: string, render = true): Promise<void> {
    const entry = this.logs.get(id) ?? { list: null, error: null };
    this.logs.set(id, entry);
    if (render) this.render();
    try {
      const r = await api<{ deliveries: Delivery[] }>(`${this.base()}/${encodeURIComponent(id)}/deliveries`);
      entry.list = r?.deliveries ?? [];
      entry.error = null;
    } catch (e) {
      entry.error = errorText(e);
    }
    if (!this.gone) this.render();
  }

  render(): void {
    const focused = (document.activeElement as HTMLElement | null)?.dataset?.k;
    const list = this.hooks;
    let body: Node;
    if (this.error && !list) body = errorRow(this.error, () => void this.load());
    else if (!list) body = loadingRow();
    else if (!list.length) body = h('p.muted.empty-line', null, t('noWebhooks'));
    else body = h('ul.hooks', null, list.map((w) => this.item(w)));
    mount(this.el, card(t('secWebhooks'), { id: 'site-webhooks', sub: t('secWebhooksSub') }, body, this.addForm()));
    if (focused) (this.el.querySelector(`[data-k="${focused}"]`) as HTMLElement | null)?.focus();
  }

  private item(w: Webhook): HTMLElement {
    const log = this.logs.get(w.id);
    const logId = `log-${w.id}`;
    return h('li.hook', { dataset: { webhook: w.id } },
      h('div.hook-main', null,
        h('div.hook-url', null, h('code.mono', { title: w.url }, w.url)),
        h('div.hook-meta', null,
          w.enabled
            ? h('span.pill.pill--open', null, t('webhookOn'))
            : h('span.pill.pill--off', { title: reason(w.disabled_reason) }, t('webhookOff')),
          w.failures ? h('span.chip.chip--warn', null, tn('webhookFailures', w.failures)) : null,
          w.events.map((e) => h('span.chip', null, eventLabel(e))),
          h('span.muted.small', { title: full(w.created_at) }, t('addedOn', { date: listTime(w.created_at) }))),
        !w.enabled && w.disabled_reason ? h('p.hook-reason', null, icon('warn', 14), reason(w.disabled_reason)) : null),
      h('div.hook-actions', null,
        h('button.btn.btn-ghost.btn-sm', {
          type: 'button', 'data-action': 'log', 'data-k': `log-btn-${w.id}`, 'aria-expanded': String(Boolean(log)), 'aria-controls': logId,
          onclick: () => {
            if (this.logs.has(w.id)) {
              this.logs.delete(w.id);
              this.render();
            } else {
              void this.loadLog(w.id);
            }
          },
        }, t('deliveryLog')),
        w.enabled ? null : h('button.btn.btn-secondary.btn-sm', {
          type: 'button', 'data-action': 'enable',
          onclick: async (ev: MouseEvent) => {
            (ev.currentTarget as HTMLButtonElement).disabled = true;
            try {
              await api(`${this.base()}/${encodeURIComponent(w.id)}/enable`, { method: 'POST' });
              this.ctx.toast(t('webhookEnabled'));
            } catch (e) {
              this.ctx.toast(errorText(e), 'error');
            }
            void this.load();
          },
        }, t('enable')),
        h('button.btn.btn-ghost.btn-sm.btn-ghost-danger', {
          type: 'button', 'data-action': 'delete',
          onclick: () => confirmDialog({
            title: t('deleteWebhookTitle'),
            body: t('deleteWebhookText', { url: w.url }),
            confirm: t('delete'),
            danger: true,
            run: async () => {
              await api(`${this.base()}/${encodeURIComponent(w.id)}`, { method: 'DELETE' });
              this.logs.delete(w.id);
              this.ctx.toast(t('webhookDeleted'));
              await this.load();
            },
          }),
        }, icon('trash', 14), t('delete'))),
      log ? h('div.hook-log', { id: logId }, this.logTable(w, log)) : null);
  }

  private logTable(w: Webhook, log: { list: Delivery[] | null; error: string | null }): Node {
    if (log.error && !log.list) return errorRow(log.error, () => void this.loadLog(w.id));
    if (!log.list) return loadingRow();
    const refresh = h('button.btn.btn-ghost.btn-sm', { type: 'button', onclick: () => void this.loadLog(w.id) }, icon('refresh', 14), t('refresh'));
    if (!log.list.length) return h('div.log-empty', null, h('span.muted', null, t('noDeliveries')), refresh);
    const statusPill = (d: Delivery) => h('span.pill', { class: d.status === 'delivered' ? 'pill--open' : d.status === 'failed' ? 'pill--failed' : 'pill--pending' },
      d.status === 'delivered' ? t('dl_delivered') : d.status === 'failed' ? t('dl_failed') : d.status === 'pending' ? t('dl_pending')
        : d.status === 'paused' ? t('dl_paused') : d.status);
    return h('div', null,
      h('div.log-head', null, h('span.muted.small', null, tn('deliveriesShown', log.list.length)), refresh),
      h('div.table-wrap', null, h('table.table.table--compact', null,
        h('caption.sr-only', null, t('deliveryLogOf', { url: w.url })),
        h('thead', null, h('tr', null,
          h('th', { scope: 'col' }, t('whenCol')), h('th', { scope: 'col' }, t('eventCol')), h('th', { scope: 'col' }, t('statusCol')),
          h('th.num', { scope: 'col' }, t('attemptsCol')), h('th', { scope: 'col' }, t('responseCol')), h('th', { scope: 'col' }, t('nextCol')))),
        h('tbody', null, log.list.map((d) => h('tr', null,
          h('td', { title: full(d.created_at) }, listTime(d.created_at)),
          h('td', null, eventLabel(d.event)),
          h('td', { title: d.delivered_at ? t('deliveredAt', { time: full(d.delivered_at) }) : undefined }, statusPill(d)),
          h('td.num', null, String(d.attempts)),
          h('td.log-response', null, d.last_status ? h('code.mono', null, `HTTP ${d.last_status}`) : null,
            d.last_error ? h('span.muted.log-error', { title: d.last_error }, ` ${deliveryError(d)}`) : null,
            !d.last_status && !d.last_error ? '—' : null),
          h('td', null, d.status === 'pending' && d.next_at ? h('span', { title: full(d.next_at) }, listTime(d.next_at)) : '—')))))));
  }

  private addForm(): HTMLElement {
    const a = this.adding;
    const url = h('input', {
      type: 'url', name: 'webhook-url', 'data-k': 'webhook-url', placeholder: 'https://example.com/parley/webhook', value: a.url, maxlength: 500, spellcheck: 'false',
      oninput: () => (a.url = url.value),
    });
    const err = h('div.form-error', { role: 'alert' }, a.error);
    const submit = h('button.btn.btn-primary', { type: 'submit', disabled: a.busy, 'data-action': 'add-webhook' }, icon('plus', 15), t('addWebhook'));
    return h('form.hook-add', {
      novalidate: true,
      onsubmit: async (ev: SubmitEvent) => {
        ev.preventDefault();
        a.error = '';
        if (!/^https?:\/\/\S+$/i.test(a.url.trim())) {
          err.textContent = t('webhookUrlInvalid');
          url.focus();
          return;
        }
        if (!a.events.size) {
          err.textContent = t('webhookEventsRequired');
          return;
        }
        a.busy = true;
        submit.disabled = true;
        try {
          const r = await api<Webhook & { secret: string }>(this.base(), {
            method: 'POST', body: { url: a.url.trim(), events: WEBHOOK_EVENTS.filter((e) => a.events.has(e)) },
          });
          this.adding = { url: '', events: new Set(WEBHOOK_EVENTS), busy: false, error: '' };
          await this.load();
          secretDialog(t('webhookSecretTitle'), t('webhookSecretIntro'), r.secret);
        } catch (e) {
          a.busy = false;
          const refused = refusedField(e, REFUSED_FIELDS);
          a.error = refused?.text() ?? errorText(e);
          this.render();
          markRefused(refused?.key ? this.el.querySelector<HTMLElement>(`[data-k="${refused.key}"]`) : null);
        }
      },
    },
    h('h3.sub-title', null, t('addWebhook')),
    field(t('webhookUrl'), url, { hint: t('webhookUrlHint') }),
    h('fieldset.fieldset', null, h('legend.field-label', null, t('webhookEvents')),
      h('div.check-grid', null, WEBHOOK_EVENTS.map((e) => checkbox(eventLabel(e), a.events.has(e), (on) => {
        if (on) a.events.add(e);
        else a.events.delete(e);
      }, { name: 'webhook-event', value: e })))),
    err,
    h('div.form-actions', null, submit));
  }
}
