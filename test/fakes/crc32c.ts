/**
 * CRC32C (Castagnoli), as GCS reports it: the big-endian 4-byte checksum, base64-encoded.
 * Written here rather than borrowed from @google-cloud/storage so the fake checks the client
 * with an independent implementation.
 */
const table = new Uint32Array(256);
for (let index = 0; index < 256; index++) {
  let value = index;
  for (let bit = 0; bit < 8; bit++) value = value & 1 ? (value >>> 1) ^ 0x82f63b78 : value >>> 1;
  table[index] = value >>> 0;
}

export function crc32c(data: Buffer): number {
  let crc = 0xffffffff;
  for (const byte of data) crc = table[(crc ^ byte) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

export function crc32cBase64(data: Buffer): string {
  const bytes = Buffer.alloc(4);
  bytes.writeUInt32BE(crc32c(data));
  return bytes.toString('base64');
}
