import { AppError } from '../errors.js';

/**
 * Small JSON records shared by every controller instance, for coordination (issue 15): de-duplication of Slack's
 * deliveries and the per-thread lease with its inbox and turn journal (thread-lease.ts). Three operations with a
 * precondition, which both backends make atomic across processes and machines:
 * - create-if-absent (GCS: `ifGenerationMatch=0`; local: an exclusive link, versioned-file.ts);
 * - compare-and-swap of a version (GCS: `ifGenerationMatch=<generation>`; local: an exclusive claim of the next
 *   version);
 * - delete of a version (GCS: a delete with `ifGenerationMatch`; local: a tombstone).
 * A refused precondition is an answer (undefined / false), never an error. Every value written must be unique
 * (coordination values carry a random `writeId`): when GCS's answer to a write is lost and the client retries it,
 * the retry meets the first attempt (412), and the store recognises its own bytes instead of reporting a conflict.
 *
 * Names are `/`-separated segments (`leases/T1/C1/1700000000.000100`); each segment is a Slack-shaped id, so a name
 * never leaves the store's own folder or prefix (`coordination/`).
 */

export interface StoredRecord<T> {
  value: T;
  /** Opaque: a GCS generation, or a local version number. */
  version: string;
}

export interface RecordListing {
  name: string;
  /** When the record was last written (GCS `updated`, a file's mtime). */
  updatedMs: number;
}

export interface RecordStore {
  /** Creates the record if there is none: its version, or undefined when it exists already. */
  create(name: string, value: unknown): Promise<string | undefined>;
  read<T>(name: string): Promise<StoredRecord<T> | undefined>;
  /** Replaces the record if it is still at `version`: the new version, or undefined when it changed or is gone. */
  replace(name: string, value: unknown, version: string): Promise<string | undefined>;
  /** Deletes the record if it is still at `version`: false when it changed; true when it is gone (by this call or before). */
  remove(name: string, version: string): Promise<boolean>;
  /** The records whose names start with `prefix` (`leases/`). */
  list(prefix: string): Promise<RecordListing[]>;
  /** Removes the records under `prefix` not written since `olderThanMs`; resolves with how many went. */
  removeOlderThan(prefix: string, olderThanMs: number): Promise<number>;
}

/** Where every backend keeps its records: `coordination/` in the bucket or in DATA_DIR. */
export const RECORDS_FOLDER = 'coordination';

class InvalidRecordNameError extends AppError {
  readonly code = 'invalid_record_name';
}

const segmentPattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;

/** A record's name from its segments; throws on a segment that could leave the folder ("..", "/", empty). */
export function recordName(...segments: string[]): string {
  for (const segment of segments) {
    if (!segmentPattern.test(segment) || segment.includes('..')) {
      throw new InvalidRecordNameError(`invalid record name segment: ${JSON.stringify(segment)}`);
    }
  }
  return segments.join('/');
}

/** Checks a name given whole (list prefixes end with `/`). */
export function checkRecordName(name: string): string {
  recordName(...name.replace(/\/$/, '').split('/'));
  return name;
}
