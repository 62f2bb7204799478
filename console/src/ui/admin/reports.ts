// Reports (owners and admins): for a date range and site, in a time zone (the browser's by
// default): KPI tiles, conversations per day and by hour of day as SVG bar charts, tables per
// agent, country and source, and the same report as a CSV download.
import { api, fetchBlob, saveBlob } from '../../api';
import { debounce, h, icon, mount } from '../../dom';
import { lang } from '../../i18n';
import { t, tn } from './strings';
import type { Report, TeamAgent } from '../../types';
import { countryName, flag } from '../util';
import { BarChart } from './chart';
import {
  browserZone, card, dateInput, daysAgo, daysBetween, errorRow, errorText, humanDuration, number, pageHead, select,
  type Page, type PageCtx,
} from './common';
import { zoneSelectFor } from './zones';

/** The UTC offset (ms) of `zone` at `ms`. */
function offsetAt(ms: number, zone: string): number {
  const parts = new Intl.DateTimeFormat('en-US', {
    timeZone: zone, hourCycle: 'h23', year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit',
  }).formatToParts(ms);
  const get = (type: string) => Number(parts.find((p) => p.type === type)?.value ?? 0);
  const asUtc = Date.UTC(get('year'), get('month') - 1, get('day'), get('hour') % 24, get('minute'), get('second'));
  return asUtc - Math.floor(ms / 1000) * 1000;
}

/** The moment a `YYYY-MM-DD` day starts in `zone` (plus `addDays`), in ms. */
export function zoneDayStart(date: string, zone: string, addDays = 0): number | null {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(date);
  if (!m) return null;
  const wall = Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]) + addDays);
  try {
    let guess = wall;
    for (let i = 0; i < 3; i += 1) guess = wall - offsetAt(guess, zone);
    return guess;
  } catch {
    return wall;
  }
}

const PRESETS: [string, number][] = [['today', 0], ['7', 6], ['30', 29], ['90', 89]];

export class ReportsPage implements Page {
  readonly el = h('div.page.page--reports');
  private from = daysAgo(6);
  private to = daysAgo(0);
  private site = '';
  private zone = browserZone();
  private report: Report | null = null;
  private error: string | null = null;
  private loading = false;
  private abort: AbortController | null = null;
  private names = new Map<string, string>();
  private perDay = new BarChart('per-day', 200);
  private perHour = new BarChart('hours', 180);
  private controls = h('div.report-controls');
  private content = h('div.report-content', { 'aria-live': 'polite', 'aria-busy': 'false' });
  private downloading = false;
  private reload = debounce(() => void this.load(), 250);

  constructor(private ctx: PageCtx) {}

  show(): void {
    this.render();
    void this.load();
    this.ctx.teamAgents().then((list: TeamAgent[]) => {
      for (const a of list) this.names.set(a.id, a.name);
      if (this.report) this.renderContent();
    }).catch(() => {});
  }

  relabel(): void {
    this.render();
  }

  destroy(): void {
    this.perDay.destroy();
    this.perHour.destroy();
    this.abort?.abort();
  }

  private query(format?: 'csv'): string | null {
    const from = zoneDayStart(this.from, this.zone);
    const to = zoneDayStart(this.to, this.zone, 1);
    if (from === null || to === null || to <= from) return null;
    const q = new URLSearchParams({ from: String(from), to: String(to), tz: this.zone });
    if (this.site) q.set('site', this.site);
    if (format) q.set('format', format);
    return `/api/v1/reports?${q}`;
  }

  private async load(): Promise<void> {
    const path = this.query();
    if (!path) {
      this.error = t('rangeInvalid');
      this.renderContent();
      return;
    }
    this.abort?.abort();
    const abort = new AbortController();
    this.abort = abort;
    this.loading = true;
    this.content.setAttribute('aria-busy', 'true');
    this.renderContent();
    try {
      this.report = await api<Report>(path, { signal: abort.signal });
      this.error = null;
    } catch (e) {
      if ((e as Error)?.name === 'AbortError') return;
      this.error = errorText(e);
    }
    if (abort !== this.abort) return;
    this.loading = false;
    this.content.setAttribute('aria-busy', 'false');
    this.renderContent();
  }

