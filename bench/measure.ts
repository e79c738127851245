import { readFileSync, writeFileSync } from 'node:fs';

/**
 * Small measuring tools shared by the figures: percentiles, a stopwatch, and a sampler of a
 * process's resident memory. Nothing here knows about the bot.
 */

/** The value below which `fraction` of the samples lie (nearest-rank; samples need not be sorted). */
export function percentile(samples: readonly number[], fraction: number): number {
  if (samples.length === 0) return Number.NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(fraction * sorted.length) - 1));
  return sorted[rank]!;
}

export function median(samples: readonly number[]): number {
  if (samples.length === 0) return Number.NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/** Milliseconds taken by `work`, with its value. */
export async function timed<T>(work: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const started = performance.now();
  const value = await work();
  return { ms: performance.now() - started, value };
}

/** Rounds for display and JSON: 3 significant digits below 100, whole numbers above. */
export function round(value: number): number {
  if (!Number.isFinite(value)) return value;
  if (Math.abs(value) >= 100) return Math.round(value);
  return Number(value.toPrecision(3));
}

const KB_FIELD = /^(VmRSS|VmHWM):\s+(\d+)\s+kB$/gm;

/** VmRSS and VmHWM (bytes) of a process, from /proc/<pid>/status; undefined when it is gone. */
export function processMemory(pid: number): { rss: number; peak: number } | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return undefined;
  }
  const fields: Record<string, number> = {};
  for (const match of text.matchAll(KB_FIELD)) fields[match[1]!] = Number(match[2]) * 1024;
  return { rss: fields.VmRSS ?? 0, peak: fields.VmHWM ?? 0 };
}

/**
 * Resets the kernel's peak-RSS mark of a process to its current RSS (`echo 5 > clear_refs`,
 * Linux >= 4.0, same user or root). Returns false when not allowed; the sampler still works then.
 */
export function resetPeakMemory(pid: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

/**
 * Samples a child process's RSS every `intervalMs` until stopped. The peak is the larger of the
 * sampled maximum and the kernel's VmHWM (which catches spikes between samples, once reset).
 */
export function sampleMemory(pid: number, intervalMs = 20): { stop: () => { startRss: number; peakRss: number; kernelPeak: boolean } } {
  const kernelPeak = resetPeakMemory(pid);
  const startRss = processMemory(pid)?.rss ?? 0;
  let peakRss = startRss;
  const sample = () => {
    const memory = processMemory(pid);
    if (memory === undefined) return;
    peakRss = Math.max(peakRss, memory.rss, kernelPeak ? memory.peak : 0);
  };
  const timer = setInterval(sample, intervalMs);
  return {
    stop: () => {
      sample();
      clearInterval(timer);
      return { startRss, peakRss, kernelPeak };
    },
  };
}

export const MB = 1024 * 1024;
