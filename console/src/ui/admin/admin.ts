// The console's pages, loaded on first use as a separate chunk (see console/build.mjs): the
// inbox that every agent opens at once does not carry them.
import { AgentsPage } from './agents';
import { ApiKeysPage } from './api-keys';
import type { Page, PageCtx } from './common';
import { ExportPage } from './export';
import { QuickRepliesPage } from './replies';
import { ReportsPage } from './reports';
import { SearchPage } from './search';
import { SitePage } from './site';

export type { Page, PageCtx } from './common';

export function makePage(name: string, ctx: PageCtx): Page {
  switch (name) {
    case 'search':
      return new SearchPage(ctx);
    case 'replies':
      return new QuickRepliesPage(ctx);
    case 'reports':
      return new ReportsPage(ctx);
    case 'agents':
      return new AgentsPage(ctx);
    case 'settings':
      return new SitePage(ctx);
    case 'api-keys':
      return new ApiKeysPage(ctx);
    case 'export':
      return new ExportPage(ctx);
    default:
      throw new Error(`no page ${name}`);
  }
}
