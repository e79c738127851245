import { describe, expect, test } from 'vitest';
import { splitForSlack, toSlackMrkdwn } from '../controller/slack/mrkdwn.js';
import { truncateMiddle } from '../controller/text.js';

const zeroWidthSpace = '\u200b';
const plain = (text: string) => text.replaceAll(zeroWidthSpace, '');

describe('toSlackMrkdwn', () => {
  test('bold, italics, strike, headings and links', () => {
    expect(plain(toSlackMrkdwn('**bold** and *italic* and ~~gone~~'))).toBe('*bold* and _italic_ and ~gone~');
    expect(plain(toSlackMrkdwn('# Results\n\ntext'))).toBe('*Results*\n\ntext');
    expect(toSlackMrkdwn('[the docs](https://example.com/a?b=1&c=2)')).toBe('<https://example.com/a?b=1&amp;c=2|the docs>');
    expect(toSlackMrkdwn('![chart](https://example.com/c.png)')).toBe('<https://example.com/c.png|chart>');
  });

  test('code blocks lose their language tag and are escaped; inline code too', () => {
    const output = toSlackMrkdwn('Run:\n\n```python\nif a < b and c > d & e:\n    print("<@U1>")\n```\n\nand `x<y`');
    expect(output).toBe('Run:\n\n```\nif a &lt; b and c &gt; d &amp; e:\n    print("&lt;@U1&gt;")\n```\n\nand `x&lt;y`');
  });

  test('lists keep their structure', () => {
    expect(toSlackMrkdwn('- one\n- two\n  - nested')).toBe('•   one\n•   two\n    •   nested');
    expect(toSlackMrkdwn('1. first\n2. second')).toBe('1.  first\n2.  second');
  });

  test('escapes & < > in text, keeps user and channel mentions, neutralises <!here> and raw HTML', () => {
    expect(toSlackMrkdwn('1 < 2 & 3 > 2')).toBe('1 &lt; 2 &amp; 3 &gt; 2');
    expect(toSlackMrkdwn('ask <@U123> in <#C42|general>')).toBe('ask <@U123> in <#C42|general>');
    const output = toSlackMrkdwn('hey <!here> <!channel> <script>alert(1)</script>');
    expect(output).not.toMatch(/<!|<script/);
    expect(output).toMatch(/&lt;!here&gt;|&lt;!here>/);
  });

  test('tables become aligned code blocks (wide characters count double)', () => {
    const output = toSlackMrkdwn('| city | sales |\n|---|---:|\n| 東京 | 200 |\n| north | 10 |\n\nDone.');
    expect(output).toBe('```\ncity   sales\n-----  -----\n東京   200\nnorth  10\n```\n\nDone.');
  });

  test('a thematic break does not show as asterisks', () => {
    expect(toSlackMrkdwn('above\n\n---\n\nbelow')).not.toMatch(/\*\*\*/);
  });
});

