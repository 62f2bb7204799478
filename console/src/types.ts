// Wire shapes (docs/protocol.md and the console endpoints). Unknown fields are ignored.

export type Role = 'visitor' | 'agent' | 'system';
export type AgentStatus = 'online' | 'away' | 'busy' | 'offline';
export const STATUSES: AgentStatus[] = ['online', 'away', 'busy', 'offline'];

export interface Agent {
  id: string;
  name: string;
  email: string;
  role: string;
  team: string;
}

export interface Session {
  token: string;
  expires_at: number;
  agent: Agent;
}

export interface Participant {
  id: string;
  role: Role;
  name?: string;
}

export interface Ev {
  seq: number;
  kind: string;
  body: any;
  author: Participant;
  at: number;
  client_msg_id?: string;
  masked?: boolean;
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
  event: 'new' | 'queued' | 'assigned' | 'activity' | 'closed' | 'missed' | 'presence' | string;
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
