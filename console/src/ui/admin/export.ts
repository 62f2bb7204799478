// Export (owners, admins and agents with the export permission): messages, conversations or
// the audit log for a date range, as CSV or JSON, fetched with the token and saved from a blob.
import { fetchBlob, saveBlob } from '../../api';
import { h, icon, mount } from '../../dom';
import { t, type Key } from './strings';
import { formatSize } from '../../files';
import { card, dateInput, dayEnd, dayStart, daysAgo, errorText, field, pageHead, select, type Page, type PageCtx } from './common';

type Dataset = 'messages' | 'conversations' | 'audit';
type Format = 'csv' | 'json';

export class ExportPage implements Page {
  readonly el = h('div.page.page--export');
  private dataset: Dataset = 'messages';
  private format: Format = 'csv';
  private from = daysAgo(29);
  private to = daysAgo(0);
  private site = '';
  private busy = false;
  private status: { text: string; kind: 'info' | 'error' } | null = null;

  constructor(private ctx: PageCtx) {}

  show(): void {
    this.render();
  }

  relabel(): void {
    this.render();
  }

  private async download(): Promise<void> {
    const from = dayStart(this.from);
    const to = dayEnd(this.to);
    if (from === null || to === null || to <= from) {
      this.status = { text: t('rangeInvalid'), kind: 'error' };
      this.render();
      return;
    }
    const q = new URLSearchParams({ from: String(from), to: String(to) });
    if (this.site && this.dataset !== 'audit') q.set('site', this.site);
    this.busy = true;
    this.status = { text: t('exportPreparing'), kind: 'info' };
    this.render();
    try {
      const { blob } = await fetchBlob(`/api/v1/export/${this.dataset}.${this.format}?${q}`);
      const name = `parley-${this.dataset}-${this.from}-${this.to}.${this.format}`;
      saveBlob(blob, name);
      this.status = { text: t('exportDone', { name, size: formatSize(blob.size) }), kind: 'info' };
    } catch (e) {
      this.status = { text: errorText(e), kind: 'error' };
    }
    this.busy = false;
    this.render();
  }

  private render(): void {
    const sites = this.ctx.store.sites;
    const datasets: [Dataset, string][] = (['messages', 'conversations', 'audit'] as Dataset[]).map((d) => [d, t(`ds_${d}` as Key)]);
    const formatRadio = (f: Format, label: string) => h('label.radio', null,
      h('input', { type: 'radio', name: 'format', value: f, checked: this.format === f, onchange: () => (this.format = f) }), h('span', null, label));
    const masked = !this.ctx.me.permissions?.view_personal_data && this.ctx.me.role === 'agent';
    mount(this.el,
      pageHead(t('exportTitle'), t('exportSub')),
      card(null, { className: 'card--narrow' },
        h('form.export-form', {
          onsubmit: (ev: SubmitEvent) => {
            ev.preventDefault();
            void this.download();
          },
        },
        h('div.form-grid', null,
          field(t('datasetLabel'), select(datasets, this.dataset, (v) => {
            this.dataset = v;
            this.render();
          }, { name: 'dataset' }), { hint: t(`dsHint_${this.dataset}` as Key), className: 'field--wide' }),
          h('fieldset.fieldset.field--wide', null, h('legend.field-label', null, t('formatLabel')),
            h('div.radio-row', null, formatRadio('csv', t('formatCsv')), formatRadio('json', t('formatJson')))),
          field(t('fromLabel'), dateInput(this.from, (v) => (this.from = v), { name: 'from', required: true })),
          field(t('toLabel'), dateInput(this.to, (v) => (this.to = v), { name: 'to', required: true })),
          this.dataset !== 'audit'
            ? field(t('siteLabel'), select([['', t('allSites')], ...sites.map((s) => [s.id, s.name || s.id] as [string, string])], this.site, (v) => (this.site = v), { name: 'site' }), { className: 'field--wide' })
            : null),
        masked ? h('p.field-hint', null, icon('lock', 13), ' ', t('exportMasked')) : null,
        this.status ? h('p', { class: `export-status export-status--${this.status.kind}`, role: this.status.kind === 'error' ? 'alert' : 'status' },
          this.busy ? h('span.spinner', { 'aria-hidden': 'true' }) : null, this.status.text) : null,
        h('div.form-actions', null,
          h('button.btn.btn-primary', { type: 'submit', disabled: this.busy, 'data-action': 'export' }, icon('download', 16), t('exportButton'))))));
  }
}
