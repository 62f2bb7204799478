// The inbox: Waiting / Mine / Team / Closed lists with live counts, previews and unread badges.
import { h, icon, mount } from '../dom';
import { t } from '../i18n';
import { LISTS, type ListName, type Store, type Summary } from '../store';
import { duration, full, listTime } from '../time';
import { hue, initials, oneLine, selfStatedMark } from './util';

export function renderInbox(el: HTMLElement, store: Store, open: (id: string) => void): void {
  const focusedId = (document.activeElement as HTMLElement | null)?.closest?.('.inbox [data-id]')?.getAttribute('data-id');
  const focusedList = (document.activeElement as HTMLElement | null)?.closest?.('.inbox [data-list]')?.getAttribute('data-list');
  const counts = store.counts();
  const current = store.list;

  const tabs = h('div.seg.seg--lists', { role: 'tablist', 'aria-label': t('inboxLists') },
    LISTS.map((name) => {
      const selected = name === current;
      // Waiting wants someone as long as it is not empty; Mine when a chat there is new to
      // this agent or has unread messages (a chat routed to them lands there, not in Waiting).
      const attention = name === 'waiting' ? counts.waiting : name === 'mine' ? store.needingMe('mine') : 0;
      return h('button.seg-btn', {
        type: 'button', role: 'tab', id: `list-tab-${name}`, 'aria-selected': String(selected), 'aria-controls': 'inbox-list',
        tabindex: selected ? 0 : -1, dataset: { list: name },
        onclick: () => store.setList(name),
        onkeydown: (ev: KeyboardEvent) => {
          const i = LISTS.indexOf(name);
          const next = ev.key === 'ArrowRight' ? LISTS[(i + 1) % LISTS.length] : ev.key === 'ArrowLeft' ? LISTS[(i + LISTS.length - 1) % LISTS.length] : null;
          if (next) {
            ev.preventDefault();
            store.setList(next);
          }
        },
      },
      h('span.count', { class: attention ? 'count--hot' : '' }, String(counts[name])),
      h('span.seg-label', null, t(`list_${name}` as const)));
    }));

  const rows = store.listRows(current);
  const list = h('ul.conv-list#inbox-list', { role: 'tabpanel', 'aria-labelledby': `list-tab-${current}`, 'aria-busy': String(!store.listLoaded) },
    rows.map((row) => h('li', null, item(store, row, current, open))));
  const body: Node[] = [list];
  if (!rows.length) {
    body.push(h('div.list-empty', null, store.listLoaded ? t(`empty_${current}` as const) : t('loading')));
  }
  if (store.nextBefore && (current === 'closed' || current === 'team')) {
    const more = h('button.btn.btn-ghost.btn-block.load-more', {
      type: 'button',
      onclick: async () => {
        more.disabled = true;
        more.textContent = t('loading');
        try {
          await store.loadMore();
        } finally {
          more.disabled = false;
        }
      },
    }, t('loadMore'));
    body.push(more);
  }
  mount(el, h('div.inbox-head', null, h('h2.inbox-title', null, t('inbox')), tabs), h('div.inbox-scroll', null, ...body));

  if (focusedList) (el.querySelector(`[data-list="${focusedList}"]`) as HTMLElement | null)?.focus();
  else if (focusedId) (el.querySelector(`[data-id="${focusedId}"]`) as HTMLElement | null)?.focus();
}

function item(store: Store, row: Summary, list: ListName, open: (id: string) => void): HTMLElement {
  const name = store.visitorName(row.id);
  const unread = store.attention(row.id) ? store.unread(row.id) : 0;
  const active = store.active === row.id;
  const assignee = store.assignee(row.id);
  const q = list === 'waiting' ? store.queueEntry(row.id) : null;
  const at = store.activity(row);
  const meta: Node[] = [];
  if (q) meta.push(h('span.chip.chip--queue', null, t('queuePos', { n: q.position })));
  if (list === 'waiting') meta.push(h('span.chip', { title: full(q?.since ?? row.created_at) }, t('waitingFor', { d: duration(Date.now() - (q?.since ?? row.created_at)) })));
  if (q?.department) meta.push(h('span.chip', null, t('department', { name: q.department })));
  if (list === 'team' || list === 'closed') {
    meta.push(h('span.chip', { class: assignee === store.me.id ? 'chip--me' : '' },
      icon('user', 12), assignee ? (assignee === store.me.id ? t('assignedToYou') : store.agentLabel(assignee)) : t('unassigned')));
  }
  if (row.isNew) meta.push(h('span.chip.chip--new', null, t('newBadge')));
  if (store.hasRefusedReply(row.id)) meta.push(h('span.chip.chip--failed', null, t('notSent')));
  if (store.sites.length > 1) {
    const site = store.sites.find((s) => s.id === row.site_id);
    if (site?.name) meta.push(h('span.chip.chip--site', null, site.name));
  }
  const preview = row.preview;
  const previewText = preview
    ? `${preview.role === 'agent' ? `${preview.mine ? t('you') : t('agent')}: ` : ''}${preview.note ? `[${t('note')}] ` : ''}${oneLine(preview.text, 90)}`
    : t('noMessages');
  const btn = h('button.conv-item', {
    type: 'button',
    dataset: { id: row.id },
    class: `${active ? 'is-active' : ''} ${unread ? 'is-unread' : ''}`,
    'aria-current': active ? 'true' : undefined,
    onclick: () => open(row.id),
    onkeydown: (ev: KeyboardEvent) => {
      if (ev.key !== 'ArrowDown' && ev.key !== 'ArrowUp') return;
      ev.preventDefault();
      const li = btn.parentElement!;
      const sib = (ev.key === 'ArrowDown' ? li.nextElementSibling : li.previousElementSibling) as HTMLElement | null;
      (sib?.querySelector('button') as HTMLElement | null)?.focus();
    },
  },
  h('span.avatar', { 'aria-hidden': 'true', style: undefined, dataset: { hue: String(hue(row.visitor_id || row.id)) } }, initials(name)),
  h('span.ci-main', null,
    h('span.ci-top', null,
      h('span.ci-name', null, name),
      store.nameSelfStated(row.id) ? selfStatedMark() : null,
      h('time.ci-time', { datetime: new Date(at).toISOString(), title: full(at) }, listTime(at))),
    h('span.ci-bottom', null,
      h('span.ci-preview', { class: preview ? '' : 'is-empty' }, previewText),
      unread ? h('span.badge', { 'aria-label': t('unreadN', { n: unread }) }, unread > 99 ? '99+' : String(unread)) : null),
    meta.length ? h('span.ci-meta', null, meta) : null));
  const av = btn.querySelector('.avatar') as HTMLElement;
  av.style.setProperty('--h', String(hue(row.visitor_id || row.id)));
  return btn;
}
