import { AppError } from '../errors.js';

/** Identifies one Slack thread: the unit of isolation (own history, own files, own Python state). */
export interface ThreadKey {
  team: string;
  channel: string;
  /** `thread_ts` of the thread, or `ts` of the mention that started it. */
  threadTs: string;
}

class InvalidThreadKeyError extends AppError {
  readonly code = 'invalid_thread_key';
}

// Slack ids are [A-Z0-9]; timestamps are digits with one dot. Anything else is refused so that a
// key can never turn into a path outside its own folder ("..", "/", empty).
const segmentPattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

function checkSegment(name: string, value: string): void {
  if (!segmentPattern.test(value) || value.includes('..')) {
    throw new InvalidThreadKeyError(`invalid ${name} in thread key: ${JSON.stringify(value)}`);
  }
}

/** `<team>/<channel>/<thread_ts>`: the thread's relative path in every store. Throws on unsafe parts. */
export function threadPath(key: ThreadKey): string {
  checkSegment('team', key.team);
  checkSegment('channel', key.channel);
  checkSegment('threadTs', key.threadTs);
  return `${key.team}/${key.channel}/${key.threadTs}`;
}

export function parseThreadPath(path: string): ThreadKey {
  const parts = path.split('/');
  if (parts.length !== 3) throw new InvalidThreadKeyError(`not a thread path: ${JSON.stringify(path)}`);
  const [team, channel, threadTs] = parts as [string, string, string];
  const key = { team, channel, threadTs };
  threadPath(key);
  return key;
}
