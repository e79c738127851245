/**
 * Benchmark (not a test): the controller's memory while a large upload streams from Slack into a thread's
 * workspace (issue 3). A 500 MB file is served by FakeSlack on 127.0.0.1 and saved with ingestSlackFiles
 * into a LocalWorkspace, while process.memoryUsage().rss is sampled; the baseline is the same download
 * piped to nowhere (fetch, bytes dropped), which holds nothing. Target: RSS growth flat, under 50 MB.
 *
 * Run alone: `npx tsx bench/upload-memory.ts` (UPLOAD_BENCH_MB=100 for a shorter run; `node --expose-gc
 * --import tsx bench/upload-memory.ts` makes the starting points steadier).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { LogLevel, WebClient } from '@slack/web-api';
import { silentLogger } from '../controller/logger.js';
import { ingestSlackFiles } from '../controller/slack/file-download.js';
import { WebSlackThread } from '../controller/slack/slack-thread.js';
import { LocalWorkspaceStore } from '../controller/workspace/local-workspace.js';
import { FakeSlack, generatedContent, type SlackFile } from '../test/fakes/fake-slack.js';

const MB = 1024 * 1024;
const TARGET_GROWTH_MB = 50;
const SAMPLE_INTERVAL_MS = 20;

export interface UploadMemoryFigures {
  fileMb: number;
  /** Peak RSS above the starting RSS while the bytes were dropped (fetch only). */
  baselineGrowthMb: number;
  /** Peak RSS above the starting RSS while ingestSlackFiles saved the file. */
  ingestGrowthMb: number;
  /** ingestGrowthMb / baselineGrowthMb (baseline floored at 1 MB so a tiny baseline does not explode it). */
  ratio: number;
  baselineSeconds: number;
  ingestSeconds: number;
  savedBytes: number;
  withinTarget: boolean;
}

export async function uploadMemoryBenchmark(options: { fileMb?: number } = {}): Promise<UploadMemoryFigures> {
  const fileMb = options.fileMb ?? Number(process.env.UPLOAD_BENCH_MB ?? 500);
  const botToken = 'xoxb-bench';
  const slack = await new FakeSlack({ botToken, botUserId: 'UBOT', teamId: 'T1' }).start();
  const dataDir = await mkdtemp(join(tmpdir(), 'oi-upload-bench-'));
  try {
    const file = slack.addFile({ name: 'big.csv', content: generatedContent(fileMb * MB, 'id,value,label\n1,2.5,abc\n'), size: fileMb * MB });

    const warmUp = slack.addFile({ name: 'warm-up.csv', content: generatedContent(8 * MB), size: 8 * MB });
    const client = new WebClient(botToken, { slackApiUrl: slack.apiUrl, logLevel: LogLevel.ERROR });
    const store = new LocalWorkspaceStore(dataDir);
    const drop = async (url: string) => {
      const response = await fetch(url, { headers: { Authorization: `Bearer ${botToken}` } });
      let bytes = 0;
      for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) bytes += chunk.byteLength;
      return bytes;
    };
    const save = async (slackFile: SlackFile, threadTs: string) => {
      const result = await ingestSlackFiles({
        thread: new WebSlackThread(client, 'C1', threadTs, silentLogger),
        botToken,
        workspace: store.open({ team: 'T1', channel: 'C1', threadTs }),
        messageTs: threadTs,
        files: [slackFile],
        eventMayHaveFiles: false,
        maxUploadBytes: (fileMb + 8) * MB,
        workspaceMaxBytes: 4 * (fileMb + 8) * MB,
        logger: silentLogger,
      });
      if (result.problems.length > 0) throw new Error(`upload failed: ${result.problems.join(' ')}`);
      return result.saved[0]?.size ?? 0;
    };
    // Warm both paths first (HTTP client, JIT, file system), so neither figure includes one-off start-up costs.
    await drop(warmUp.url_private_download);
    await save(warmUp, '1700000000.000001');

    const baseline = await measure(() => drop(file.url_private_download));
    const ingest = await measure(() => save(file, '1700000000.000002'));

    const ingestGrowthMb = round(ingest.growthBytes / MB);
    const baselineGrowthMb = round(baseline.growthBytes / MB);
    return {
      fileMb,
      baselineGrowthMb,
      ingestGrowthMb,
      ratio: round(ingestGrowthMb / Math.max(1, baselineGrowthMb)),
      baselineSeconds: round(baseline.seconds),
      ingestSeconds: round(ingest.seconds),
      savedBytes: ingest.value,
      withinTarget: ingest.value === fileMb * MB && ingestGrowthMb < TARGET_GROWTH_MB,
    };
  } finally {
    await slack.close();
    await rm(dataDir, { recursive: true, force: true });
  }
}

/** Runs `work` while sampling RSS; growth is the peak above the RSS measured just before. */
async function measure<T>(work: () => Promise<T>): Promise<{ value: T; growthBytes: number; seconds: number }> {
  (globalThis as { gc?: () => void }).gc?.();
  await new Promise((resolve) => setTimeout(resolve, 100));
  const start = process.memoryUsage().rss;
  let peak = start;
  const timer = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage().rss);
  }, SAMPLE_INTERVAL_MS);
  const began = performance.now();
  try {
    const value = await work();
    peak = Math.max(peak, process.memoryUsage().rss);
    return { value, growthBytes: peak - start, seconds: (performance.now() - began) / 1000 };
  } finally {
    clearInterval(timer);
  }
}

function round(value: number): number {
  return Math.round(value * 10) / 10;
}

export function formatUploadMemory(figures: UploadMemoryFigures): string {
  return [
    `upload memory: ${figures.fileMb} MB streamed from Slack into a LocalWorkspace`,
    `  baseline (fetch, bytes dropped): RSS +${figures.baselineGrowthMb} MB in ${figures.baselineSeconds} s`,
    `  ingestSlackFiles -> workspace:   RSS +${figures.ingestGrowthMb} MB in ${figures.ingestSeconds} s`,
    `  ratio ${figures.ratio}x baseline; target < ${TARGET_GROWTH_MB} MB: ${figures.withinTarget ? 'met' : 'NOT met'}`,
  ].join('\n');
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const figures = await uploadMemoryBenchmark();
  console.log(formatUploadMemory(figures));
  process.exitCode = figures.withinTarget ? 0 : 1;
}
