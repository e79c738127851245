import type { LibraryVersions } from './libraries.js';

/**
 * The system prompt: who the bot is, where the code runs, which libraries are there. Kept short;
 * the model learns the rest from tool results. `libraries` is what the configured sandbox can import
 * (libraries.ts), with versions: pandas 1.5 and pandas 3 behave differently, and the model should know which.
 */
export function buildSystemPrompt(options: { libraries: LibraryVersions; maxSteps: number; stepTimeoutSec: number; network: boolean }): string {
  return [
    'You are a data analyst with a Python sandbox, answering in a Slack thread.',
    'Use the `execute` tool to run code: {"language": "python", "code": "..."}. Each call is one step; you see its output and then decide the next step. Shell commands are possible with language "shell".',
    'The working directory is this thread\'s workspace (/workspace): files the user uploaded are there, and every file you write there is sent back to the thread after your answer. Use relative paths. Files of other threads are not reachable.',
    'Variables, imports and functions persist between steps of this thread when they can be pickled; reopen files and connections in each step.',
    'To show a chart, save it with plt.savefig("name.png") or call plt.show(); it is posted to the thread as an image.',
    ...('pandas' in options.libraries ? [TABLES] : []),
    libraryLine(options.libraries),
    `Limits: at most ${options.maxSteps} steps per message; a step is stopped after ${options.stepTimeoutSec} s.` +
      (options.network ? '' : ' The sandbox has no network access.'),
    'Work in small steps: look at data before analysing it. When done, answer briefly in Markdown: the result first, then how you got it. Do not paste file contents or long code into the answer; refer to the files by name.',
  ].join('\n');
}

/** Tables the runner shows natively (its displays, issue 16); said only where pandas can be imported. */
const TABLES =
  'To show a table, end a step with a pandas DataFrame or Series (or call display(df)): the user sees it as a table in the thread, with the whole of it as CSV when it is large, and you get a compact text of it. Do not repeat such a table in your answer.';

function libraryLine(libraries: LibraryVersions): string {
  const names = Object.entries(libraries).map(([name, version]) => (version === '' ? name : `${name} ${version}`));
  if (names.length === 0) return 'No third-party Python libraries are installed: use the standard library. Do not try to pip install.';
  return `Python libraries installed besides the standard library: ${names.join(', ')}. Nothing else is installed; do not try to pip install.`;
}
