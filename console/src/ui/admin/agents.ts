// Agents (owners and admins): the team's members, adding one, editing name, role, capacity,
// permissions and departments, disabling and enabling, and resetting a password. The server
// has the last word: its refusals are shown as it words them.
import { api, ApiError } from '../../api';
import { h, icon, mount } from '../../dom';
import { t, tn } from './strings';
import { full } from '../../time';
import type { TeamAgent } from '../../types';
import { openDialog } from '../dialog';
import { hue, initials } from '../util';
import { card, checkbox, confirmDialog, errorRow, errorText, field, loadingRow, markRefused, pageHead, refusedField, select, type Page, type PageCtx } from './common';

const ROLES = ['agent', 'admin', 'owner'] as const;
const PERMISSIONS = ['view_personal_data', 'export'] as const;
const privileged = (role: string) => role === 'owner' || role === 'admin';

export class AgentsPage implements Page {
  readonly el = h('div.page.page--agents');
  private agents: TeamAgent[] | null = null;
  private error: string | null = null;
  private departments: string[] = [];

  constructor(private ctx: PageCtx) {}

  show(): void {
    this.render();
    void this.load();
  }

  relabel(): void {
    this.render();
  }

  private async load(): Promise<void> {
    try {
      const [list, depts] = await Promise.all([
        this.ctx.teamAgents(true),
        api<{ departments: { name: string }[] }>('/api/v1/departments').catch(() => ({ departments: [] })),
      ]);
      this.agents = list;
      this.departments = (depts?.departments ?? []).map((d) => d.name);
      this.error = null;
    } catch (e) {
      this.error = errorText(e);
    }
    this.render();
  }

  private get callerIsOwner(): boolean {
    return this.ctx.me.role === 'owner';
  }

  /** Whether the caller may change this member at all (only owners touch owners and admins). */
  private canManage(a: TeamAgent): boolean {
    return this.callerIsOwner || !privileged(a.role);
  }

  private render(): void {
    const add = h('button.btn.btn-primary', { type: 'button', 'data-action': 'add-agent', onclick: () => this.edit(null) }, icon('plus', 16), t('addAgent'));
    const list = this.agents;
    let body: Node;
    if (this.error && !list) body = errorRow(this.error, () => void this.load());
    else if (!list) body = loadingRow();
    else body = this.table(list);
    const disabled = list?.filter((a) => a.disabled).length ?? 0;
    mount(this.el,
      pageHead(t('agentsTitle'), t('agentsSub'), add),
      card(null, { className: 'card--flush' },
        list ? h('div.table-summary', null, tn('agentsCount', list.length), disabled ? ` · ${t('agentsDisabledCount', { n: disabled })}` : '') : null,
        body));
  }

  private table(list: TeamAgent[]): HTMLElement {
    const roleLabel = (r: string) => (ROLES as readonly string[]).includes(r) ? t(`role_${r}` as 'role_agent') : r;
    return h('div.table-wrap', null, h('table.table.agents-table', null,
      h('thead', null, h('tr', null,
        h('th', { scope: 'col' }, t('agentCol')),
        h('th', { scope: 'col' }, t('roleLabel')),
        h('th', { scope: 'col' }, t('departmentsLabel')),
        h('th.num', { scope: 'col' }, t('capacityLabel')),
        h('th', { scope: 'col' }, t('permissionsLabel')),
        h('th', { scope: 'col' }, t('statusCol')),
        h('th', { scope: 'col' }, h('span.sr-only', null, t('actionsCol'))))),
      h('tbody', null, list.map((a) => {
        const self = a.id === this.ctx.me.id;
        const manage = this.canManage(a);
        const lockedTitle = manage ? undefined : t('onlyOwners');
        const avatar = h('span.avatar.avatar--sm', { 'aria-hidden': 'true' }, initials(a.name));
        avatar.style.setProperty('--h', String(hue(a.id)));
        const perms = privileged(a.role)
          ? [h('span.chip', null, t('permAll'))]
          : a.permissions.filter((p) => (PERMISSIONS as readonly string[]).includes(p)).map((p) => h('span.chip', null, t(`perm_${p}` as 'perm_export')));
        return h('tr', { class: a.disabled ? 'is-disabled' : '', dataset: { agent: a.id, email: a.email } },
          h('td', null, h('div.who', null, avatar, h('div.who-text', null,
            h('div.who-name', null, a.name, self ? h('span.chip.chip--me', null, t('you')) : null),
            h('div.who-sub', { title: t('addedOn', { date: full(a.created_at) }) }, a.email)))),
          h('td', null, h('span.role', { class: `role--${a.role}` }, roleLabel(a.role))),
          h('td', null, a.departments.length ? h('div.chips', null, a.departments.map((d) => h('span.chip', null, d))) : h('span.muted', null, '—')),
          h('td.num', null, String(a.capacity)),
          h('td', null, perms.length ? h('div.chips', null, perms) : h('span.muted', null, '—')),
          h('td', null, h('span.pill', { class: a.disabled ? 'pill--closed' : 'pill--open' }, a.disabled ? t('agentDisabled') : t('agentActive'))),
          h('td.row-actions', null, h('div.row-buttons', null,
            h('button.btn.btn-ghost.btn-sm', {
              type: 'button', 'data-action': 'edit', disabled: !manage, title: lockedTitle ?? t('editAgentTitle', { name: a.name }),
              'aria-label': t('editAgentTitle', { name: a.name }), onclick: () => this.edit(a),
            }, icon('edit', 14), t('edit')),
            h('button.btn.btn-ghost.btn-sm', {
              type: 'button', 'data-action': 'password', disabled: !manage, title: lockedTitle ?? t('resetPasswordTitle', { name: a.name }),
              'aria-label': t('resetPasswordTitle', { name: a.name }), onclick: () => this.resetPassword(a),
            }, icon('key', 14), t('passwordShort')),
            self ? h('span', { 'aria-hidden': 'true' }) : h('button.btn.btn-ghost.btn-sm', {
              type: 'button', 'data-action': a.disabled ? 'enable' : 'disable', disabled: !manage, title: lockedTitle,
              class: a.disabled ? '' : 'btn-ghost-danger',
              onclick: () => this.toggleDisabled(a),
            }, a.disabled ? t('enable') : t('disable')))));
      }))));
  }

