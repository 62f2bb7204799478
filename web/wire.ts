// Types of the wire protocol (docs/protocol.md) that both browser apps read: the widget
// (widget/) and the agent console (console/). Types only: each app bundles nothing from here.

export type Role = 'visitor' | 'agent' | 'system';

/** Who wrote an event. */
export interface Participant {
  id: string;
  role: Role;
  name?: string;
}

/** One event of a conversation's log, as `event` frames and history pages carry it. */
export interface Ev {
  seq: number;
  kind: string;
  body: any;
  author: Participant;
  at: number;
  client_msg_id?: string;
  /** personal data in the body was masked for this reader (agents without the permission) */
  masked?: boolean;
}
