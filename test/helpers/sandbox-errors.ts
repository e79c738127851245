import { expect } from 'vitest';
import { SandboxError } from '../../controller/sandbox/sandbox.js';

/** A predicate for `toSatisfy`: a SandboxError with this code (and a message matching `pattern`, when given). */
export function isSandboxError(code: string, pattern?: RegExp): (error: unknown) => boolean {
  return (error) => error instanceof SandboxError && error.code === code && (pattern === undefined || pattern.test(error.message));
}

/** What `action` throws (the test fails when it throws nothing), for assertions richer than `toThrow`. */
export function thrownBy(action: () => unknown): unknown {
  try {
    action();
  } catch (error) {
    return error;
  }
  return expect.unreachable('expected a throw');
}