  private async refresh(): Promise<void> {
    await this.load();
  }

  // ---- dialogs ----------------------------------------------------------------------------------

  /** Add (existing null) or edit an agent. */
  private edit(existing: TeamAgent | null): void {
    const self = existing?.id === this.ctx.me.id;
    const state = {
      name: existing?.name ?? '',
      email: existing?.email ?? '',
      password: '',
      role: existing?.role ?? 'agent',
      capacity: existing?.capacity ?? 5,
      permissions: new Set(existing?.permissions ?? []),
      departments: [...(existing?.departments ?? [])],
    };
    openDialog(existing ? t('editAgentTitle', { name: existing.name }) : t('addAgent'), (close) => {
      const err = h('div.form-error', { role: 'alert' });
      const name = h('input', { name: 'name', required: true, maxlength: 100, value: state.name, autocomplete: 'off', oninput: () => (state.name = name.value) });
      const email = h('input', { name: 'email', type: 'email', required: true, maxlength: 254, autocomplete: 'off', spellcheck: 'false', value: state.email, oninput: () => (state.email = email.value) });
      const pw = existing ? null : passwordInput((v) => (state.password = v));
      const roleOptions = (this.callerIsOwner ? ROLES : (['agent'] as const)).map((r) => [r, t(`role_${r}` as 'role_agent')] as [string, string]);
      if (!roleOptions.some(([r]) => r === state.role)) roleOptions.push([state.role, state.role]);
      const permBox = h('div.check-group');
      const drawPerms = () => {
        const all = privileged(state.role);
        permBox.replaceChildren(...PERMISSIONS.map((p) => checkbox(t(`perm_${p}` as 'perm_export'), all || state.permissions.has(p), (on) => {
          if (on) state.permissions.add(p);
          else state.permissions.delete(p);
        }, { name: `perm-${p}`, disabled: all })), all ? h('p.field-hint', null, t('permAllHint')) : '');
      };
      drawPerms();
      const role = select(roleOptions as [string, string][], state.role, (v) => {
        state.role = v;
        drawPerms();
      }, { name: 'role', disabled: self || !this.callerIsOwner });
      const capacity = h('input', { name: 'capacity', type: 'number', min: 0, max: 100, step: 1, value: state.capacity, oninput: () => (state.capacity = Number(capacity.value)) });
      const depts = chipsInput(state.departments, { placeholder: t('departmentsPlaceholder'), suggestions: this.departments, name: 'departments' });
      const submit = h('button.btn.btn-primary', { type: 'submit' }, existing ? t('saveChanges') : t('addAgent'));
      const roleHint = self ? t('ownRoleHint') : this.callerIsOwner ? t('roleHint') : t('onlyOwnersRoles');

      return h('form.dialog-body', {
        novalidate: true,
        onsubmit: async (ev: SubmitEvent) => {
          ev.preventDefault();
          err.textContent = '';
          // A field refused by the last try is unmarked: this try says what is wrong now.
          for (const control of [name, email, pw?.input, capacity, role]) control?.removeAttribute('aria-invalid');
          depts.commit();
          const problem = !state.name.trim() ? [t('nameRequired'), name]
            : !/^[^\s@]+@[^\s@]+$/.test(state.email.trim()) ? [t('emailInvalid'), email]
              : pw && state.password.length < 10 ? [t('passwordTooShort'), pw.input]
                : !Number.isInteger(state.capacity) || state.capacity < 0 || state.capacity > 100 ? [t('capacityInvalid'), capacity]
                  : null;
          if (problem) {
            err.textContent = problem[0] as string;
            markRefused(problem[1] as HTMLElement);
            return;
          }
          const permissions = privileged(state.role) ? [] : PERMISSIONS.filter((p) => state.permissions.has(p));
          const departments = depts.values();
          submit.disabled = true;
          try {
            if (!existing) {
              await api('/api/v1/agents', {
                method: 'POST',
                body: { name: state.name.trim(), email: state.email.trim(), password: state.password, role: state.role, capacity: state.capacity, permissions, departments },
              });
              this.ctx.toast(t('agentAdded', { name: state.name.trim() }));
            } else {
              const change: Record<string, unknown> = {};
              if (state.name.trim() !== existing.name) change.name = state.name.trim();
              if (state.email.trim().toLowerCase() !== existing.email) change.email = state.email.trim();
              if (state.role !== existing.role) change.role = state.role;
              if (state.capacity !== existing.capacity) change.capacity = state.capacity;
              if (!privileged(state.role) && permissions.join() !== [...existing.permissions].sort().join()) change.permissions = permissions;
              if ([...departments].sort().join('\n') !== [...existing.departments].sort().join('\n')) change.departments = departments;
              if (Object.keys(change).length) {
                await api(`/api/v1/agents/${encodeURIComponent(existing.id)}`, { method: 'PATCH', body: change });
                this.ctx.toast(t('agentSaved', { name: state.name.trim() }));
              }
            }
            close();
            void this.refresh();
          } catch (e) {
            // A field the server refused is named, and its control focused.
            const controls: Record<string, HTMLElement | undefined> = { name, email, password: pw?.input, capacity, role };
            const refused = refusedField(e, {
              name: { text: () => t('valueInvalid', { field: t('nameLabel') }), key: 'name' },
              email: { text: () => t('emailInvalid'), key: 'email' },
              password: { text: () => t('passwordTooShort'), key: 'password' },
              capacity: { text: () => t('capacityInvalid'), key: 'capacity' },
              role: { text: () => t('valueInvalid', { field: t('roleLabel') }), key: 'role' },
              permissions: { text: () => t('valueInvalid', { field: t('permissionsLabel') }) },
            });
            err.textContent = refused?.text() ?? errorText(e);
            const control = refused?.key ? controls[refused.key] : e instanceof ApiError && e.code === 'email_taken' ? email : undefined;
            markRefused(control);
            submit.disabled = false;
          }
        },
      },
      h('div.form-grid', null,
        field(t('nameLabel'), name),
        field(t('email'), email),
        pw ? field(t('password'), h('div.pw-row', null, pw.input, pw.tools), { hint: t('passwordHint'), className: 'field--wide', target: pw.input }) : null,
        field(t('roleLabel'), role, { hint: roleHint }),
        field(t('capacityLabel'), capacity, { hint: t('capacityHint') }),
        h('div.field.field--wide', null, h('span.field-label', null, t('permissionsLabel')), permBox),
        field(t('departmentsLabel'), depts.el, { hint: t('departmentsHint'), className: 'field--wide', target: depts.input })),
      err,
      h('div.dialog-actions', null, h('button.btn.btn-ghost', { type: 'button', onclick: close }, t('cancel')), submit));
    }, { className: 'dialog--wide' });
  }

