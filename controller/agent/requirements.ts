import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const REQUIREMENTS_PATH = fileURLToPath(new URL('../../sandbox-image/requirements.txt', import.meta.url));

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