describe('splitForSlack', () => {
  test('short text is one part, unchanged', () => {
    expect(splitForSlack('hello\n\nworld')).toStrictEqual(['hello\n\nworld']);
    expect(splitForSlack('')).toStrictEqual([]);
  });

  test('splits at paragraph boundaries first', () => {
    const paragraphs = ['a'.repeat(40), 'b'.repeat(40), 'c'.repeat(40)];
    expect(splitForSlack(paragraphs.join('\n\n'), 90)).toStrictEqual([`${paragraphs[0]}\n\n${paragraphs[1]}`, paragraphs[2]]);
  });

  test('then at lines, then hard, preferring spaces and never splitting a link', () => {
    const lines = ['x'.repeat(30), 'y'.repeat(30), 'z'.repeat(30)].join('\n');
    expect(splitForSlack(lines, 65)).toStrictEqual([`${'x'.repeat(30)}\n${'y'.repeat(30)}`, 'z'.repeat(30)]);
    expect(splitForSlack('w'.repeat(25), 10)).toStrictEqual(['w'.repeat(10), 'w'.repeat(10), 'w'.repeat(5)]);
    expect(splitForSlack('aaaa bbbb cccc dddd', 10)).toStrictEqual(['aaaa bbbb', 'cccc dddd']);
    const link = '<https://example.com/some/long/path|a link>';
    const parts = splitForSlack(`${'word '.repeat(10)}${link} tail`, 60);
    expect(parts, 'one part holds the whole link').toContainEqual(expect.stringContaining(link));
  });

  test('a long code block is closed and reopened in each part', () => {
    const code = Array.from({ length: 30 }, (_, index) => `line ${index}`).join('\n');
    const parts = splitForSlack(`Here:\n\n\`\`\`\n${code}\n\`\`\`\n\nThe end.`, 80);
    expect(parts.length).toBeGreaterThan(2);
    for (const part of parts) {
      expect(part.length, part).toBeLessThanOrEqual(80);
      expect((part.match(/```/g) ?? []).length % 2, `unbalanced fences in ${JSON.stringify(part)}`).toBe(0);
    }
    const bodyLines = parts.join('\n').split('\n').filter((line) => line.startsWith('line '));
    expect(bodyLines).toStrictEqual(code.split('\n'));
  });

  test('never splits a surrogate pair', () => {
    const parts = splitForSlack('😀'.repeat(20), 7);
    for (const part of parts) expect(part).not.toMatch(/^[\udc00-\udfff]|[\ud800-\udbff]$/);
    expect(parts.join('')).toBe('😀'.repeat(20));
  });

  test('random texts: every part fits, fences balance, nothing is lost', () => {
    let seed = 42;
    const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    const words = ['alpha', 'beta', 'γάμμα', '東京', '<@U1>', '&amp;', 'x'.repeat(50), '`code`'];
    for (let round = 0; round < 200; round++) {
      const blocks: string[] = [];
      for (let block = 0; block < 1 + Math.floor(random() * 8); block++) {
        const lines = Array.from({ length: 1 + Math.floor(random() * 6) }, () =>
          Array.from({ length: Math.floor(random() * 12) }, () => words[Math.floor(random() * words.length)]).join(' '),
        );
        blocks.push(random() < 0.3 ? `\`\`\`\n${lines.join('\n')}\n\`\`\`` : lines.join('\n'));
      }
      const text = blocks.join(random() < 0.5 ? '\n\n' : '\n');
      const maxChars = 40 + Math.floor(random() * 200);
      const parts = splitForSlack(text, maxChars);
      for (const part of parts) {
        expect(part.length, 'every part fits').toBeLessThanOrEqual(maxChars);
        expect((part.match(/```/g) ?? []).length % 2, JSON.stringify({ text, part })).toBe(0);
      }
      const normalize = (value: string) => value.replace(/```/g, '').replace(/\s+/g, '');
      expect(normalize(parts.join(''))).toBe(normalize(text));
    }
  });
});

describe('truncateMiddle', () => {
  test('short text is unchanged', () => {
    expect(truncateMiddle('hello', 5)).toBe('hello');
  });

  test('keeps head and tail, says how much was cut, and fits', () => {
    const text = `HEAD${'.'.repeat(10_000)}TAIL`;
    const output = truncateMiddle(text, 200);
    expect(output.length).toBeLessThanOrEqual(200);
    expect(output).toMatch(/^HEAD[\s\S]*TAIL$/);
    const cut = Number(/\[(\d+) characters cut\]/.exec(output)?.[1]);
    const [head = '', tail = ''] = output.split(/\n… \[\d+ characters cut\] …\n/);
    expect(cut).toBe(text.length - head.length - tail.length);
    expect(head.length).toBeGreaterThan(50);
    expect(tail.length).toBeGreaterThan(50);
  });

  test('tiny limits still fit', () => {
    expect(truncateMiddle('x'.repeat(100), 10).length).toBeLessThanOrEqual(10);
  });
});