  private resetPassword(a: TeamAgent): void {
    openDialog(t('resetPasswordTitle', { name: a.name }), (close) => {
      let value = '';
      const pw = passwordInput((v) => (value = v));
      const err = h('div.form-error', { role: 'alert' });
      const submit = h('button.btn.btn-primary', { type: 'submit' }, t('resetPassword'));
      return h('form.dialog-body', {
        novalidate: true,
        onsubmit: async (ev: SubmitEvent) => {
          ev.preventDefault();
          if (value.length < 10) {
            err.textContent = t('passwordTooShort');
            pw.input.focus();
            return;
          }
          submit.disabled = true;
          try {
            await api(`/api/v1/agents/${encodeURIComponent(a.id)}`, { method: 'PATCH', body: { password: value } });
            this.ctx.toast(t('passwordReset', { name: a.name }));
            close();
          } catch (e) {
            err.textContent = errorText(e);
            submit.disabled = false;
          }
        },
      },
      h('p.dialog-text', null, t('resetPasswordText')),
      field(t('newPassword'), h('div.pw-row', null, pw.input, pw.tools), { hint: t('passwordHint'), target: pw.input }),
      err,
      h('div.dialog-actions', null, h('button.btn.btn-ghost', { type: 'button', onclick: close }, t('cancel')), submit));
    });
  }

