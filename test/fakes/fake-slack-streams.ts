/**
 * Slack's streaming messages and agent sessions as FakeSlack (over HTTP) and RecordingSlackThread (in process)
 * both enforce them, so a bot that breaks a rule fails in either kind of test:
 * - chat.startStream (https://docs.slack.dev/reference/methods/chat.startStream): `channel` and `thread_ts`;
 *   `recipient_user_id` and `recipient_team_id` required outside direct messages; `markdown_text` or `chunks`,
 *   never both; at most 12,000 characters of markdown in one call.
 * - chat.appendStream / chat.stopStream (https://docs.slack.dev/reference/methods/chat.appendStream,
 *   https://docs.slack.dev/reference/methods/chat.stopStream): the mode the stream started in (`markdown_text`
 *   or `chunks`) is kept, else `streaming_mode_mismatch`; after a stop, an expiry (`expire()`) or Slack's Stop
 *   (`stopByUser()`): `message_not_in_streaming_state` (`stopped_by_user` for an append after Slack's Stop).
 * - task_update chunks: `id`, `title`, a known `status` (`complete`, never `completed`); title, details and
 *   output at most 256 characters each (the limit Slack's guidance states). `details` of an update with the same
 *   id are appended to the earlier ones, as Slack does, so a bot that repeats them shows them twice.
 * - agents.sessions.setStatus (https://docs.slack.dev/reference/methods/agents.sessions.setStatus): a known
 *   status, `channel_id`, `thread_ts`; the warning `missing_agent_session_stopped_event_subscription` when the app
 *   is not subscribed to agent_session_stopped (`subscribedToStop = false`).
 */

export type Args = Record<string, unknown>;
type Answer = Args & { ok: boolean; error?: string };

export const MAX_STREAM_MARKDOWN_CHARS = 12_000;
const MAX_TASK_FIELD_CHARS = 256;
const TASK_STATUSES = new Set(['pending', 'in_progress', 'complete', 'error']);
const SESSION_STATUSES = new Set(['active', 'processing', 'suspended', 'closed']);

export interface StreamTask {
  id: string;
  title: string;
  status: string;
  details: string;
  output: string;
  /** How many task_update chunks this task received. */
  updates: number;
}

export interface FakeStream {
  channel: string;
  threadTs: string;
  ts: string;
  recipient: { user?: string; team?: string };
  mode: 'markdown' | 'chunks';
  state: 'streaming' | 'stopped' | 'expired' | 'stopped_by_user';
  /** The markdown received so far, in order. */
  markdown: string;
  tasks: Map<string, StreamTask>;
  /** Every call's chunks (or markdown), in order: what the stream showed, step by step. */
  calls: Array<{ method: 'start' | 'append' | 'stop'; chunks: Args[] }>;
  sessionStatus?: string;
}

export class FakeStreams {
  readonly streams: FakeStream[] = [];
  /** agents.sessions.setStatus calls that Slack accepted, in order. */
  readonly sessionStatuses: Array<{ channel: string; threadTs: string; status: string }> = [];
  /** 'ok', or the error agents.sessions.setStatus answers (e.g. `feature_disabled`). */
  sessionStatusResult = 'ok';
  /** The app is subscribed to agent_session_stopped (else setStatus answers with a warning). */
  subscribedToStop = true;
  /** chat.startStream answers this error instead of starting (e.g. `not_allowed_token_type`). */
  startError: string | undefined;

  constructor(
    private readonly nextTs: () => string,
    private readonly changed: () => void = () => {},
  ) {}

  find(ts: string): FakeStream | undefined {
    return this.streams.find((stream) => stream.ts === ts);
  }

  /** Streams still open (not stopped, expired or stopped by the user). */
  get open(): FakeStream[] {
    return this.streams.filter((stream) => stream.state === 'streaming');
  }

