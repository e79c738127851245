import { HttpError, type FakeObject } from './gcs-wire.js';

/**
 * Request preconditions of the GCS JSON API, as GCS applies them to object requests
 * (https://cloud.google.com/storage/docs/request-preconditions; the order of the checks follows Google's own
 * emulator, googleapis/storage-testbench, `check_object_generation`):
 * - the generation compared is the `generation` the request names, else the live one; a missing object has
 *   generation 0, so `ifGenerationMatch=0` succeeds only when no live object exists, and `ifGenerationMatch=N`
 *   on a missing object fails with 412 (before any 404);
 * - `ifGenerationNotMatch` equal to it answers 304 Not Modified; `ifGenerationMatch` different from it 412
 *   Precondition Failed (reason `conditionNotMet`);
 * - then the same for `ifMetagenerationNotMatch` / `ifMetagenerationMatch` against the object's metageneration,
 *   only when the object exists;
 * - a value that is not a whole number is a 400.
 * Copy/rewrite preconditions (`ifSource...`) belong to requests this fake does not serve: 501, like anything else
 * it does not understand.
 */

const CHECKED = ['ifGenerationMatch', 'ifGenerationNotMatch', 'ifMetagenerationMatch', 'ifMetagenerationNotMatch'];

export function checkPreconditions(object: FakeObject | undefined, query: Record<string, string>): void {
  for (const key of Object.keys(query)) {
    if (key.startsWith('if') && !CHECKED.includes(key)) throw new HttpError(501, 'notImplemented', `fake-gcs does not implement precondition ${key}`);
  }
  const named = wholeNumber(query, 'generation') ?? 0;
  const generation = named !== 0 ? named : (object?.generation ?? 0);
  compare('generation', generation, wholeNumber(query, 'ifGenerationMatch'), wholeNumber(query, 'ifGenerationNotMatch'));
  // Only the live generation is kept here: a named older generation has no metageneration to compare.
  const target = object !== undefined && object.generation === generation ? object : undefined;
  if (target === undefined) return;
  compare('metageneration', target.metageneration, wholeNumber(query, 'ifMetagenerationMatch'), wholeNumber(query, 'ifMetagenerationNotMatch'));
}

function compare(what: string, current: number, match: number | undefined, notMatch: number | undefined): void {
  if (notMatch !== undefined && notMatch === current) {
    throw new HttpError(304, 'notModified', `Precondition Failed (${what} = ${current} vs ${what}_not_match = ${notMatch})`);
  }
  if (match !== undefined && match !== current) {
    throw new HttpError(412, 'conditionNotMet', 'At least one of the pre-conditions you specified did not hold.');
  }
}

function wholeNumber(query: Record<string, string>, key: string): number | undefined {
  const value = query[key];
  if (value === undefined) return undefined;
  if (!/^-?\d+$/.test(value)) throw new HttpError(400, 'invalid', `Invalid value for ${key}: ${value}`);
  return Number(value);
}
