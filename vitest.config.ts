import { defineConfig } from 'vitest/config';

/** Files that load the whole machine: run last, one at a time, with nothing beside them. */
const SOLO_FILES = [
  // CPU hogs, memory and disk fills inside the jail (issue 14): beside them, other files' turns miss their waits.
  'test/jail-*.test.ts',
  // A fork bomb, memory and output floods from a thread, through the whole bot.
  'test/e2e-hostile.test.ts',
  // The benchmark's smoke run (`npm run bench -- --quick`, about a minute alone): it measures side by side and
  // starts many sandboxes itself; beside three e2e files on 2 cores it took over five minutes.
  'test/bench-smoke.test.ts',
];

/**
 * Three projects, run one after the other (sequence.groupOrder):
 * - `unit`: everything in process or with one short-lived child (the runner, a fake server); files in parallel.
 * - `e2e`: files that start the whole bot as a process (`npm start`'s command) against the fakes, or run many
 *   sandbox steps (Cloud Run sessions start a session runner, with its library imports, per execution); each
 *   test may take longer. Three files run at once: they mostly wait (on the bot, on sandbox
 *   steps, on timeouts and retry delays), and on 2 cores three finish the project about a quarter sooner than two
 *   (measured: 87 s against 114 s). The unit project gains nothing past two.
 * - `solo`: SOLO_FILES, last, one file at a time.
 * Every test has a timeout: a broken feature fails in seconds instead of hanging the suite.
 */
const E2E_FILES = [
  'test/e2e-*.test.ts',
  'test/socket-mode.test.ts',
  'test/isolation.test.ts',
  // Many jailed runners (issue 13).
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
          exclude: [...E2E_FILES, ...SOLO_FILES],
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
          exclude: SOLO_FILES,
          testTimeout: 90_000,
          hookTimeout: 60_000,
          maxWorkers: 3,
          sequence: { groupOrder: 1 },
        },
      },
      {
        test: {
          name: 'solo',
          include: SOLO_FILES,
          testTimeout: 300_000,
          hookTimeout: 60_000,
          maxWorkers: 1,
          sequence: { groupOrder: 2 },
        },
      },
    ],
  },
});
