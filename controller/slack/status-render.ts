import type { StepResult } from '../sandbox/sandbox.js';
import { formatDuration } from '../text.js';

export interface StepView {
  index: number;
  title: string;
  code: string;
  language: string;
  startedAt: number;
  result?: StepResult;
}

const CODE_PREVIEW_LINES = 4;
const OUTPUT_TAIL_LINES = 3;
const LINE_CHARS = 120;
const DETAILED_STEPS = 3;
/** Slack's section text limit is 3000 characters. */
const MAX_BODY_CHARS = 2900;

function clip(line: string): string {
  return line.length > LINE_CHARS ? `${line.slice(0, LINE_CHARS - 1)}…` : line;
}

/** Text that cannot break out of a Slack code block. */
function fence(text: string): string {
  return text.replaceAll('```', "'''");
}

function statusIcon(step: StepView): string {
  if (step.result === undefined) return ':arrow_forward:';
  if (step.result.limit !== undefined) return ':stopwatch:';
  return step.result.error === null ? ':white_check_mark:' : ':x:';
}

function renderStep(step: StepView, detailed: boolean): string {
  const duration = step.result === undefined ? 'running…' : formatDuration(step.result.durationMs);
  const head = `${statusIcon(step)} *${step.index}. ${escapeMrkdwn(step.title)}* · ${duration}`;
  if (!detailed) return head;
  const codeLines = step.code.split('\n').filter((line) => line.trim() !== '');
  const shown = codeLines.slice(0, CODE_PREVIEW_LINES).map(clip);
  if (codeLines.length > CODE_PREVIEW_LINES) shown.push(`… (+${codeLines.length - CODE_PREVIEW_LINES} lines)`);
  const parts = [head, '```' + fence(shown.join('\n')) + '```'];
  if (step.result !== undefined) {
    const output = step.result.error !== null ? `${step.result.error.name}: ${step.result.error.value}` : step.result.stdout;
    const tail = output.split('\n').filter((line) => line.trim() !== '').slice(-OUTPUT_TAIL_LINES).map(clip);
    if (tail.length > 0) parts.push(tail.map((line) => `> ${escapeMrkdwn(line)}`).join('\n'));
  }
  return parts.join('\n');
}

/** The steps, the last few in detail (code preview, output tail), older ones as one line each. */
export function renderSteps(steps: readonly StepView[], live: boolean): string {
  if (steps.length === 0) return '';
  const detailFrom = live ? steps.length - DETAILED_STEPS : steps.length;
  const lines = steps.map((step, position) => renderStep(step, position >= detailFrom));
  let text = lines.join('\n');
  // Keep within Slack's limit: drop the oldest lines first.
  while (text.length > MAX_BODY_CHARS && lines.length > 1) {
    lines.shift();
    text = `… ${steps.length - lines.length} earlier steps\n${lines.join('\n')}`;
  }
  return text.length > MAX_BODY_CHARS ? `${text.slice(0, MAX_BODY_CHARS - 1)}…` : text;
}

function escapeMrkdwn(text: string): string {
  return text.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;');
}