  private async download(btn: HTMLButtonElement): Promise<void> {
    const path = this.query('csv');
    if (!path || this.downloading) return;
    this.downloading = true;
    btn.disabled = true;
    try {
      const { blob } = await fetchBlob(path);
      saveBlob(blob, `parley-report-${this.from}-${this.to}.csv`);
    } catch (e) {
      this.ctx.toast(errorText(e), 'error');
    } finally {
      this.downloading = false;
      btn.disabled = false;
    }
  }

  private render(): void {
    const csv: HTMLButtonElement = h('button.btn.btn-secondary', { type: 'button', 'data-action': 'download-csv', onclick: () => void this.download(csv) },
      icon('download', 16), t('downloadCsv'));
    const set = (k: 'from' | 'to', v: string) => {
      this[k] = v;
      this.renderControls();
      this.reload();
    };
    this.renderControls = () => {
      const preset = PRESETS.find(([, days]) => this.from === daysAgo(days) && this.to === daysAgo(0))?.[0] ?? '';
      const sites = this.ctx.store.sites;
      mount(this.controls,
        h('div.seg.seg--inline.seg--presets', { role: 'group', 'aria-label': t('quickRanges') },
          PRESETS.map(([key, days]) => h('button.seg-btn', {
            type: 'button', 'aria-pressed': String(preset === key),
            onclick: () => {
              this.from = daysAgo(days);
              this.to = daysAgo(0);
              this.renderControls();
              this.reload();
            },
          }, key === 'today' ? t('rangeToday') : t('rangeDays', { n: key })))),
        h('label.inline-field', null, h('span', null, t('fromLabel')), dateInput(this.from, (v) => set('from', v), { name: 'from', max: this.to, required: true })),
        h('label.inline-field', null, h('span', null, t('toLabel')), dateInput(this.to, (v) => set('to', v), { name: 'to', min: this.from, required: true })),
        h('label.inline-field', null, h('span', null, t('siteLabel')),
          select([['', t('allSites')], ...sites.map((s) => [s.id, s.name || s.id] as [string, string])], this.site, (v) => {
            this.site = v;
            this.reload();
          }, { name: 'site' })),
        h('label.inline-field', null, h('span', null, t('timezoneLabel')), zoneSelectFor(this.zone, (v) => {
          this.zone = v;
          this.reload();
        })));
    };
    this.renderControls();
    mount(this.el, pageHead(t('reportsTitle'), t('reportsSub'), csv), this.controls, this.content);
    this.renderContent();
  }

  private renderControls: () => void = () => {};

