// Wire shapes (docs/protocol.md and the console endpoints). Unknown fields are ignored.

import type { Role } from '../../web/wire';

export type { Ev, Participant, Role } from '../../web/wire';
export type AgentStatus = 'online' | 'away' | 'busy' | 'offline';
export const STATUSES: AgentStatus[] = ['online', 'away', 'busy', 'offline'];

export interface Permissions {
  view_personal_data: boolean;
  export: boolean;
}

export interface Agent {
  id: string;
  name: string;
  email: string;
  role: string;
  team: string;
  /** Effective permissions from /api/v1/me (not in the login answer: signInWith asks /me after it). */
  permissions?: Permissions;
}

export interface Me {
  principal: { id: string; kind: string; name: string; role: string; team: string };
  permissions?: Permissions;
}

/** Owners and admins manage the team: agents, sites, reports, erasure. */
export function isAdmin(agent: Pick<Agent, 'role'>): boolean {
  return agent.role === 'owner' || agent.role === 'admin';
}

/** What this device remembers of a sign-in (the session itself is an HttpOnly cookie). */
export interface Session {
  expires_at: number;
  agent: Agent;
}

export interface ConvRow {
  id: string;
  site_id: string;
  visitor_id: string;
  status: 'open' | 'closed';
  assignee_id: string | null;
  created_at: number;
  updated_at: number;
  last_seq: number;
  last_message_at: number | null;
}

export interface Site {
  id: string;
  name: string;
  site_key?: string;
}

export interface PresenceAgent {
  id: string;
  name: string;
  status: AgentStatus;
  active: number;
  capacity: number;
}

export interface QueueEntry {
  conversation: string;
  position: number;
  since: number;
  department?: string | null;
}

export interface AssignmentEntry {
  conversation: string;
  agent: string;
  answered: boolean;
}

export interface InboxFrame {
  type: 'inbox';
  me: { id: string; status: AgentStatus };
  agents: PresenceAgent[];
  queue: QueueEntry[];
  assignments: AssignmentEntry[];
}

export interface FeedFrame {
  type: 'feed';
  event: 'new' | 'queued' | 'assigned' | 'activity' | 'read' | 'closed' | 'missed' | 'presence' | string;
  conversation?: string;
  agent?: string;
  agent_name?: string;
  previous?: string | null;
  reason?: string;
  seq?: number;
  kind?: string;
  author_role?: Role;
  at?: number;
  preview?: string;
  status?: AgentStatus;
  masked?: boolean;
}

export interface QuickReply {
  id: string;
  title: string;
  body: string;
  group?: string | null;
  personal?: boolean;
}

export interface VisitorContext {
  page?: { url?: string; title?: string };
  referrer?: string;
  utm?: Record<string, string>;
  lang?: string;
  tz?: string;
  screen?: { w?: number; h?: number };
  device?: string;
  browser?: string;
  os?: string;
}

export interface VisitorInfo {
  visitor: {
    id: string;
    name?: string | null;
    email?: string | null;
    /** The id the website's identify() gave; without a valid hash it is not verified. */
    external_id?: string | null;
    identity_verified?: boolean;
    country?: string | null;
    region?: string | null;
    city?: string | null;
    context?: VisitorContext;
    attributes?: Record<string, unknown>;
  };
  pages?: { url: string; title?: string | null; at: number }[];
  conversations?: { id: string; status: string; created_at: number; last_message_at?: number | null }[];
}

/**
 * Whether the visitor's name and address are what they typed into a form (pre-chat, offline):
 * neither vouched for by the site's server nor claimed by its page, so nobody has checked them.
 */
export function isSelfStated(v: VisitorInfo['visitor'] | null | undefined): boolean {
  return Boolean(v && !v.identity_verified && !v.external_id && (v.name || v.email));
}

// ---- administration (owners and admins) -----------------------------------------------------

/** A team member as `GET /api/v1/agents` lists them. */
export interface TeamAgent {
  id: string;
  email: string;
  name: string;
  role: 'owner' | 'admin' | 'agent' | string;
  capacity: number;
  permissions: string[];
  disabled: boolean;
  departments: string[];
  created_at: number;
}

/** Text in several languages, keyed by language tag (`en`, `zh-CN`). */
export type Localized = Record<string, string>;

export interface FormField {
  name: string;
  label: Localized;
  type: 'text' | 'email' | 'tel' | 'textarea';
  required: boolean;
}

export interface WidgetSettings {
  appearance: { color: string; position: 'right' | 'left'; theme: 'auto' | 'light' | 'dark'; launcher_text: Localized };
  welcome: Localized;
  prechat: { enabled: boolean; fields: FormField[] };
  offline: { message: Localized };
  attachments: { max_bytes: number };
  [more: string]: unknown;
}

