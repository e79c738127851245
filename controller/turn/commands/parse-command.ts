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

export const HELP_TEXT = [
  "Hi! I'm a code interpreter: mention me with a question or a file, and I'll write and run Python in this thread to answer.",
  '• Attach CSV, Excel, PDF or image files to a mention and ask about them.',
  '• Each thread has its own files and memory; mention me again in the thread to continue.',
  '• `download` (or `ダウンロード`) posts every file of this thread; `notebook` (or `ノートブック`) posts the work as a Jupyter notebook.',
].join('\n');
