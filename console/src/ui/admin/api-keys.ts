// API keys (owners and admins): the keys the team's own servers and bots call the REST API
// with. Making one shows it this once, with a copy button; revoking one asks first; revoked keys
// stay listed, dimmed. The server has the last word (keys never manage keys, agents are
// refused): its refusals are shown as it words them. User text goes in through textContent only.
import { api } from '../../api';
import { domId, h, icon, mount } from '../../dom';
import { full, listTime } from '../../time';
import { openDialog } from '../dialog';
import { card, checkbox, confirmDialog, errorRow, errorText, field, loadingRow, markRefused, pageHead, refusedField, secretDialog, type Page, type PageCtx } from './common';
import { t, tn, type Key } from './strings';

/** The scopes a key may have, as the server names them (core/src/api_key.rs), least first. */
const SCOPES = ['read', 'write', 'admin', 'export', 'personal_data'] as const;
type Scope = (typeof SCOPES)[number];
const isScope = (s: string): s is Scope => (SCOPES as readonly string[]).includes(s);
/** The server's limit on a key's name, in characters. */
const MAX_NAME = 80;

interface ApiKey {
  id: string;
  name: string;
  scopes: string[];
  /** The agent who made it (keys never make keys). */
  created_by: string;
  created_at: number;
  last_used_at: number | null;
  revoked_at: number | null;
}

/** A time for the table, in full on hover. */
const when = (ms: number) => h('span', { title: full(ms) }, listTime(ms));

export class ApiKeysPage implements Page {
  readonly el = h('div.page.page--api-keys');
  private keys: ApiKey[] | null = null;
  /** Agents' names by id, to say who made each key; the id stands in for one not found. */
  private agentNames = new Map<string, string>();
  private error: string | null = null;
  /** Kept across drawings, so that dialogs it opened give the focus back to it. */
  private newKeyButton = h('button.btn.btn-primary', { type: 'button', 'data-action': 'new-key', onclick: () => this.create() }, icon('plus', 16), t('apiKeyNew'));

  constructor(private ctx: PageCtx) {}

  show(): void {
    this.render();
    void this.load();
  }

  relabel(): void {
    this.newKeyButton.replaceChildren(icon('plus', 16), t('apiKeyNew'));
    this.render();
  }

  private async load(): Promise<void> {
    try {
      const { keys } = await api<{ keys: ApiKey[] }>('/api/v1/api-keys');
      this.keys = keys;
      this.error = null;
      this.render();
      await this.loadAgentNames(keys);
    } catch (e) {
      this.error = errorText(e);
    }
    this.render();
  }

  /** Names are a nicety: without the team's list the ids stay. A maker not in the cached list may be new: ask again. */
  private async loadAgentNames(keys: ApiKey[]): Promise<void> {
    const fill = (agents: { id: string; name: string }[]) => (this.agentNames = new Map(agents.map((a) => [a.id, a.name])));
    try {
      fill(await this.ctx.teamAgents());
      if (keys.some((k) => !this.agentNames.has(k.created_by))) fill(await this.ctx.teamAgents(true));
    } catch {
      // The ids are shown instead.
    }
  }

  private render(): void {
    const keys = this.keys;
    let body: Node;
    if (this.error && !keys) body = errorRow(this.error, () => void this.load());
    else if (!keys) body = loadingRow();
    else if (!keys.length) body = h('p.muted.empty-line', null, t('apiKeysNone'));
    else body = this.table(keys);
    const revoked = keys?.filter((k) => k.revoked_at !== null).length ?? 0;
    mount(this.el,
      pageHead(t('navApiKeys'), t('apiKeysSub'), this.newKeyButton),
      card(null, { className: 'card--flush' },
        keys?.length ? h('div.table-summary', null, tn('apiKeysCount', keys.length), revoked ? ` · ${t('apiKeysRevokedCount', { n: revoked })}` : '') : null,
        body));
  }

  private table(keys: ApiKey[]): HTMLElement {
    return h('div.table-wrap', null, h('table.table.api-keys-table', null,
      h('thead', null, h('tr', null,
        h('th', { scope: 'col' }, t('nameLabel')),
        h('th', { scope: 'col' }, t('apiKeyScopes')),
        h('th', { scope: 'col' }, t('apiKeyCreatedBy')),
        h('th', { scope: 'col' }, t('apiKeyCreated')),
        h('th', { scope: 'col' }, t('apiKeyLastUsed')),
        h('th', { scope: 'col' }, t('statusCol')),
        h('th', { scope: 'col' }, h('span.sr-only', null, t('actionsCol'))))),
      h('tbody', null, keys.map((k) => this.row(k)))));
  }

