// Transfer a conversation to another agent or to a department, with an optional note.
import { ApiError } from '../api';
import type { ConvSession } from '../conversation';
import { h } from '../dom';
import { t } from '../i18n';
import type { Store } from '../store';
import { openDialog } from './dialog';
import { initials } from './util';

export function openTransferDialog(store: Store, session: ConvSession, toast: (s: string, kind?: 'info' | 'error') => void): void {
  openDialog(t('transferTitle'), (close) => {
    let mode: 'agent' | 'department' = 'agent';
    const agents = store.agents().filter((a) => a.id !== store.me.id);
    agents.sort((a, b) => Number(b.status === 'online') - Number(a.status === 'online') || a.name.localeCompare(b.name));

    const agentList = h('div.pick-list', { role: 'radiogroup', 'aria-label': t('transferAgent') },
      agents.length
        ? agents.map((a, i) => {
          const full = a.active >= a.capacity;
          const unavailable = a.status !== 'online' || full;
          const input = h('input', { type: 'radio', name: 'transfer-agent', value: a.id, checked: !unavailable && i === agents.findIndex((x) => x.status === 'online' && x.active < x.capacity) });
          return h('label.pick', { class: unavailable ? 'is-unavailable' : '' },
            input,
            h('span.avatar.avatar--sm', { 'aria-hidden': 'true' }, initials(a.name)),
            h('span.pick-main', null,
              h('span.pick-name', null, a.name),
              h('span.pick-sub', null,
                h('span.status-dot', { class: `status--${a.status}`, 'aria-hidden': 'true' }),
                t(`status_${a.status}` as const), ' · ', t('transferLoad', { active: a.active, capacity: a.capacity }),
                unavailable ? ` · ${t('transferUnavailable')}` : '')));
        })
        : h('p.muted', null, t('transferNoAgents')));

    // The team's departments, from the server: the picker offers only names the server accepts,
    // including departments nobody is waiting in right now.
    const deptInput = h('select#transfer-dept', null) as HTMLSelectElement;
    const deptEmpty = h('p.muted', { hidden: true }, t('transferNoDepartments'));
    const fillDepartments = (names: string[]) => {
      const current = deptInput.value;
      deptInput.replaceChildren(...names.map((d) => h('option', { value: d }, d)));
      if (names.includes(current)) deptInput.value = current;
      deptInput.disabled = names.length === 0;
      deptEmpty.hidden = names.length > 0;
    };
    fillDepartments(store.departments());
    void store.loadDepartments().then(fillDepartments).catch(() => undefined);
    const deptField = h('label.field', { for: 'transfer-dept', hidden: true },
      h('span.field-label', null, t('transferDepartment')), deptInput, deptEmpty);
    const note = h('textarea#transfer-note', { rows: 3, maxlength: 1000 });
    const err = h('div.form-error', { role: 'alert' });
    const submit = h('button.btn.btn-primary', { type: 'submit' }, t('transferSubmit'));

    const modeBtn = (m: 'agent' | 'department', label: string) => h('button.seg-btn', {
      type: 'button', role: 'tab', 'aria-selected': String(mode === m), dataset: { mode: m },
      onclick: () => {
        mode = m;
        for (const b of seg.querySelectorAll<HTMLElement>('[data-mode]')) b.setAttribute('aria-selected', String(b.dataset.mode === mode));
        agentList.hidden = mode !== 'agent';
        deptField.hidden = mode !== 'department';
        (mode === 'agent' ? agentList.querySelector<HTMLElement>('input') : deptInput)?.focus();
      },
    }, label);
    const seg = h('div.seg.seg--inline', { role: 'tablist' }, modeBtn('agent', t('transferToAgent')), modeBtn('department', t('transferToDepartment')));

    return h('form.dialog-body', {
      onsubmit: async (ev: SubmitEvent) => {
        ev.preventDefault();
        err.textContent = '';
        let target: { agent?: string; department?: string };
        if (mode === 'agent') {
          const picked = agentList.querySelector<HTMLInputElement>('input:checked');
          if (!picked) return agentList.querySelector<HTMLElement>('input')?.focus();
          target = { agent: picked.value };
        } else {
          if (!deptInput.value.trim()) return deptInput.focus();
          target = { department: deptInput.value.trim() };
        }
        submit.disabled = true;
        try {
          await session.transfer(target, note.value.trim() || undefined);
          toast(t('transferDone'));
          close();
        } catch (e) {
          err.textContent = e instanceof ApiError ? e.message : t('genericError');
          submit.disabled = false;
        }
      },
    },
    seg,
    agentList,
    deptField,
    h('label.field', { for: 'transfer-note' }, h('span.field-label', null, t('transferNote')), note),
    err,
    h('div.dialog-actions', null, h('button.btn.btn-ghost', { type: 'button', onclick: close }, t('cancel')), submit));
  }, { className: 'dialog--transfer' });
}
