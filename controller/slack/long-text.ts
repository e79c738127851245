import type { WebClient } from '@slack/web-api';
import { splitForSlack } from './mrkdwn.js';

/** Above this, an answer is attached as a file (with its start in the thread) instead of many messages. */
export const ATTACH_ABOVE_CHARS = 12_000;
const PART_CHARS = 3500;

/**
 * Posts text of any length into a thread without tripping Slack's limits: split at paragraph
 * boundaries into a few messages, or, when very long, the start as a message and the whole text as
 * an attached Markdown file.
 */
export async function postLongText(
  client: WebClient,
  channel: string,
  threadTs: string,
  text: string,
  options: { fullMarkdown?: string } = {},
): Promise<void> {
  if (text.length > ATTACH_ABOVE_CHARS) {
    const head = splitForSlack(text, PART_CHARS)[0] ?? '';
    await client.chat.postMessage({
      channel,
      thread_ts: threadTs,
      text: `${head}\n\n_The answer is long: the whole text is attached as a file._`,
    });
    await client.files.uploadV2({
      channel_id: channel,
      thread_ts: threadTs,
      filename: 'answer.md',
      title: 'answer.md',
      file: Buffer.from(options.fullMarkdown ?? text, 'utf8'),
    });
    return;
  }
  for (const part of splitForSlack(text, PART_CHARS)) {
    await client.chat.postMessage({ channel, thread_ts: threadTs, text: part, unfurl_links: false });
  }
}
