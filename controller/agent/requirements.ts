import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

// From controller/agent/ when run with tsx, from dist/controller/agent/ when compiled.
const REQUIREMENTS_PATH = ['../../sandbox-image/requirements.txt', '../../../sandbox-image/requirements.txt']
  .map((relative) => fileURLToPath(new URL(relative, import.meta.url)))
  .find((path) => existsSync(path)) ?? fileURLToPath(new URL('../../sandbox-image/requirements.txt', import.meta.url));

/** Package names from a requirements.txt (comments, versions and extras removed). */
export function parseRequirements(text: string): string[] {
  return text
    .split('\n')
    .map((line) => line.replace(/#.*/, '').trim())
    .filter((line) => line !== '' && !line.startsWith('-'))
    .map((line) => line.split(/[\s<>=!~;[]/)[0]!)
    .filter((name) => name !== '');
}

export function preinstalledLibraries(path = REQUIREMENTS_PATH): string[] {
  return parseRequirements(readFileSync(path, 'utf8'));
}
