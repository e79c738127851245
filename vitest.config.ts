import { defineConfig } from 'vitest/config';

/**
 * Three projects, run one after the other (sequence.groupOrder):
 * - `unit`: everything in process or with one short-lived child (the runner, a fake server); files in parallel.
 * - `e2e`: files that start the whole bot as a process (`npm start`'s command) against the fakes, or run many
 *   sandbox steps (Cloud Run sessions start a session runner, with its library imports, per execution); each
 *   test may take longer. Three files run at once: they mostly wait (on the bot, on sandbox
 *   steps, on timeouts and retry delays), and on 2 cores three finish the project about a quarter sooner than two
 *   (measured: 87 s against 114 s), bounded by the benchmark smoke test. The unit project gains nothing past two.
 * - `bench`: the benchmark's smoke run (`npm run bench -- --quick`, about a minute alone), last and alone: it
 *   measures side by side and starts many sandboxes itself, and beside three e2e files on 2 cores it took over
 *   five minutes.
 * Every test has a timeout: a broken feature fails in seconds instead of hanging the suite.
 */
const E2E_FILES = [
  'test/e2e-*.test.ts',
  'test/socket-mode.test.ts',
  'test/isolation.test.ts',
  // Many jailed runners, CPU hogs and memory fills (issues 13, 14).
  'test/jail-*.test.ts',
  'test/local-sessions.test.ts',
  'test/local-runner-session.test.ts',
  'test/cloud-run-session*.test.ts',
];

export default defineConfig({
  test: {
    pool: 'forks',
    // Fakes and bots print to stderr when a test fails; keep the console of passing tests quiet.
    silent: 'passed-only',
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/**/*.test.ts'],
          exclude: [...E2E_FILES, 'test/bench-smoke.test.ts'],
          testTimeout: 30_000,
          hookTimeout: 30_000,
          maxWorkers: 2,
          sequence: { groupOrder: 0 },
        },
      },
      {
        test: {
          name: 'e2e',
          include: E2E_FILES,
          testTimeout: 90_000,
          hookTimeout: 60_000,
          maxWorkers: 3,
          sequence: { groupOrder: 1 },
        },
      },
      {
        test: {
          name: 'bench',
          include: ['test/bench-smoke.test.ts'],
          testTimeout: 300_000,
          hookTimeout: 60_000,
          maxWorkers: 1,
          sequence: { groupOrder: 2 },
        },
      },
    ],
  },
});
