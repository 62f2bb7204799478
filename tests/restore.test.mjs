// Restore refuses an archive before writing a byte when its entries are larger than its
// manifest says (a damaged or crafted backup would otherwise fill the disk before the sha256
// check), and when the data would not fit in the free space.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { restore, RestoreError } from '../scripts/restore.mjs';
import { BACKUP_FORMAT, MANIFEST_NAME } from '../scripts/datadir.mjs';

/** What a restore left in `dir` (none of it, if it was refused in time). */
function leftIn(dir) {
  return existsSync(dir) ? readdirSync(dir) : [];
}

/** A backup archive whose one data file has `actual` bytes and whose manifest claims `claimed`. */
function craftedArchive(dir, { actual, claimed }) {
  const src = join(dir, 'src');
  mkdirSync(join(src, 'd1'), { recursive: true });
  writeFileSync(join(src, 'd1', 'db.sqlite'), Buffer.alloc(actual, 0x61));
  const manifest = { format: BACKUP_FORMAT, files: [{ path: 'd1/db.sqlite', size: claimed, sha256: '0'.repeat(64) }], total_bytes: claimed };
  writeFileSync(join(src, MANIFEST_NAME), JSON.stringify(manifest));
  const file = join(dir, 'backup.tar.gz');
  execFileSync('tar', ['--create', '--gzip', '--file', file, '--directory', src, MANIFEST_NAME, 'd1']);
  return file;
}

test('an archive whose file is larger than its manifest says is refused before anything is written', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'parley-restore-'));
  try {
    const from = craftedArchive(dir, { actual: 4 << 20, claimed: 16 });
    const data = join(dir, 'data');
    await assert.rejects(restore({ from, data }), (e) => e instanceof RestoreError && /the archive holds 4194304 bytes, its manifest says 16/.test(e.message));
    assert.deepEqual(leftIn(data), [], 'nothing extracted');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('an archive that would not fit in the free space is refused before anything is written', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'parley-restore-'));
  try {
    // A sparse file of 1 TiB: the archive is tiny, the manifest and the entry agree, and the
    // disk holding the temporary directory has far less free.
    const src = join(dir, 'src');
    mkdirSync(join(src, 'd1'), { recursive: true });
    const size = 2 ** 40;
    execFileSync('truncate', ['-s', String(size), join(src, 'd1', 'db.sqlite')]);
    writeFileSync(join(src, MANIFEST_NAME), JSON.stringify({ format: BACKUP_FORMAT, files: [{ path: 'd1/db.sqlite', size, sha256: '0'.repeat(64) }] }));
    const from = join(dir, 'sparse.tar.gz');
    execFileSync('tar', ['--create', '--gzip', '--sparse', '--file', from, '--directory', src, MANIFEST_NAME, 'd1']);
    const data = join(dir, 'data');
    await assert.rejects(restore({ from, data }), (e) => e instanceof RestoreError && /needs \d+ bytes/.test(e.message));
    assert.deepEqual(leftIn(data), [], 'nothing extracted');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
