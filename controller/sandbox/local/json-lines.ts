import type { Readable } from 'node:stream';

/**
 * Splits a runner's reply stream into lines with a hard cap per line (issue 14: what the sandbox
 * returns is hostile; a line without an end must not grow the controller's memory). A line over the
 * cap is a protocol failure: reading stops and the caller ends the session.
 */
export class JsonLineReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private failed = false;

  constructor(
    stream: Readable,
    private readonly maxLineBytes: number,
    private readonly onLine: (line: string) => void,
    private readonly onFailure: (problem: string) => void,
  ) {
    stream.on('data', (chunk: Buffer) => this.push(chunk));
    stream.on('error', (error: Error) => this.fail(`reading the runner's replies failed: ${error.message}`));
    stream.resume(); // a stream paused explicitly (the jail launcher's, after its ready line) stays paused otherwise
  }

  private push(chunk: Buffer): void {
    if (this.failed) return;
    let start = 0;
    for (let index = chunk.indexOf(10); index >= 0; index = chunk.indexOf(10, start)) {
      this.append(chunk.subarray(start, index));
      if (this.failed) return;
      const line = Buffer.concat(this.chunks).toString('utf8');
      this.chunks = [];
      this.buffered = 0;
      if (line.trim() !== '') this.onLine(line);
      start = index + 1;
    }
    this.append(chunk.subarray(start));
  }

  private append(part: Buffer): void {
    this.buffered += part.length;
    if (this.buffered > this.maxLineBytes) {
      this.chunks = [];
      this.fail(`the runner sent a reply line over ${this.maxLineBytes} bytes`);
      return;
    }
    if (part.length > 0) this.chunks.push(part);
  }

  private fail(problem: string): void {
    if (this.failed) return;
    this.failed = true;
    this.onFailure(problem);
  }
}
