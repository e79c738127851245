import type { FakeSlack, SlackMessage } from '../fakes/fake-slack.js';

/**
 * Reading a turn's status message back from the fake Slack: the bot's message with blocks that it edits in
 * place, with a Stop button while the turn runs (controller/slack/status.ts).
 */

export const STOP_ACTION = 'stop_turn';

interface Block {
  type?: string;
  text?: { text?: string };
  elements?: Array<{ action_id?: string; value?: string }>;
}

/** The status message of the turn(s) of a thread: the bot's messages that carry blocks. */
export function statusMessages(slack: FakeSlack, channel: string, threadTs: string): SlackMessage[] {
  return slack.botMessagesIn(channel, threadTs).filter((message) => Array.isArray(message.blocks));
}

/** The text of every section of a block list (what a user reads in the status message). */
export function blocksText(blocks: unknown[] | undefined): string {
  return ((blocks ?? []) as Block[])
    .filter((block) => block.type === 'section')
    .map((block) => block.text?.text ?? '')
    .join('\n');
}

/** The value of the Stop button in these blocks, or undefined when there is none. */
export function stopButtonValue(blocks: unknown[] | undefined): string | undefined {
  for (const block of (blocks ?? []) as Block[]) {
    if (block.type !== 'actions') continue;
    const button = block.elements?.find((element) => element.action_id === STOP_ACTION);
    if (button !== undefined) return button.value ?? '';
  }
  return undefined;
}

/** Status messages anywhere that still show a Stop button: turns that have not ended yet. */
export function unfinishedStatusMessages(slack: FakeSlack): SlackMessage[] {
  const threads = new Set<string>();
  for (const call of slack.callsTo('chat.postMessage')) {
    if (call.args.blocks !== undefined && typeof call.args.thread_ts === 'string') threads.add(`${String(call.args.channel)} ${call.args.thread_ts}`);
  }
  return [...threads].flatMap((thread) => {
    const [channel = '', threadTs = ''] = thread.split(' ');
    return statusMessages(slack, channel, threadTs).filter((message) => stopButtonValue(message.blocks) !== undefined);
  });
}
