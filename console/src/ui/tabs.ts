// Open conversations as tabs, with unread counts. Arrow keys move between tabs, Delete closes.
import { h, icon, mount } from '../dom';
import { t } from '../i18n';
import type { Store } from '../store';
import { selfStatedMark } from './util';

export function renderTabs(el: HTMLElement, store: Store, select: (id: string) => void, close: (id: string) => void): void {
  const focused = (document.activeElement as HTMLElement | null)?.closest?.('.convtabs [data-tab]')?.getAttribute('data-tab');
  if (!store.tabs.length) {
    el.hidden = true;
    mount(el);
    return;
  }
  el.hidden = false;
  const ids = store.tabs;
  mount(el, h('div.tablist', { role: 'tablist', 'aria-label': t('openConversations') },
    ids.map((id, i) => {
      const name = store.visitorName(id);
      const unread = store.active === id ? 0 : store.unread(id);
      const selected = store.active === id;
      const status = store.status(id);
      const tab = h('div.convtab', { class: `${selected ? 'is-active' : ''} ${status === 'closed' ? 'is-closed' : ''}` },
        h('button.convtab-btn', {
          type: 'button', role: 'tab', 'aria-selected': String(selected), tabindex: selected ? 0 : -1,
          dataset: { tab: id },
          title: name,
          onclick: () => select(id),
          onkeydown: (ev: KeyboardEvent) => {
            let j = -1;
            if (ev.key === 'ArrowRight') j = (i + 1) % ids.length;
            else if (ev.key === 'ArrowLeft') j = (i + ids.length - 1) % ids.length;
            else if (ev.key === 'Home') j = 0;
            else if (ev.key === 'End') j = ids.length - 1;
            else if (ev.key === 'Delete') {
              ev.preventDefault();
              close(id);
              return;
            }
            if (j >= 0) {
              ev.preventDefault();
              select(ids[j]);
              requestAnimationFrame(() => (el.querySelector(`[data-tab="${ids[j]}"]`) as HTMLElement | null)?.focus());
            }
          },
        },
        h('span.convtab-dot', { class: `dot--${status}`, 'aria-hidden': 'true' }),
        h('span.convtab-name', null, name),
        // A name the visitor typed into a form is marked here as everywhere else it shows.
        store.nameSelfStated(id) ? selfStatedMark(true) : null,
        unread ? h('span.badge.badge--sm', { 'aria-label': t('unreadN', { n: unread }) }, String(unread)) : null),
        h('button.convtab-close', { type: 'button', 'aria-label': t('closeTab', { name }), title: t('closeTab', { name }), tabindex: -1, onclick: () => close(id) }, icon('close', 12)));
      return tab;
    })));
  if (focused) (el.querySelector(`[data-tab="${focused}"]`) as HTMLElement | null)?.focus();
}
