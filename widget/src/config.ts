// The widget configuration from GET /api/v1/widget/config, checked field by field: anything
// missing or odd takes a default, so a half-configured site still gets a working widget.
import type { Config, Invitation } from './types';

export const DEFAULT_COLOUR = '#2563eb';

export const isObj = (v: unknown): v is Record<string, any> => !!v && typeof v === 'object' && !Array.isArray(v);

const texts = (v: unknown): Record<string, string> => {
  const out: Record<string, string> = {};
  if (isObj(v)) for (const k in v) if (typeof v[k] === 'string') out[k] = v[k];
  return out;
};

/** #rrggbb, else the default. */
export const colour = (c: unknown): string => (/^#[0-9a-f]{6}$/i.test(c as string) ? (c as string) : DEFAULT_COLOUR);

export function normalize(c: any): Config {
  const a = isObj(c?.appearance) ? c.appearance : {};
  const fields = Array.isArray(c?.prechat?.fields) ? c.prechat.fields : [];
  return {
    site: { name: typeof c?.site?.name === 'string' ? c.site.name : '' },
    appearance: { color: colour(a.color), position: a.position === 'left' ? 'left' : 'right', launcher_text: texts(a.launcher_text) },
    welcome: texts(c?.welcome),
    prechat: {
      enabled: c?.prechat?.enabled === true,
      fields: fields
        .filter((f: any) => isObj(f) && typeof f.name === 'string' && /^[a-z0-9_]{1,32}$/.test(f.name))
        .map((f: any) => ({
          name: f.name,
          label: texts(f.label),
          type: ['email', 'tel', 'textarea'].includes(f.type) ? f.type : 'text',
          required: f.required === true,
        })),
    },
    offline: { message: texts(c?.offline?.message) },
    online: c?.online !== false,
    open: c?.open !== false,
    identity: { verification: c?.identity?.verification === true },
    attachments: { max_bytes: c?.attachments?.max_bytes > 0 ? c.attachments.max_bytes : 10 * 1024 * 1024 },
    invitations: (Array.isArray(c?.invitations) ? c.invitations : [])
      .filter((i: any) => isObj(i) && typeof i.url_contains === 'string')
      .map((i: any) => ({ url_contains: i.url_contains, after_seconds: Math.max(0, Number(i.after_seconds) || 0), message: texts(i.message) }))
      .filter((i: Invitation) => Object.values(i.message).some((t) => t && t.trim())),
  };
}