  private row(k: ApiKey): HTMLElement {
    const maker = this.agentNames.get(k.created_by);
    return h('tr', { class: k.revoked_at !== null ? 'is-disabled' : '', dataset: { key: k.id } },
      h('td', null, h('div.who-name', null, k.name), h('div.who-sub.mono', null, k.id)),
      h('td', null, h('div.chips', null, k.scopes.map((s) => isScope(s)
        ? h('span.chip', { title: t(`scopeHint_${s}` as Key) }, t(`scope_${s}` as Key))
        : h('span.chip', null, s)))),
      h('td', null, maker ?? h('span.mono', null, k.created_by)),
      h('td', null, when(k.created_at)),
      h('td', null, k.last_used_at !== null ? when(k.last_used_at) : h('span.muted', null, t('apiKeyNeverUsed'))),
      h('td', null, k.revoked_at !== null
        ? h('span.pill.pill--closed', { title: t('apiKeyRevokedOn', { date: full(k.revoked_at) }) }, t('apiKeyRevokedPill'))
        : h('span.pill.pill--open', null, t('apiKeyActive'))),
      h('td.row-actions', null, k.revoked_at !== null ? null : h('button.btn.btn-ghost.btn-sm.btn-ghost-danger', {
        type: 'button', 'data-action': 'revoke', 'aria-label': t('apiKeyRevokeItem', { name: k.name }), onclick: () => this.revoke(k),
      }, t('apiKeyRevoke'))));
  }

  // ---- dialogs ----------------------------------------------------------------------------------

  private create(): void {
    // Least privilege first: reading only, until more is asked for.
    const chosen = new Set<Scope>(['read']);
    openDialog(t('apiKeyNew'), (close) => {
      const err = h('div.form-error', { role: 'alert' });
      const name = h('input', { name: 'key-name', required: true, maxlength: MAX_NAME, autocomplete: 'off' });
      const submit = h('button.btn.btn-primary', { type: 'submit' }, t('apiKeyCreate'));
      const scopesHintId = domId('scopes');
      const scopeBoxes = SCOPES.map((scope) => {
        const hintId = domId('scope');
        return h('div.scope-option', null,
          checkbox(t(`scope_${scope}`), chosen.has(scope), (on) => (on ? chosen.add(scope) : chosen.delete(scope)),
            { name: 'scope', value: scope, 'aria-describedby': hintId }),
          h('span.field-hint.scope-hint', { id: hintId }, t(`scopeHint_${scope}`)));
      });
      const firstScope = scopeBoxes[0].querySelector('input')!;
      const refuse = (text: string, control: HTMLElement) => {
        err.textContent = text;
        markRefused(control);
      };
      return h('form.dialog-body', {
        novalidate: true,
        onsubmit: async (ev: SubmitEvent) => {
          ev.preventDefault();
          name.removeAttribute('aria-invalid');
          firstScope.removeAttribute('aria-invalid');
          const keyName = name.value.trim();
          if (!keyName) return refuse(t('nameRequired'), name);
          if (!chosen.size) return refuse(t('apiKeyScopesRequired'), firstScope);
          submit.disabled = true;
          err.textContent = '';
          try {
            const made = await api<ApiKey & { key: string }>('/api/v1/api-keys', {
              method: 'POST', body: { name: keyName, scopes: SCOPES.filter((s) => chosen.has(s)) },
            });
            close();
            secretDialog(t('apiKeySecretTitle'), t('apiKeySecretIntro'), made.key, t('apiKeySecretWarning'));
            void this.load();
          } catch (e) {
            submit.disabled = false;
            // The server's limits on a key's name and scopes, said of the control to fix.
            const refused = refusedField(e, {
              name: { text: () => t('valueInvalid', { field: t('nameLabel') }), key: 'name' },
              scopes: { text: () => t('apiKeyScopesRequired'), key: 'scopes' },
            });
            if (refused) refuse(refused.text(), refused.key === 'name' ? name : firstScope);
            else err.textContent = errorText(e);
          }
        },
      },
      field(t('nameLabel'), name, { hint: t('apiKeyNameHint') }),
      h('fieldset.fieldset', { 'aria-describedby': scopesHintId }, h('legend.field-label', null, t('apiKeyScopes')),
        h('div.check-group', null, scopeBoxes),
        h('p.field-hint.scopes-note', { id: scopesHintId }, t('apiKeyScopesHint'))),
      err,
      h('div.dialog-actions', null, h('button.btn.btn-ghost', { type: 'button', onclick: close }, t('cancel')), submit));
    });
  }

  private revoke(k: ApiKey): void {
    confirmDialog({
      title: t('apiKeyRevokeTitle', { name: k.name }),
      body: t('apiKeyRevokeText'),
      confirm: t('apiKeyRevoke'),
      danger: true,
      run: async () => {
        await api(`/api/v1/api-keys/${encodeURIComponent(k.id)}`, { method: 'DELETE' });
        this.ctx.toast(t('apiKeyRevokedToast', { name: k.name }));
        await this.load();
        // The button that opened the dialog is gone with the revoked key's actions.
        setTimeout(() => {
          if (!document.querySelector('dialog[open]') && !this.el.contains(document.activeElement)) this.newKeyButton.focus();
        });
      },
    });
  }
}
