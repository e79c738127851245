import type { RecordListing, RecordStore, StoredRecord } from '../../controller/workspace/records.js';

/**
 * A RecordStore in this process's memory: coordination as a single instance had it before issue 15 (the
 * de-duplication and the thread queue in memory), with no request to any store. The benchmark's baseline for the
 * store's cost per turn (bench/store-cost.ts).
 */
export class MemoryRecordStore implements RecordStore {
  private readonly records = new Map<string, { text: string; version: number; updatedMs: number }>();
  private nextVersion = 1;

  async create(name: string, value: unknown): Promise<string | undefined> {
    if (this.records.has(name)) return undefined;
    return this.write(name, value);
  }

  async read<T>(name: string): Promise<StoredRecord<T> | undefined> {
    const record = this.records.get(name);
    return record === undefined ? undefined : { value: JSON.parse(record.text) as T, version: String(record.version) };
  }

  async replace(name: string, value: unknown, version: string): Promise<string | undefined> {
    if (String(this.records.get(name)?.version) !== version) return undefined;
    return this.write(name, value);
  }

  async remove(name: string, version: string): Promise<boolean> {
    const record = this.records.get(name);
    if (record === undefined) return true;
    if (String(record.version) !== version) return false;
    this.records.delete(name);
    return true;
  }

  async list(prefix: string): Promise<RecordListing[]> {
    return [...this.records].filter(([name]) => name.startsWith(prefix)).map(([name, record]) => ({ name, updatedMs: record.updatedMs }));
  }

  async removeOlderThan(prefix: string, olderThanMs: number): Promise<number> {
    const old = (await this.list(prefix)).filter((record) => record.updatedMs < olderThanMs);
    for (const record of old) this.records.delete(record.name);
    return old.length;
  }

  private write(name: string, value: unknown): string {
    const version = this.nextVersion++;
    this.records.set(name, { text: JSON.stringify(value), version, updatedMs: Date.now() });
    return String(version);
  }
}