  start(args: Args): Answer {
    if (typeof args.channel !== 'string' || args.channel === '') return { ok: false, error: 'channel_not_found' };
    if (typeof args.thread_ts !== 'string' || args.thread_ts === '') return { ok: false, error: 'invalid_arguments' };
    if (!args.channel.startsWith('D')) {
      if (!args.recipient_user_id) return { ok: false, error: 'missing_recipient_user_id' };
      if (!args.recipient_team_id) return { ok: false, error: 'missing_recipient_team_id' };
    }
    if (this.startError !== undefined) return { ok: false, error: this.startError };
    const content = readContent(args, true);
    if ('error' in content) return { ok: false, error: content.error };
    const stream: FakeStream = {
      channel: args.channel,
      threadTs: args.thread_ts,
      ts: this.nextTs(),
      recipient: { user: args.recipient_user_id as string | undefined, team: args.recipient_team_id as string | undefined },
      mode: content.mode,
      state: 'streaming',
      markdown: '',
      tasks: new Map(),
      calls: [],
    };
    this.streams.push(stream);
    apply(stream, 'start', content.chunks);
    this.changed();
    return { ok: true, channel: stream.channel, ts: stream.ts };
  }

  append(args: Args): Answer {
    const stream = this.find(String(args.ts));
    if (stream === undefined || stream.channel !== args.channel) return { ok: false, error: 'message_not_found' };
    if (stream.state === 'stopped_by_user') return { ok: false, error: 'stopped_by_user' };
    if (stream.state !== 'streaming') return { ok: false, error: 'message_not_in_streaming_state' };
    const content = readContent(args, true);
    if ('error' in content) return { ok: false, error: content.error };
    if (content.mode !== stream.mode) return { ok: false, error: 'streaming_mode_mismatch' };
    apply(stream, 'append', content.chunks);
    this.changed();
    return { ok: true, channel: stream.channel, ts: stream.ts };
  }

  stop(args: Args): Answer {
    const stream = this.find(String(args.ts));
    if (stream === undefined || stream.channel !== args.channel) return { ok: false, error: 'message_not_found' };
    if (stream.state !== 'streaming') return { ok: false, error: 'message_not_in_streaming_state' };
    const content = readContent(args, false);
    if ('error' in content) return { ok: false, error: content.error };
    if (content.chunks.length > 0 && content.mode !== stream.mode) return { ok: false, error: 'streaming_mode_mismatch' };
    if (args.session_status !== undefined && !SESSION_STATUSES.has(String(args.session_status))) return { ok: false, error: 'invalid_arguments' };
    apply(stream, 'stop', content.chunks);
    stream.state = 'stopped';
    stream.sessionStatus = String(args.session_status ?? 'active');
    this.changed();
    return { ok: true, channel: stream.channel, ts: stream.ts, message: { ts: stream.ts, text: stream.markdown, streaming_state: 'completed' } };
  }

  /** Slack's undocumented stream timeout: every open stream (or the one named) stops accepting appends. */
  expire(ts?: string): void {
    for (const stream of this.open) if (ts === undefined || stream.ts === ts) stream.state = 'expired';
    this.changed();
  }

  /** Slack's Stop control: Slack stops the app's open streams of the thread itself; returns their ts values. */
  stopByUser(channel: string, threadTs: string): string[] {
    const stopped = this.open.filter((stream) => stream.channel === channel && stream.threadTs === threadTs);
    for (const stream of stopped) stream.state = 'stopped_by_user';
    this.changed();
    return stopped.map((stream) => stream.ts);
  }

  setSessionStatus(args: Args): Answer {
    if (typeof args.channel_id !== 'string' || args.channel_id === '') return { ok: false, error: 'channel_not_found' };
    if (!SESSION_STATUSES.has(String(args.status))) return { ok: false, error: 'invalid_status' };
    if (typeof args.thread_ts !== 'string' || args.thread_ts === '') return { ok: false, error: 'thread_ts_required' };
    if (this.sessionStatusResult !== 'ok') return { ok: false, error: this.sessionStatusResult };
    this.sessionStatuses.push({ channel: args.channel_id, threadTs: args.thread_ts, status: String(args.status) });
    this.changed();
    const warning = 'missing_agent_session_stopped_event_subscription';
    return this.subscribedToStop ? { ok: true, status: args.status } : { ok: true, status: args.status, warning, response_metadata: { warnings: [warning] } };
  }

  /** The statuses set for one thread, in order. */
  statusesOf(channel: string, threadTs: string): string[] {
    return this.sessionStatuses.filter((entry) => entry.channel === channel && entry.threadTs === threadTs).map((entry) => entry.status);
  }
}

