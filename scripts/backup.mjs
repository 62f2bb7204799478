// Back up a private deployment's data directory into one .tar.gz: D1, every Durable Object's
// storage, R2 objects and the token secret, with a manifest of checksums.
//
//   npm run backup -- --data /var/lib/parley --out parley-2026-11-22.tar.gz
//   npm run backup -- --data /var/lib/parley --out parley.tar.gz --online
//
// Consistency: the archive must be one moment of all those SQLite files together. A directory
// that no process holds is locked for the duration (so a server cannot start mid-backup) and
// archived as is. A directory held by a running `npm run serve` is refused — unless --online,
// which asks that server (over its control socket) to stop its runtime, copies the files while
// nothing can write them, and lets it start again: a pause of a few seconds during which
// clients reconnect and resume, as they do after any network blip. If this process dies during
// the pause the server resumes by itself (the pause lasts as long as the control connection).
//
// Needs the system `tar` (GNU tar, as on Debian).
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { hostname } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';
import { readFlags } from './args.mjs';
import {
  acquireLock, BACKUP_FORMAT, dataFiles, describeHolder, isDataPath, LockedError,
  MANIFEST_NAME, processAlive, readLock, sha256File,
} from './datadir.mjs';
import { ROOT } from './setup.mjs';

export class BackupError extends Error {}

