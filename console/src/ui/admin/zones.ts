// IANA time zones for selects (business hours, reports): what this browser knows, with UTC,
// the browser's own zone and the current value always offered.
import { h } from '../../dom';
import { browserZone } from './common';

let cached: string[] | null = null;

export function timeZones(): string[] {
  if (!cached) {
    let zones: string[] = [];
    try {
      zones = (Intl as unknown as { supportedValuesOf(k: string): string[] }).supportedValuesOf('timeZone');
    } catch {
      zones = [];
    }
    const set = new Set(zones);
    set.add('UTC');
    set.add(browserZone());
    cached = Array.from(set).sort();
  }
  return cached;
}

/** A time-zone <select>, grouped by region. */
export function zoneSelectFor(value: string, onchange: (v: string) => void, name = 'timezone'): HTMLSelectElement {
  const zones = timeZones().includes(value) || !value ? timeZones() : [...timeZones(), value].sort();
  const groups = new Map<string, string[]>();
  for (const z of zones) {
    const region = z.includes('/') ? z.slice(0, z.indexOf('/')) : '';
    if (!groups.has(region)) groups.set(region, []);
    groups.get(region)!.push(z);
  }
  const el = h('select', { name, onchange: () => onchange(el.value) },
    Array.from(groups.entries()).map(([region, list]) => region
      ? h('optgroup', { label: region }, list.map((z) => h('option', { value: z }, z.replace(/_/g, ' '))))
      : list.map((z) => h('option', { value: z }, z))));
  el.value = value;
  return el;
}
