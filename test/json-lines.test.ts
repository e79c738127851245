import { PassThrough } from 'node:stream';
import { expect, test } from 'vitest';
import { JsonLineReader } from '../controller/sandbox/local/json-lines.js';

// Issue 14, finding 1: a runner's reply stream is read line by line with a cap, never whole.

function reader(maxLineBytes: number) {
  const stream = new PassThrough();
  const lines: string[] = [];
  const failures: string[] = [];
  new JsonLineReader(stream, maxLineBytes, (line) => lines.push(line), (problem) => failures.push(problem));
  return { stream, lines, failures };
}

test('lines split across chunks, several lines per chunk, multi-byte characters across a boundary', () => {
  const { stream, lines, failures } = reader(100);
  const text = Buffer.from('{"a":"é"}\n{"b":1}\n{"c"', 'utf8');
  stream.write(text.subarray(0, 7)); // cuts "é" in half
  stream.write(text.subarray(7));
  stream.write(':2}\n\n');
  expect(lines).toStrictEqual(['{"a":"é"}', '{"b":1}', '{"c":2}']);
  expect(failures).toStrictEqual([]);
});

test('a line over the cap fails once and nothing more is read or kept', () => {
  const { stream, lines, failures } = reader(1024);
  for (let index = 0; index < 10; index += 1) stream.write('x'.repeat(500)); // no newline: 5000 bytes
  stream.write('\n{"late":true}\n');
  expect(lines).toStrictEqual([]);
  expect(failures).toStrictEqual(['the runner sent a reply line over 1024 bytes']);
});
