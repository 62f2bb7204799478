// Search (every agent): the team's messages containing every word typed, filtered by site,
// agent, tag and date. Matches are highlighted with <mark> elements around text nodes (never
// markup from the text); a result opens its conversation in a tab.
import { api } from '../../api';
import { h, icon, mount } from '../../dom';
import { t, tn } from './strings';
import { full, listTime } from '../../time';
import { isAdmin, type SearchHit } from '../../types';
import { dateInput, dayEnd, dayStart, errorRow, errorText, pageHead, select, type Page, type PageCtx } from './common';

const LIMIT = 50;

/** `text` as text nodes, with every occurrence of a word of `query` in a <mark>. */
export function highlight(text: string, query: string): DocumentFragment {
  const frag = document.createDocumentFragment();
  const words = Array.from(new Set(query.split(/\s+/).filter(Boolean)))
    .sort((a, b) => b.length - a.length)
    .map((w) => w.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
  if (!words.length) {
    frag.appendChild(document.createTextNode(text));
    return frag;
  }
  const re = new RegExp(words.join('|'), 'giu');
  let last = 0;
  for (const m of text.matchAll(re)) {
    const at = m.index ?? 0;
    if (!m[0]) continue;
    if (at > last) frag.appendChild(document.createTextNode(text.slice(last, at)));
    const mark = document.createElement('mark');
    mark.textContent = m[0];
    frag.appendChild(mark);
    last = at + m[0].length;
  }
  if (last < text.length) frag.appendChild(document.createTextNode(text.slice(last)));
  return frag;
}

export class SearchPage implements Page {
  readonly el = h('div.page.page--search');
  private q = '';
  private site = '';
  private agent = '';
  private tag = '';
  private from = '';
  private to = '';
  private results: SearchHit[] | null = null;
  private searched = '';
  private error: string | null = null;
  private busy = false;
  private agentOptions: [string, string][] = [];
  private resultsEl = h('div.search-results', { 'aria-live': 'polite' });
  private input!: HTMLInputElement;

  constructor(private ctx: PageCtx) {}

  show(): void {
    this.render();
    void this.loadAgents();
    requestAnimationFrame(() => this.input?.focus());
  }

  relabel(): void {
    this.render();
  }

  private async loadAgents(): Promise<void> {
    const byId = new Map<string, string>([[this.ctx.me.id, this.ctx.me.name]]);
    for (const a of this.ctx.store.agents()) byId.set(a.id, a.name);
    if (isAdmin(this.ctx.me)) {
      try {
        for (const a of await this.ctx.teamAgents()) byId.set(a.id, a.name);
      } catch {
        /* the presence list will do */
      }
    }
    const next = Array.from(byId.entries()).sort((a, b) => a[1].localeCompare(b[1]));
    if (JSON.stringify(next) !== JSON.stringify(this.agentOptions)) {
      this.agentOptions = next;
      this.render();
    }
  }

  private async run(): Promise<void> {
    const q = this.q.trim();
    if (!q) {
      this.input.focus();
      return;
    }
    const params = new URLSearchParams({ q, limit: String(LIMIT) });
    if (this.site) params.set('site', this.site);
    if (this.agent) params.set('agent', this.agent);
    if (this.tag.trim()) params.set('tag', this.tag.trim());
    const from = this.from ? dayStart(this.from) : null;
    const to = this.to ? dayEnd(this.to) : null;
    if (from !== null) params.set('from', String(from));
    if (to !== null) params.set('to', String(to));
    this.busy = true;
    this.renderResults();
    try {
      const r = await api<{ results: SearchHit[] }>(`/api/v1/search?${params}`);
      this.results = r?.results ?? [];
      this.searched = q;
      this.error = null;
    } catch (e) {
      this.error = errorText(e);
    }
    this.busy = false;
    this.renderResults();
  }

  private render(): void {
    const sites = this.ctx.store.sites;
    this.input = h('input.search-input', {
      type: 'search', name: 'q', value: this.q, maxlength: 200, placeholder: t('searchPlaceholder'), 'aria-label': t('searchLabel'),
      autocomplete: 'off', oninput: () => (this.q = this.input.value),
    });
    const form = h('form.search-form', {
      role: 'search',
      onsubmit: (ev: SubmitEvent) => {
        ev.preventDefault();
        void this.run();
      },
    },
    h('div.search-bar', null, icon('search', 18), this.input, h('button.btn.btn-primary', { type: 'submit' }, t('searchButton'))),
    h('div.filters', null,
      h('label.inline-field', null, h('span', null, t('siteLabel')),
        select([['', t('allSites')], ...sites.map((s) => [s.id, s.name || s.id] as [string, string])], this.site, (v) => (this.site = v), { name: 'site' })),
      h('label.inline-field', null, h('span', null, t('agentFilter')),
        select([['', t('anyAgent')], ...this.agentOptions], this.agent, (v) => (this.agent = v), { name: 'agent' })),
      h('label.inline-field', null, h('span', null, t('tagFilter')),
        h('input', { name: 'tag', value: this.tag, maxlength: 32, size: 10, placeholder: t('anyTag'), oninput: (ev: Event) => (this.tag = (ev.target as HTMLInputElement).value) })),
      h('label.inline-field', null, h('span', null, t('fromLabel')), dateInput(this.from, (v) => (this.from = v), { name: 'from' })),
      h('label.inline-field', null, h('span', null, t('toLabel')), dateInput(this.to, (v) => (this.to = v), { name: 'to' })),
      this.site || this.agent || this.tag || this.from || this.to
        ? h('button.link-btn', {
          type: 'button',
          onclick: () => {
            this.site = this.agent = this.tag = this.from = this.to = '';
            this.render();
          },
        }, t('clearFilters'))
        : null));
    mount(this.el, pageHead(t('searchTitle'), t('searchSub')), form, this.resultsEl);
    this.renderResults();
  }

  private renderResults(): void {
    const list = this.results;
    if (this.busy) {
      mount(this.resultsEl, h('div.page-loading', { role: 'status' }, h('span.spinner', { 'aria-hidden': 'true' }), t('searching')));
      return;
    }
    if (this.error) {
      mount(this.resultsEl, errorRow(this.error, () => void this.run()));
      return;
    }
    if (!list) {
      mount(this.resultsEl, h('div.search-empty', null, icon('search', 28), h('p', null, t('searchHint'))));
      return;
    }
    if (!list.length) {
      mount(this.resultsEl, h('div.search-empty', null, h('p', null, t('noResults', { q: this.searched }))));
      return;
    }
    const sites = this.ctx.store.sites;
    const store = this.ctx.store;
    mount(this.resultsEl,
      h('p.results-count', { role: 'status' }, list.length >= LIMIT ? t('resultsMany', { n: list.length }) : tn('resultsN', list.length)),
      h('ol.results', null, list.map((hit) => {
        const site = sites.length > 1 ? sites.find((s) => s.id === hit.site_id)?.name : null;
        const known = store.rows.has(hit.conversation_id);
        const who = known ? store.visitorName(hit.conversation_id) : t('conversationN', { id: hit.conversation_id.slice(-6).toUpperCase() });
        return h('li', null, h('button.result', {
          type: 'button', dataset: { conversation: hit.conversation_id, seq: String(hit.seq) },
          onclick: () => this.ctx.openConversation(hit.conversation_id),
        },
        h('span.result-top', null,
          h('span.result-who', null, who),
          h('span.chip', { class: hit.author_role === 'agent' ? 'chip--me' : '' }, hit.author_role === 'agent' ? t('agent') : hit.author_role === 'visitor' ? t('visitor') : t('system')),
          site ? h('span.chip.chip--site', null, site) : null,
          h('time.result-time', { datetime: new Date(hit.created_at).toISOString(), title: full(hit.created_at) }, listTime(hit.created_at))),
        h('span.result-text', null, highlight(hit.text ?? '', this.searched))));
      })));
  }
}
