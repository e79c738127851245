/** Words that do something without a model call. Matched on the whole text, case and spaces ignored. */
export type Command = 'download' | 'notebook' | 'empty' | undefined;

const DOWNLOAD_WORDS = new Set(['download', 'ダウンロード']);
const NOTEBOOK_WORDS = new Set(['notebook', 'ノートブック']);

export function parseCommand(text: string): Command {
  const normalised = text.normalize('NFKC').trim().toLowerCase();
  if (normalised === '') return 'empty';
  if (DOWNLOAD_WORDS.has(normalised)) return 'download';
  if (NOTEBOOK_WORDS.has(normalised)) return 'notebook';
  return undefined;
}

/** The message text without mentions of the bot (`<@U123>` or `<@U123|name>`). */
export function stripBotMention(text: string, botUserId: string | undefined): string {
  if (botUserId === undefined) return text.trim();
  return text.replace(new RegExp(`<@${botUserId}(\\|[^>]*)?>`, 'g'), '').trim();
}