  private toggleDisabled(a: TeamAgent): void {
    const change = async (disabled: boolean) => {
      await api(`/api/v1/agents/${encodeURIComponent(a.id)}`, { method: 'PATCH', body: { disabled } });
      this.ctx.toast(disabled ? t('agentDisabledToast', { name: a.name }) : t('agentEnabledToast', { name: a.name }));
      void this.refresh();
    };
    if (a.disabled) {
      change(false).catch((e) => this.ctx.toast(errorText(e), 'error'));
      return;
    }
    confirmDialog({
      title: t('disableTitle', { name: a.name }),
      body: t('disableText'),
      confirm: t('disable'),
      danger: true,
      run: () => change(true),
    });
  }
}

/** A password input with "show" and "generate" tools. */
function passwordInput(onchange: (v: string) => void): { input: HTMLInputElement; tools: HTMLElement } {
  const input = h('input', { type: 'password', name: 'password', autocomplete: 'new-password', minlength: 10, maxlength: 1024, oninput: () => onchange(input.value) });
  const show = h('button.btn.btn-ghost.btn-sm', {
    type: 'button', 'aria-pressed': 'false',
    onclick: () => {
      const visible = input.type === 'password';
      input.type = visible ? 'text' : 'password';
      show.setAttribute('aria-pressed', String(visible));
      show.textContent = visible ? t('hidePassword') : t('showPassword');
    },
  }, t('showPassword'));
  const gen = h('button.btn.btn-ghost.btn-sm', {
    type: 'button',
    onclick: () => {
      input.value = generatePassword();
      input.type = 'text';
      show.setAttribute('aria-pressed', 'true');
      show.textContent = t('hidePassword');
      onchange(input.value);
      input.select();
    },
  }, icon('refresh', 14), t('generatePassword'));
  return { input, tools: h('div.pw-tools', null, show, gen) };
}

function generatePassword(): string {
  const alphabet = 'abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789';
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => alphabet[b % alphabet.length]).join('');
}

/**
 * Values as removable chips with a text input: Enter or a comma adds, Backspace on an empty
 * input removes the last. `el` is the field, `input` the element to label; `commit()` adds
 * what is typed (false when it is not valid).
 */
export function chipsInput(initial: string[], opts: { placeholder: string; suggestions?: string[]; name?: string; type?: string; validate?: (v: string) => boolean; max?: number; onchange?: (values: string[]) => void }): {
  el: HTMLElement; input: HTMLInputElement; values: () => string[]; commit: () => boolean;
} {
  const values = [...initial];
  const listId = `chips-${Math.random().toString(36).slice(2)}`;
  const text = h('input.chips-text', {
    type: opts.type ?? 'text', name: opts.name, placeholder: opts.placeholder, autocomplete: 'off', list: opts.suggestions?.length ? listId : undefined,
    onkeydown: (ev: KeyboardEvent) => {
      if (ev.key === 'Enter' || (ev.key === ',' && opts.type !== 'date')) {
        ev.preventDefault();
        commit();
      } else if (ev.key === 'Backspace' && !text.value && values.length) {
        values.pop();
        draw();
      }
    },
    onblur: () => {
      if (text.value.trim()) commit();
    },
    onchange: () => {
      if (opts.type === 'date' && text.value) commit();
    },
  });
  const chips = h('span.chips');
  const wrap = h('div.chips-input', { onclick: (ev: MouseEvent) => { if (ev.target === wrap) text.focus(); } }, chips, text,
    opts.suggestions?.length ? h('datalist', { id: listId }, opts.suggestions.map((s) => h('option', { value: s }))) : null);
  const draw = () => {
    opts.onchange?.([...values]);
    chips.replaceChildren(...values.map((v, i) => h('span.chip.chip--x', null, v,
      h('button.chip-x', { type: 'button', 'aria-label': t('removeItem', { item: v }), onclick: () => { values.splice(i, 1); draw(); text.focus(); } }, icon('close', 10)))));
  };
  const commit = (): boolean => {
    const v = text.value.trim();
    if (!v) return true;
    if (opts.validate && !opts.validate(v)) {
      text.setAttribute('aria-invalid', 'true');
      return false;
    }
    text.removeAttribute('aria-invalid');
    if (!values.includes(v) && values.length < (opts.max ?? 50)) values.push(v);
    text.value = '';
    draw();
    return true;
  };
  draw();
  return { el: wrap, input: text, values: () => [...values], commit };
}
