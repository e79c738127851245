import type { Bucket, File } from '@google-cloud/storage';
import { checkRecordName, RECORDS_FOLDER, type RecordListing, type RecordStore, type StoredRecord } from './records.js';

/**
 * RecordStore on GCS: one small JSON object per record under `coordination/`, every write guarded by a generation
 * precondition (https://cloud.google.com/storage/docs/request-preconditions): `ifGenerationMatch=0` creates only
 * when no live object exists, `ifGenerationMatch=<generation>` replaces or deletes only that generation; a
 * precondition that does not hold is a 412. A read is one media request: the generation of the bytes returned
 * comes with them (`x-goog-generation`), so no second request is needed to know which version was read.
 */

const PREFIX = `${RECORDS_FOLDER}/`;

export class GcsRecordStore implements RecordStore {
  constructor(private readonly bucket: Bucket) {}

  async create(name: string, value: unknown): Promise<string | undefined> {
    return this.save(name, JSON.stringify(value), 0);
  }

  async read<T>(name: string): Promise<StoredRecord<T> | undefined> {
    const found = await this.download(this.file(name));
    return found === undefined ? undefined : { value: JSON.parse(found.text) as T, version: found.generation };
  }

  async replace(name: string, value: unknown, version: string): Promise<string | undefined> {
    return this.save(name, JSON.stringify(value), generationOf(version));
  }

  async remove(name: string, version: string): Promise<boolean> {
    try {
      await this.file(name).delete({ ifGenerationMatch: generationOf(version) });
      return true;
    } catch (error) {
      const status = statusOf(error);
      if (status === 404) return true;
      if (status !== 412) throw error;
      // GCS checks the precondition before existence: a record deleted already (by this call, retried after a lost
      // answer, or before it) is a 412 too.
      return (await this.download(this.file(name))) === undefined;
    }
  }

  async list(prefix: string): Promise<RecordListing[]> {
    const [files] = await this.bucket.getFiles({ prefix: PREFIX + checkRecordName(prefix), autoPaginate: true });
    return files
      .filter((file) => file.name.endsWith('.json'))
      .map((file) => ({ name: file.name.slice(PREFIX.length, -'.json'.length), updatedMs: Date.parse(String(file.metadata.updated ?? 0)) }));
  }

  async removeOlderThan(prefix: string, olderThanMs: number): Promise<number> {
    const [files] = await this.bucket.getFiles({ prefix: PREFIX + checkRecordName(prefix), autoPaginate: true });
    let removed = 0;
    for (const file of files) {
      if (Date.parse(String(file.metadata.updated ?? 0)) >= olderThanMs) continue;
      try {
        // Only the generation that was listed: a record written again meanwhile stays.
        await file.delete({ ifGenerationMatch: file.metadata.generation });
        removed += 1;
      } catch (error) {
        if (statusOf(error) !== 404 && statusOf(error) !== 412) throw error;
      }
    }
    return removed;
  }

  private file(name: string): File {
    return this.bucket.file(`${PREFIX}${checkRecordName(name)}.json`);
  }

  private async save(name: string, text: string, ifGenerationMatch: number): Promise<string | undefined> {
    const file = this.file(name);
    try {
      await file.save(text, { resumable: false, contentType: 'application/json', validation: 'crc32c', preconditionOpts: { ifGenerationMatch } });
      return String(file.metadata.generation);
    } catch (error) {
      if (statusOf(error) !== 412) throw error;
      // Either someone else wrote first, or this write was applied and its answer lost: the client's retry then
      // meets it. Values are unique per write, so identical bytes mean it is ours.
      const current = await this.download(file);
      return current?.text === text ? current.generation : undefined;
    }
  }

  private async download(file: File): Promise<{ text: string; generation: string } | undefined> {
    let generation: string | undefined;
    const chunks: Buffer[] = [];
    try {
      const stream = file.createReadStream({ validation: 'crc32c' });
      stream.on('response', (response: { headers?: Record<string, string | string[] | undefined> }) => {
        generation = String(response.headers?.['x-goog-generation'] ?? '');
      });
      for await (const chunk of stream) chunks.push(chunk as Buffer);
    } catch (error) {
      if (statusOf(error) === 404) return undefined;
      throw error;
    }
    if (generation === undefined || generation === '') throw new Error(`GCS sent ${file.name} without its generation`);
    return { text: Buffer.concat(chunks).toString('utf8'), generation };
  }
}

function generationOf(version: string): number {
  if (!/^[1-9]\d*$/.test(version)) throw new RangeError(`${JSON.stringify(version)} is not a GCS generation`);
  return Number(version);
}

function statusOf(error: unknown): number | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'number' ? code : undefined;
}