/** The call's content as chunks, and the mode it implies; the errors Slack answers for malformed content. */
function readContent(args: Args, required: boolean): { mode: FakeStream['mode']; chunks: Args[] } | { error: string } {
  const hasMarkdown = args.markdown_text !== undefined;
  const hasChunks = args.chunks !== undefined;
  if (hasMarkdown && hasChunks) return { error: 'cannot_provide_both_markdown_text_and_chunks' };
  if (!hasMarkdown && !hasChunks) return required ? { error: 'markdown_text_or_chunks_required' } : { mode: 'chunks', chunks: [] };
  if (hasMarkdown) {
    const text = String(args.markdown_text);
    if (text.length > MAX_STREAM_MARKDOWN_CHARS) return { error: 'msg_too_long' };
    return { mode: 'markdown', chunks: [{ type: 'markdown_text', text }] };
  }
  const chunks = args.chunks;
  if (!Array.isArray(chunks) || chunks.length === 0) return { error: 'invalid_chunks' };
  let markdown = 0;
  for (const chunk of chunks as Args[]) {
    const problem = chunkProblem(chunk);
    if (problem !== undefined) return { error: problem };
    if (chunk.type === 'markdown_text') markdown += String(chunk.text).length;
  }
  if (markdown > MAX_STREAM_MARKDOWN_CHARS) return { error: 'msg_too_long' };
  return { mode: 'chunks', chunks: chunks as Args[] };
}

function chunkProblem(chunk: Args): string | undefined {
  if (typeof chunk !== 'object' || chunk === null) return 'invalid_chunks';
  if (chunk.type === 'markdown_text') return typeof chunk.text === 'string' && chunk.text !== '' ? undefined : 'invalid_chunks';
  if (chunk.type === 'plan_update') return typeof chunk.title === 'string' ? undefined : 'invalid_chunks';
  if (chunk.type === 'blocks') return Array.isArray(chunk.blocks) && chunk.blocks.length <= 50 ? undefined : 'invalid_chunks';
  if (chunk.type !== 'task_update') return 'invalid_chunks';
  if (typeof chunk.id !== 'string' || chunk.id === '' || typeof chunk.title !== 'string' || chunk.title === '') return 'invalid_chunks';
  if (!TASK_STATUSES.has(String(chunk.status))) return 'invalid_chunks';
  for (const field of ['title', 'details', 'output']) {
    const value = chunk[field];
    if (value !== undefined && (typeof value !== 'string' || value.length > MAX_TASK_FIELD_CHARS)) return 'invalid_chunks';
  }
  return undefined;
}

function apply(stream: FakeStream, method: 'start' | 'append' | 'stop', chunks: Args[]): void {
  stream.calls.push({ method, chunks });
  for (const chunk of chunks) {
    if (chunk.type === 'markdown_text') stream.markdown += String(chunk.text);
    if (chunk.type !== 'task_update') continue;
    const id = String(chunk.id);
    const task = stream.tasks.get(id) ?? { id, title: '', status: '', details: '', output: '', updates: 0 };
    task.title = String(chunk.title);
    task.status = String(chunk.status);
    if (chunk.details !== undefined) task.details += String(chunk.details);
    if (chunk.output !== undefined) task.output = String(chunk.output);
    task.updates += 1;
    stream.tasks.set(id, task);
  }
}

/** FakeSlack's Web API handlers for the methods above; `show` mirrors a stream into the channel's messages. */
export function streamHandlers(streams: FakeStreams, show: (stream: FakeStream) => void): Record<string, (args: Args) => Args> {
  const shown = (answer: Answer) => {
    const stream = answer.ok && typeof answer.ts === 'string' ? streams.find(answer.ts) : undefined;
    if (stream !== undefined) show(stream);
    return answer;
  };
  return {
    'chat.startStream': (args) => shown(streams.start(args)),
    'chat.appendStream': (args) => shown(streams.append(args)),
    'chat.stopStream': (args) => shown(streams.stop(args)),
    'agents.sessions.setStatus': (args) => streams.setSessionStatus(args),
  };
}
