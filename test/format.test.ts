import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { splitForSlack, toSlackMrkdwn, truncateMiddle } from '../controller/slack/format.js';

const zeroWidthSpace = '\u200b';
const plain = (text: string) => text.replaceAll(zeroWidthSpace, '');

describe('toSlackMrkdwn', () => {
  test('bold, italics, strike, headings and links', () => {
    assert.equal(plain(toSlackMrkdwn('**bold** and *italic* and ~~gone~~')), '*bold* and _italic_ and ~gone~');
    assert.equal(plain(toSlackMrkdwn('# Results\n\ntext')), '*Results*\n\ntext');
    assert.equal(toSlackMrkdwn('[the docs](https://example.com/a?b=1&c=2)'), '<https://example.com/a?b=1&amp;c=2|the docs>');
    assert.equal(toSlackMrkdwn('![chart](https://example.com/c.png)'), '<https://example.com/c.png|chart>');
  });

  test('code blocks lose their language tag and are escaped; inline code too', () => {
    const output = toSlackMrkdwn('Run:\n\n```python\nif a < b and c > d & e:\n    print("<@U1>")\n```\n\nand `x<y`');
    assert.equal(output, 'Run:\n\n```\nif a &lt; b and c &gt; d &amp; e:\n    print("&lt;@U1&gt;")\n```\n\nand `x&lt;y`');
  });

  test('lists keep their structure', () => {
    assert.equal(toSlackMrkdwn('- one\n- two\n  - nested'), '•   one\n•   two\n    •   nested');
    assert.equal(toSlackMrkdwn('1. first\n2. second'), '1.  first\n2.  second');
  });

  test('escapes & < > in text, keeps user and channel mentions, neutralises <!here> and raw HTML', () => {
    assert.equal(toSlackMrkdwn('1 < 2 & 3 > 2'), '1 &lt; 2 &amp; 3 &gt; 2');
    assert.equal(toSlackMrkdwn('ask <@U123> in <#C42|general>'), 'ask <@U123> in <#C42|general>');
    const output = toSlackMrkdwn('hey <!here> <!channel> <script>alert(1)</script>');
    assert.doesNotMatch(output, /<!|<script/);
    assert.match(output, /&lt;!here&gt;|&lt;!here>/);
  });

  test('tables become aligned code blocks (wide characters count double)', () => {
    const output = toSlackMrkdwn('| city | sales |\n|---|---:|\n| 東京 | 200 |\n| north | 10 |\n\nDone.');
    assert.equal(output, '```\ncity   sales\n-----  -----\n東京   200\nnorth  10\n```\n\nDone.');
  });

  test('a thematic break does not show as asterisks', () => {
    assert.doesNotMatch(toSlackMrkdwn('above\n\n---\n\nbelow'), /\*\*\*/);
  });
});

describe('splitForSlack', () => {
  test('short text is one part, unchanged', () => {
    assert.deepEqual(splitForSlack('hello\n\nworld'), ['hello\n\nworld']);
    assert.deepEqual(splitForSlack(''), []);
  });

  test('splits at paragraph boundaries first', () => {
    const paragraphs = ['a'.repeat(40), 'b'.repeat(40), 'c'.repeat(40)];
    assert.deepEqual(splitForSlack(paragraphs.join('\n\n'), 90), [`${paragraphs[0]}\n\n${paragraphs[1]}`, paragraphs[2]]);
  });

  test('then at lines, then hard, preferring spaces and never splitting a link', () => {
    const lines = ['x'.repeat(30), 'y'.repeat(30), 'z'.repeat(30)].join('\n');
    assert.deepEqual(splitForSlack(lines, 65), [`${'x'.repeat(30)}\n${'y'.repeat(30)}`, 'z'.repeat(30)]);
    assert.deepEqual(splitForSlack('w'.repeat(25), 10), ['w'.repeat(10), 'w'.repeat(10), 'w'.repeat(5)]);
    assert.deepEqual(splitForSlack('aaaa bbbb cccc dddd', 10), ['aaaa bbbb', 'cccc dddd']);
    const link = '<https://example.com/some/long/path|a link>';
    const parts = splitForSlack(`${'word '.repeat(10)}${link} tail`, 60);
    assert.ok(parts.some((part) => part.includes(link)), JSON.stringify(parts));
  });

  test('a long code block is closed and reopened in each part', () => {
    const code = Array.from({ length: 30 }, (_, index) => `line ${index}`).join('\n');
    const parts = splitForSlack(`Here:\n\n\`\`\`\n${code}\n\`\`\`\n\nThe end.`, 80);
    assert.ok(parts.length > 2);
    for (const part of parts) {
      assert.ok(part.length <= 80, part);
      assert.equal((part.match(/```/g) ?? []).length % 2, 0, `unbalanced fences in ${JSON.stringify(part)}`);
    }
    const bodyLines = parts.join('\n').split('\n').filter((line) => line.startsWith('line '));
    assert.deepEqual(bodyLines, code.split('\n'));
  });

  test('never splits a surrogate pair', () => {
    const parts = splitForSlack('😀'.repeat(20), 7);
    for (const part of parts) assert.doesNotMatch(part, /^[\udc00-\udfff]|[\ud800-\udbff]$/);
    assert.equal(parts.join(''), '😀'.repeat(20));
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
        assert.ok(part.length <= maxChars, `part of ${part.length} > ${maxChars}`);
        assert.equal((part.match(/```/g) ?? []).length % 2, 0, JSON.stringify({ text, part }));
      }
      const normalize = (value: string) => value.replace(/```/g, '').replace(/\s+/g, '');
      assert.equal(normalize(parts.join('')), normalize(text));
    }
  });
});

describe('truncateMiddle', () => {
  test('short text is unchanged', () => {
    assert.equal(truncateMiddle('hello', 5), 'hello');
  });

  test('keeps head and tail, says how much was cut, and fits', () => {
    const text = `HEAD${'.'.repeat(10_000)}TAIL`;
    const output = truncateMiddle(text, 200);
    assert.ok(output.length <= 200);
    assert.ok(output.startsWith('HEAD') && output.endsWith('TAIL'));
    const cut = Number(/\[(\d+) characters cut\]/.exec(output)?.[1]);
    const [head = '', tail = ''] = output.split(/\n… \[\d+ characters cut\] …\n/);
    assert.equal(cut, text.length - head.length - tail.length);
    assert.ok(head.length > 50 && tail.length > 50);
  });

  test('tiny limits still fit', () => {
    assert.ok(truncateMiddle('x'.repeat(100), 10).length <= 10);
  });
});
