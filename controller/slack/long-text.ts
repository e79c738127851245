import { bufferSource, uploadOrThrow } from './file-upload.js';
import { splitForSlack } from './mrkdwn.js';
import type { SlackThread } from './slack-thread.js';

/** Above this, an answer is attached as a file (with its start in the thread) instead of many messages. */
const ATTACH_ABOVE_CHARS = 12_000;
const PART_CHARS = 3500;

/**
 * Posts text of any length into a thread without tripping Slack's limits: split at paragraph
 * boundaries into a few messages, or, when very long, the start as a message and the whole text as
 * an attached Markdown file.
 */
export async function postLongText(thread: SlackThread, text: string, options: { fullMarkdown?: string } = {}): Promise<void> {
  if (text.length > ATTACH_ABOVE_CHARS) {
    const head = splitForSlack(text, PART_CHARS)[0] ?? '';
    await thread.post({ text: `${head}\n\n_The answer is long: the whole text is attached as a file._` });
    await uploadOrThrow((files) => thread.uploadFiles(files), bufferSource('answer.md', Buffer.from(options.fullMarkdown ?? text, 'utf8')));
    return;
  }
  for (const part of splitForSlack(text, PART_CHARS)) {
    await thread.post({ text: part, unfurlLinks: false });
  }
}
