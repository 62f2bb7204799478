// A bar chart drawn as SVG at the width it is shown (redrawn when that changes), so text stays
// at its real size. Each bar has a tooltip; a visually hidden table gives the same numbers to
// screen readers. Colours come from the stylesheet (light and dark).
import { h } from '../../dom';

const NS = 'http://www.w3.org/2000/svg';

function svg<K extends keyof SVGElementTagNameMap>(tag: K, attrs: Record<string, string | number>, text?: string): SVGElementTagNameMap[K] {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

export interface BarChartData {
  /** What the chart shows, for its accessible name. */
  title: string;
  /** Axis labels under the bars (thinned out when they would overlap). */
  labels: string[];
  values: number[];
  /** The tooltip and table text of one bar. */
  describe: (i: number) => string;
  /** Header cells of the hidden table. */
  columns: [string, string];
}

/** A "nice" top for the value axis: 1, 2, 5 × 10^n at or above max. */
function niceMax(max: number): number {
  if (max <= 4) return Math.max(1, max);
  const p = 10 ** Math.floor(Math.log10(max));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= max) return m * p;
  return 10 * p;
}

export class BarChart {
  readonly el: HTMLElement;
  private box = h('div.chart-box');
  private table = h('table.sr-only');
  private data: BarChartData | null = null;
  private width = 0;
  private observer: ResizeObserver;

  constructor(name: string, private height = 200) {
    this.el = h('figure.chart', { dataset: { chart: name } }, this.box, this.table);
    this.observer = new ResizeObserver(() => {
      const w = Math.floor(this.box.clientWidth);
      if (w && w !== this.width) {
        this.width = w;
        this.draw();
      }
    });
    this.observer.observe(this.box);
  }

  set(data: BarChartData): void {
    this.data = data;
    this.draw();
    this.table.replaceChildren(
      h('caption', null, data.title),
      h('thead', null, h('tr', null, h('th', { scope: 'col' }, data.columns[0]), h('th', { scope: 'col' }, data.columns[1]))),
      h('tbody', null, data.values.map((v, i) => h('tr', null, h('th', { scope: 'row' }, data.labels[i]), h('td', null, String(v))))));
  }

  destroy(): void {
    this.observer.disconnect();
  }

  private draw(): void {
    const d = this.data;
    const width = this.width || Math.floor(this.box.clientWidth) || 600;
    if (!d) return;
    const H = this.height;
    const pad = { top: 10, right: 8, bottom: 24, left: 34 };
    const plotW = Math.max(10, width - pad.left - pad.right);
    const plotH = H - pad.top - pad.bottom;
    const n = Math.max(1, d.values.length);
    const top = niceMax(Math.max(0, ...d.values));
    const root = svg('svg', { viewBox: `0 0 ${width} ${H}`, width, height: H, role: 'img', 'aria-label': d.title, class: 'chart-svg' });
    // Grid lines and value labels: 0, half, top (whole numbers only).
    const ticks = top <= 1 ? [0, 1] : top % 2 === 0 || top >= 10 ? [0, top / 2, top] : [0, top];
    for (const v of ticks) {
      const y = pad.top + plotH - (v / top) * plotH;
      root.append(
        svg('line', { x1: pad.left, x2: width - pad.right, y1: y, y2: y, class: v === 0 ? 'chart-axis' : 'chart-grid' }),
        svg('text', { x: pad.left - 6, y: y + 4, 'text-anchor': 'end', class: 'chart-tick' }, String(v)));
    }
    const slot = plotW / n;
    const barW = Math.max(1, Math.min(36, slot * 0.72));
    // Show at most one label per ~44 px.
    const every = Math.max(1, Math.ceil(44 / slot));
    d.values.forEach((v, i) => {
      const x = pad.left + i * slot + (slot - barW) / 2;
      const hgt = top ? (v / top) * plotH : 0;
      const g = svg('g', { class: 'chart-bar' });
      // A full-height hit area so thin or empty bars still show their tooltip.
      g.append(
        svg('rect', { x: pad.left + i * slot, y: pad.top, width: slot, height: plotH, class: 'chart-hit' }),
        svg('rect', { x, y: pad.top + plotH - hgt, width: barW, height: Math.max(v ? 1.5 : 0, hgt), rx: Math.min(3, barW / 3), class: 'chart-rect' }),
        svg('title', {}, d.describe(i)));
      root.append(g);
      if (i % every === 0) {
        root.append(svg('text', { x: pad.left + i * slot + slot / 2, y: H - 7, 'text-anchor': 'middle', class: 'chart-label' }, d.labels[i] ?? ''));
      }
    });
    this.box.replaceChildren(root);
  }
}
