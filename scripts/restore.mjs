// Restore a backup made by scripts/backup.mjs into an empty (or new) data directory.
//
//   npm run restore -- --from parley-2026-11-22.tar.gz --data /var/lib/parley-restored
//
// The archive is checked before anything is written (a manifest first, regular files only, no
// absolute paths or `..`), every file is verified against the manifest's sha256 after
// extraction, and on any failure the directory is emptied again. A directory that holds
// anything is refused: restore never merges into or overwrites live data. Then start the server
// on it; a backup made by an older Parley is upgraded by the migrations applied on start.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { readFlags } from './args.mjs';
import { requireTar } from './backup.mjs';
import {
  acquireLock, BACKUP_FORMAT, dataFiles, isEmptyDir, LOCK_NAME, LockedError, MANIFEST_NAME,
  RESTORE_ID_NAME, sha256File,
} from './datadir.mjs';

export class RestoreError extends Error {}

function tar(args) {
  const r = spawnSync('tar', args, { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 });
  if (r.error) throw new RestoreError(`tar: ${r.error.message}`);
  if (r.status !== 0) throw new RestoreError(`tar failed (exit ${r.status}): ${(r.stderr || '').trim()}`);
  return r.stdout;
}

/**
 * Entry names, types and sizes of the archive (`{ names, sizes }`, sizes by name as tar will
 * write them); throws on anything a backup never contains.
 */
export function checkArchiveEntries(file) {
  const names = tar(['--list', '--gzip', '--file', file]).split('\n').filter(Boolean);
  const verbose = tar(['--list', '--verbose', '--gzip', '--file', file]).split('\n').filter(Boolean);
  if (names.length !== verbose.length) throw new RestoreError('cannot read the archive listing');
  if (names[0] !== MANIFEST_NAME) throw new RestoreError(`not a Parley backup: ${MANIFEST_NAME} is not its first entry`);
  const sizes = new Map();
  names.forEach((name, i) => {
    const type = verbose[i][0];
    if (type !== '-' && type !== 'd') throw new RestoreError(`refusing entry ${name}: not a regular file or directory`);
    if (name.startsWith('/') || name.split('/').includes('..')) throw new RestoreError(`refusing entry ${name}: unsafe path`);
    // GNU tar: mode, owner/group, size, date, time, name.
    const size = /^\S+\s+\S+\s+(\d+)\s/.exec(verbose[i])?.[1];
    if (size === undefined) throw new RestoreError(`cannot read the size of entry ${name}`);
    sizes.set(name, Number(size));
  });
  return { names, sizes };
}

/** Bytes free for an unprivileged writer on the file system holding `dir`. */
function freeBytes(dir) {
  const fs = statfsSync(dir);
  return Number(fs.bavail) * Number(fs.bsize);
}

/** The archive's manifest (checked for format). */
export function readManifest(file) {
  let manifest;
  try {
    manifest = JSON.parse(tar(['--extract', '--gzip', '--file', file, '--to-stdout', MANIFEST_NAME]));
  } catch (e) {
    if (e instanceof RestoreError) throw e;
    throw new RestoreError(`${MANIFEST_NAME} is not valid JSON`);
  }
  if (manifest.format !== BACKUP_FORMAT) {
    throw new RestoreError(`backup format ${manifest.format} is not supported by this version (it reads format ${BACKUP_FORMAT})`);
  }
  if (!Array.isArray(manifest.files)) throw new RestoreError('manifest has no file list');
  return manifest;
}

/** Restore `from` into `data`. Resolves to the manifest. */
export async function restore({ from, data, say = () => {} }) {
  requireTar();
  from = resolve(from);
  data = resolve(data);
  if (!existsSync(from)) throw new RestoreError(`${from} does not exist`);
  if (!isEmptyDir(data)) {
    throw new RestoreError(`${data} is not empty: restore only into a new or empty directory (it never overwrites data)`);
  }
  const { names, sizes } = checkArchiveEntries(from);
  const manifest = readManifest(from);
  const expected = new Map(manifest.files.map((f) => [f.path, f]));
  const fileNames = names.slice(1).filter((n) => !n.endsWith('/'));
  if (fileNames.length !== expected.size || fileNames.some((n) => !expected.has(n))) {
    throw new RestoreError('the archive\'s files do not match its manifest');
  }
  if (expected.has(LOCK_NAME)) throw new RestoreError('the archive contains a lock file');
  // Checked before a byte is written: an archive whose entries are larger than its manifest
  // says (a damaged or crafted one) would otherwise fill the disk before the sha256 check.
  const mismatched = fileNames.find((n) => sizes.get(n) !== expected.get(n).size);
  if (mismatched) {
    throw new RestoreError(`${mismatched}: the archive holds ${sizes.get(mismatched)} bytes, its manifest says ${expected.get(mismatched).size} (corrupt archive?)`);
  }
  const needed = fileNames.reduce((sum, n) => sum + sizes.get(n), 0);
  mkdirSync(data, { recursive: true });
  if (needed > freeBytes(data)) {
    throw new RestoreError(`the backup needs ${needed} bytes and ${data} has ${freeBytes(data)} free`);
  }

  const lock = acquireLock(data, { role: 'restore', from });
  try {
    tar(['--extract', '--gzip', '--file', from, '--directory', data, '--no-same-owner', '--no-overwrite-dir', '--exclude', MANIFEST_NAME]);
    const got = dataFiles(data);
    if (got.length !== expected.size) throw new RestoreError(`extracted ${got.length} files, the manifest lists ${expected.size}`);
    for (const f of got) {
      const want = expected.get(f.rel);
      if (!want) throw new RestoreError(`unexpected file ${f.rel}`);
      if (f.size !== want.size || (await sha256File(f.abs)) !== want.sha256) {
        throw new RestoreError(`${f.rel} does not match the manifest (corrupt archive?)`);
      }
    }
    writeFileSync(join(data, RESTORE_ID_NAME), `rs_${randomBytes(16).toString('hex')}\n`, { mode: 0o600 });
    say(`restored ${got.length} files (${manifest.total_bytes} bytes) into ${data}`);
    say(`backup taken ${manifest.created_at} on ${manifest.hostname} from ${manifest.data_dir}${manifest.online ? ' (online)' : ''}`);
    return manifest;
  } catch (e) {
    // The directory was empty: leave it so (but for our own lock, released below).
    for (const name of readdirSync(data)) {
      if (name !== LOCK_NAME) rmSync(join(data, name), { recursive: true, force: true });
    }
    throw e;
  } finally {
    lock.release();
  }
}

export function parseRestoreArgs(argv) {
  const opts = { from: null, data: null };
  readFlags(argv, (flag, value) => {
    if (flag === '--from') opts.from = value();
    else if (flag === '--data') opts.data = value();
    else return false;
  }, (m) => new RestoreError(m));
  if (!opts.from) throw new RestoreError('--from FILE.tar.gz is required');
  if (!opts.data) throw new RestoreError('--data DIR is required (a new or empty directory)');
  return opts;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  (async () => {
    const opts = parseRestoreArgs(process.argv.slice(2));
    await restore({ ...opts, say: (m) => console.log(`[restore] ${m}`) });
    console.log(`[restore] start it with: npm run serve -- --data ${resolve(opts.data)}`);
    console.log('[restore] (if the server ran with TOKEN_SECRET from its environment, give it the same one, or issued tokens stop working)');
  })().catch((e) => {
    console.error(`[restore] ${e instanceof RestoreError || e instanceof LockedError ? '' : 'failed: '}${e.message}`);
    process.exit(1);
  });
}
