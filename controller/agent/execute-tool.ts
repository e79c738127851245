import type { ChatCompletionTool } from 'openai/resources/chat/completions';

/**
 * The model's one tool, `execute` (Open Interpreter's schema: {"language": "python", "code": "..."}), and
 * its arguments. Shell code is run through Python's subprocess so both go through the same runner.
 */

export const EXECUTE_TOOL: ChatCompletionTool = {
  type: 'function',
  function: {
    name: 'execute',
    description: "Run code in this thread's sandbox (working directory: the thread's workspace). Returns stdout, errors and files written.",
    parameters: {
      type: 'object',
      properties: {
        language: { type: 'string', enum: ['python', 'shell'], description: 'python (default) or shell' },
        code: { type: 'string', description: 'The code to run' },
      },
      required: ['language', 'code'],
    },
  },
};

export type ParsedExecute =
  | { language: 'python' | 'shell'; code: string; pythonCode: string }
  | { problem: string };

export function parseExecuteArguments(name: string, rawArguments: string): ParsedExecute {
  if (name !== 'execute') return { problem: `Unknown tool "${name}". The only tool is execute {"language": "python", "code": "..."}.` };
  let parsed: unknown;
  try {
    parsed = JSON.parse(rawArguments === '' ? '{}' : rawArguments);
  } catch {
    return { problem: 'The tool arguments were not valid JSON. Send {"language": "python", "code": "..."}.' };
  }
  const { language = 'python', code } = (parsed ?? {}) as { language?: unknown; code?: unknown };
  if (typeof code !== 'string' || code.trim() === '') return { problem: 'The tool call had no code. Send {"language": "python", "code": "..."}.' };
  const normalised = typeof language === 'string' ? language.toLowerCase() : '';
  if (['python', 'py', 'python3'].includes(normalised)) return { language: 'python', code, pythonCode: code };
  if (['shell', 'bash', 'sh'].includes(normalised)) {
    return {
      language: 'shell',
      code,
      pythonCode: `import subprocess as _oi_subprocess\n_oi_subprocess.run(${JSON.stringify(code)}, shell=True, executable="/bin/bash")\ndel _oi_subprocess`,
    };
  }
  return { problem: `Language "${String(language)}" is not supported here: use python (or shell).` };
}

/** A one-line title for a step: the model's own words if it gave any, else the code's first comment or line. */
export function stepTitle(assistantText: string, code: string): string {
  const fromText = assistantText.split('\n').map((line) => line.trim()).find((line) => line !== '');
  const lines = code.split('\n').map((line) => line.trim()).filter((line) => line !== '');
  const comment = lines.find((line) => line.startsWith('#') && !line.startsWith('#!'))?.replace(/^#+\s*/, '');
  const title = fromText ?? comment ?? lines[0] ?? 'Run code';
  return title.length > 80 ? `${title.slice(0, 77)}…` : title;
}
