// The shape of one recorded event, as workers hand it to the primary's recorder.

/** Event types the recorder and the audit commands know; other strings are kept as they are. */
export type KnownEventType = 'session-open' | 'statement' | 'result' | 'refusal' | 'session-close' | 'retention';

export interface RecordEvent {
  type: KnownEventType | (string & {});
  /** Milliseconds since the epoch, when the gateway saw it. */
  ts: number;
  /** Session id: unique per client connection. */
  session: string;
  /** Configured connection name (`connections.<name>`): one recording chain each. */
  connection: string;
  [k: string]: unknown;
}