export const WEEKDAYS = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'] as const;
export type Weekday = (typeof WEEKDAYS)[number];

export interface Span {
  open: string;
  close: string;
}

export interface BusinessHours {
  enabled: boolean;
  timezone: string;
  weekly: Record<Weekday, Span[]>;
  holidays: string[];
}

export type RuleWhen = 'url_contains' | 'language' | 'country' | 'param';
export const RULE_KINDS: RuleWhen[] = ['url_contains', 'language', 'country', 'param'];

export interface RoutingRule {
  when: RuleWhen;
  value: string;
  department: string;
}

export interface Routing {
  policy: 'round_robin' | 'least_loaded';
  answer_timeout_ms: number;
  offline_behavior: 'requeue' | 'keep';
  heartbeat_timeout_ms: number;
  /** How long an agent whose last console closed keeps presence and conversations. */
  reconnect_grace_ms: number;
  rules: RoutingRule[];
  hours: BusinessHours;
  [more: string]: unknown;
}

export interface SiteDetail {
  id: string;
  name: string;
  site_key: string;
  allowed_origins: string[];
  settings: WidgetSettings;
  routing: Routing;
  retention_days: number | null;
  /** Documented, but not (or no longer) sent by every server: see SitePage.load. */
  identity_verification?: boolean;
  created_at: number;
  translation: TranslationSettings;
  automation: AutomationSettings;
  bot: BotSettings;
}

// Settings holding a key (translation, bot) come without it: `api_key_set` says whether one is
// stored, and a PATCH may carry a new `api_key` ('' removes the stored one).
export interface TranslationSettings {
  enabled: boolean;
  /** The language agents read and write (`en`, `zh`…). */
  agent_language: string;
  provider: 'libretranslate' | 'openai' | 'workers_ai';
  endpoint: string;
  model: string;
  timeout_ms: number;
  api_key_set: boolean;
}

/** Who answers as the bot: an OpenAI-compatible service, Cloudflare Workers AI, or the team's own service behind a webhook. */
export type BotKind = 'llm' | 'workers_ai' | 'webhook';

export interface BotSettings {
  enabled: boolean;
  kind: BotKind;
  name: string;
  endpoint: string;
  model: string;
  knowledge: string;
  handoff_keywords: string[];
  timeout_ms: number;
  api_key_set: boolean;
}

export interface KeywordReply {
  keywords: string[];
  reply: Localized;
}

export interface Invitation {
  url_contains: string;
  after_seconds: number;
  message: Localized;
}

export interface AutomationSettings {
  away_reply: Localized | null;
  keyword_replies: KeywordReply[];
  auto_close_seconds: number | null;
  close_notice: Localized | null;
  invitations: Invitation[];
}

export const WEBHOOK_EVENTS = [
  'conversation.created', 'message.created', 'conversation.assigned', 'conversation.closed', 'offline_message.created',
] as const;

export interface Webhook {
  id: string;
  url: string;
  events: string[];
  enabled: boolean;
  failures: number;
  disabled_reason: string | null;
  created_at: number;
}

/** Why a delivery's last attempt failed (docs/protocol.md); a newer server may add codes. */
export type DeliveryErrorCode =
  | 'http_status' | 'redirect_refused' | 'address_refused' | 'timeout' | 'webhook_deleted' | 'not_delivered' | 'network';

export interface Delivery {
  delivery_id: string;
  event: string;
  status: 'pending' | 'paused' | 'delivered' | 'failed' | string;
  attempts: number;
  last_status: number | null;
  /** The failure in the server's English words, for people (shown as a title). */
  last_error: string | null;
  /** Why the last attempt failed: a `DeliveryErrorCode`, or one a newer server added; null when it did not fail. */
  error_code: string | null;
  /** With `address_refused`: why the address is refused (`scheme_not_allowed`, …). */
  error_detail: string | null;
  created_at: number;
  delivered_at: number | null;
  next_at: number | null;
}

export interface Spread {
  count: number;
  median_ms: number | null;
  p90_ms: number | null;
}

export interface Report {
  timezone: string;
  conversations: number;
  per_day: Record<string, number>;
  first_response: Spread;
  resolution: Spread;
  missed: number;
  per_agent: { agent: string; name?: string; conversations: number; messages: number; first_response: Spread; satisfaction: number | null; missed: number }[];
  busiest_hours: number[];
  by_country: Record<string, number>;
  by_source: Record<string, number>;
  satisfaction: { ratings: number; average: number | null; distribution: number[] };
}

export interface SearchHit {
  conversation_id: string;
  seq: number;
  created_at: number;
  site_id: string;
  author_role: string;
  text: string;
}