/** Fail early with a clear message when GNU tar is not there. */
export function requireTar() {
  const r = spawnSync('tar', ['--version'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) throw new BackupError('`tar` is not available: install it (apt-get install tar)');
  if (!/GNU tar/.test(r.stdout)) throw new BackupError(`GNU tar is required; found: ${r.stdout.split('\n')[0]}`);
}

function tar(args, opts = {}) {
  const r = spawnSync('tar', args, { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024, ...opts });
  if (r.error) throw new BackupError(`tar: ${r.error.message}`);
  if (r.status !== 0) throw new BackupError(`tar ${args[0]} failed (exit ${r.status}): ${(r.stderr || '').trim()}`);
  return r.stdout;
}

/** Whether dir looks like a Parley data directory (something the runtime wrote). */
export function looksLikeDataDir(dir) {
  return existsSync(join(dir, 'v3')) || existsSync(join(dir, 'token-secret'));
}

/**
 * Ask a running serve process to pause. Resolves to { resume() } once its runtime is stopped;
 * resume() resolves once it serves again. The pause ends also when this process exits.
 */
export function pauseServer(controlPath, { timeoutMs = 60_000 } = {}) {
  return new Promise((resolvePause, rejectPause) => {
    const sock = connect(controlPath);
    const rl = createInterface({ input: sock, crlfDelay: Infinity });
    const waiting = [];
    let closed = false;
    let settled = false;
    const timer = setTimeout(() => {
      if (!settled) { settled = true; sock.destroy(); rejectPause(new BackupError(`the server did not pause within ${timeoutMs} ms`)); }
    }, timeoutMs);
    rl.on('line', (text) => {
      let msg;
      try { msg = JSON.parse(text); } catch { return; }
      if (!settled) {
        settled = true;
        clearTimeout(timer);
        if (msg.ok && msg.state === 'paused') {
          resolvePause({
            limitMs: msg.limit_ms,
            get lost() { return closed; },
            resume: () => new Promise((res, rej) => {
              if (closed) { rej(new BackupError('the server resumed on its own before the copy finished (pause limit reached or server restarted)')); return; }
              waiting.push({ res, rej });
              sock.write(JSON.stringify({ op: 'resume' }) + '\n');
            }),
          });
        } else {
          sock.destroy();
          rejectPause(new BackupError(`the server refused to pause: ${msg.error}${msg.message ? `: ${msg.message}` : ''}`));
        }
        return;
      }
      const w = waiting.shift();
      if (!w) { closed = true; return; } // resumed by itself (limit): the copy may be inconsistent
      sock.end();
      if (msg.ok && msg.state === 'running') w.res();
      else w.rej(new BackupError(`resume failed: ${text}`));
    });
    sock.on('error', (e) => {
      if (!settled) { settled = true; clearTimeout(timer); rejectPause(new BackupError(`cannot reach the server's control socket ${controlPath}: ${e.message}`)); }
    });
    sock.on('close', () => {
      closed = true;
      for (const w of waiting.splice(0)) w.rej(new BackupError('the server closed the control connection'));
    });
    sock.on('connect', () => sock.write(JSON.stringify({ op: 'pause', reason: 'backup' }) + '\n'));
  });
}

function packageVersion() {
  try { return JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version; } catch { return null; }
}

function codeMigrations() {
  const dir = join(ROOT, 'migrations');
  try {
    return readdirSync(dir).filter((f) => f.endsWith('.sql')).sort();
  } catch { return []; }
}

/** Write the archive of the data files in `from` to `out` (atomically: a .partial file renamed). */
async function writeArchive(from, out, { online, source }) {
  const files = dataFiles(from);
  if (files.length === 0) throw new BackupError(`${source}: no data files`);
  const manifest = {
    format: BACKUP_FORMAT,
    created_at: new Date().toISOString(),
    hostname: hostname(),
    data_dir: source,
    online,
    parley_version: packageVersion(),
    code_migrations: codeMigrations(),
    files: [],
    total_bytes: 0,
  };
  for (const f of files) {
    manifest.files.push({ path: f.rel, size: f.size, sha256: await sha256File(f.abs) });
    manifest.total_bytes += f.size;
  }
  const work = mkdtempSync(join(dirname(out), `.${basename(out)}.work-`));
  const partial = `${out}.partial-${process.pid}`;
  try {
    writeFileSync(join(work, MANIFEST_NAME), JSON.stringify(manifest, null, 2) + '\n');
    writeFileSync(join(work, 'files.list'), files.map((f) => f.rel).join('\0') + '\0');
    tar([
      '--create', '--gzip', '--file', partial, '--format=gnu', '--numeric-owner', '--owner=0', '--group=0',
      '-C', work, MANIFEST_NAME,
      '-C', from, '--null', '--verbatim-files-from', '--files-from', join(work, 'files.list'),
    ]);
    // Read it back: every file is in the archive, and nothing else.
    const listed = tar(['--list', '--gzip', '--file', partial]).split('\n').filter(Boolean);
    const want = [MANIFEST_NAME, ...files.map((f) => f.rel)];
    if (listed.length !== want.length || listed.some((n, i) => n !== want[i])) {
      throw new BackupError('the archive read back does not list the files written');
    }
    renameSync(partial, out);
  } catch (e) {
    rmSync(partial, { force: true });
    throw e;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  return manifest;
}

/**
 * Back up `data` into `out`. Options: online (pause a running server instead of refusing),
 * overwrite (replace an existing `out`), say (progress lines). Resolves to the manifest.
 */
export async function backup({ data, out, online = false, overwrite = false, say = () => {} }) {
  requireTar();
  data = resolve(data);
  out = resolve(out);
  if (!existsSync(data)) throw new BackupError(`${data} does not exist`);
  if (!looksLikeDataDir(data)) throw new BackupError(`${data} does not look like a Parley data directory (no v3/ or token-secret)`);
  if (existsSync(out) && !overwrite) throw new BackupError(`${out} exists; choose another name or pass --overwrite`);
  if (out.startsWith(data + '/')) throw new BackupError('the archive cannot be written inside the data directory');
  mkdirSync(dirname(out), { recursive: true });

  let lock;
  try {
    lock = acquireLock(data, { role: 'backup', out });
  } catch (e) {
    if (!(e instanceof LockedError)) throw e;
    const holder = e.holder ?? readLock(data);
    if (holder?.role !== 'serve' || !holder.control || !processAlive(holder.pid, holder.start_ticks)) throw new BackupError(e.message);
    if (!online) {
      throw new BackupError(
        `${data} is in use by ${describeHolder(holder)}. Stop it first, or pass --online to pause it ` +
        'for the copy (a few seconds; clients reconnect and resume).',
      );
    }
    return onlineBackup({ data, out, holder, say });
  }
  try {
    say(`backing up ${data} (not running; locked for the backup)`);
    const manifest = await writeArchive(data, out, { online: false, source: data });
    say(`wrote ${out}: ${manifest.files.length} files, ${manifest.total_bytes} bytes`);
    return manifest;
  } finally {
    lock.release();
  }
}

async function onlineBackup({ data, out, holder, say }) {
  const staging = mkdtempSync(join(dirname(out), `.${basename(out)}.snapshot-`));
  try {
    say(`asking the server (pid ${holder.pid}) to pause`);
    const t0 = Date.now();
    const pause = await pauseServer(holder.control);
    try {
      // The runtime is stopped: its files are closed and nothing writes them. Copy, then resume.
      cpSync(data, staging, {
        recursive: true,
        filter: (src) => {
          const rel = src === data ? '' : src.slice(data.length + 1);
          return rel === '' || isDataPath(rel);
        },
      });
    } finally {
      if (pause.lost) {
        rmSync(staging, { recursive: true, force: true });
        throw new BackupError('the server resumed before the copy finished (pause limit reached); nothing was written');
      }
      await pause.resume();
    }
    say(`server paused for ${Date.now() - t0} ms while the data was copied; it serves again`);
    const manifest = await writeArchive(staging, out, { online: true, source: data });
    say(`wrote ${out}: ${manifest.files.length} files, ${manifest.total_bytes} bytes`);
    return manifest;
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
}

export function parseBackupArgs(argv) {
  const opts = { data: process.env.PARLEY_DATA || null, out: null, online: false, overwrite: false };
  readFlags(argv, (flag, value) => {
    if (flag === '--data') opts.data = value();
    else if (flag === '--out') opts.out = value();
    else if (flag === '--online') opts.online = true;
    else if (flag === '--overwrite') opts.overwrite = true;
    else return false;
  }, (m) => new BackupError(m));
  if (!opts.data) throw new BackupError('--data DIR is required');
  if (!opts.out) {
    const stamp = new Date().toISOString().replace(/[:]/g, '').replace(/\..*/, 'Z');
    opts.out = `parley-backup-${stamp}.tar.gz`;
  }
  return opts;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  (async () => {
    const opts = parseBackupArgs(process.argv.slice(2));
    await backup({ ...opts, say: (m) => console.log(`[backup] ${m}`) });
  })().catch((e) => {
    console.error(`[backup] ${e instanceof BackupError || e instanceof LockedError ? '' : 'failed: '}${e.message}`);
    process.exit(1);
  });
}