  private renderContent(): void {
    const r = this.report;
    if (this.error && !r) {
      mount(this.content, errorRow(this.error, () => void this.load()));
      return;
    }
    if (!r) {
      mount(this.content, h('div.page-loading', null, h('span.spinner', { 'aria-hidden': 'true' }), t('loading')));
      return;
    }
    const tile = (key: string, label: string, value: string, sub?: string | null) => h('div.kpi', { dataset: { kpi: key } },
      h('div.kpi-label', null, label), h('div.kpi-value', null, value), sub ? h('div.kpi-sub', null, sub) : null);
    const sat = r.satisfaction;
    const tiles = h('div.kpis', null,
      tile('conversations', t('kpiConversations'), number(r.conversations)),
      tile('first_response', t('kpiFirstResponse'), humanDuration(r.first_response.median_ms),
        r.first_response.count ? t('kpiP90', { value: humanDuration(r.first_response.p90_ms) }) : t('kpiNone')),
      tile('resolution', t('kpiResolution'), humanDuration(r.resolution.median_ms),
        r.resolution.count ? t('kpiP90', { value: humanDuration(r.resolution.p90_ms) }) : t('kpiNone')),
      tile('missed', t('kpiMissed'), number(r.missed), t('kpiMissedSub')),
      tile('satisfaction', t('kpiSatisfaction'), sat.average === null ? '—' : `${number(sat.average, 1)} / 5`,
        tn('kpiRatings', sat.ratings)));

    // Every day of the range gets a bar, also the ones without conversations.
    const days = daysBetween(this.from, this.to);
    const dayLabel = (d: string) => {
      const [y, m, dd] = d.split('-').map(Number);
      return new Intl.DateTimeFormat(lang(), { month: 'numeric', day: 'numeric', timeZone: 'UTC' }).format(Date.UTC(y, m - 1, dd));
    };
    const dayLong = (d: string) => {
      const [y, m, dd] = d.split('-').map(Number);
      return new Intl.DateTimeFormat(lang(), { dateStyle: 'medium', timeZone: 'UTC' }).format(Date.UTC(y, m - 1, dd));
    };
    const dayValues = days.map((d) => r.per_day[d] ?? 0);
    this.perDay.set({
      title: t('chartPerDay'), labels: days.map(dayLabel), values: dayValues,
      describe: (i) => t('chartBar', { label: dayLong(days[i]), n: dayValues[i] }),
      columns: [t('dayCol'), t('kpiConversations')],
    });
    const hours = Array.from({ length: 24 }, (_, i) => String(i).padStart(2, '0'));
    const hourValues = hours.map((_, i) => r.busiest_hours?.[i] ?? 0);
    this.perHour.set({
      title: t('chartHours'), labels: hours, values: hourValues,
      describe: (i) => t('chartBar', { label: `${hours[i]}:00–${hours[(i + 1) % 24]}:00`, n: hourValues[i] }),
      columns: [t('hourCol'), t('kpiConversations')],
    });

    const total = Math.max(1, r.conversations);
    const share = (n: number) => `${number((n / total) * 100)}%`;
    const sorted = (o: Record<string, number>) => Object.entries(o).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
    const table = (caption: string, head: string[], rows: Node[][], empty: string) => rows.length
      ? h('div.table-wrap', null, h('table.table', null, h('caption.sr-only', null, caption),
        h('thead', null, h('tr', null, head.map((x, i) => h('th', { scope: 'col', class: i ? 'num' : '' }, x)))),
        h('tbody', null, rows.map((cells) => h('tr', null, cells.map((c, i) => h(i ? 'td' : 'th', { class: i ? 'num' : '', scope: i ? undefined : 'row' }, c)))))))
      : h('p.muted.empty-line', null, empty);

    const agents = [...r.per_agent].sort((a, b) => b.conversations - a.conversations);
    const txt = (x: string) => document.createTextNode(x);
    const agentRows = agents.map((a) => [
      txt(a.name ?? this.names.get(a.agent) ?? a.agent),
      txt(number(a.conversations)), txt(number(a.messages)), txt(humanDuration(a.first_response.median_ms)),
      txt(a.satisfaction === null ? '—' : number(a.satisfaction, 1)), txt(number(a.missed)),
    ]);
    const countryRows = sorted(r.by_country).map(([code, n]) => [
      code === 'unknown' ? txt(t('unknown')) : h('span', null, flag(code) ? `${flag(code)} ` : '', countryName(code) || code),
      txt(number(n)), txt(share(n)),
    ]);
    const sourceRows = sorted(r.by_source).map(([src, n]) => [
      txt(src === 'direct' ? t('direct') : src), txt(number(n)), txt(share(n)),
    ]);

    mount(this.content,
      this.error ? errorRow(this.error, () => void this.load()) : null,
      h('div', { class: this.loading ? 'report-body is-loading' : 'report-body', dataset: { conversations: String(r.conversations) } },
        tiles,
        h('div.report-grid', null,
          card(t('chartPerDay'), { className: 'card--chart', sub: t('inZone', { zone: r.timezone }) }, this.perDay.el),
          card(t('chartHours'), { className: 'card--chart', sub: t('inZone', { zone: r.timezone }) }, this.perHour.el)),
        card(t('perAgentTitle'), { className: 'card--flush' },
          table(t('perAgentTitle'), [t('agentCol'), t('kpiConversations'), t('messagesCol'), t('kpiFirstResponse'), t('kpiSatisfaction'), t('kpiMissed')],
            agentRows, t('noData'))),
        h('div.report-grid', null,
          card(t('byCountryTitle'), { className: 'card--flush' }, table(t('byCountryTitle'), [t('countryCol'), t('kpiConversations'), t('shareCol')], countryRows, t('noData'))),
          card(t('bySourceTitle'), { className: 'card--flush' }, table(t('bySourceTitle'), [t('sourceCol'), t('kpiConversations'), t('shareCol')], sourceRows, t('noData'))))));
  }
}
