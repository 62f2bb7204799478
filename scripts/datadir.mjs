// The data directory of a private deployment (`npm run serve -- --data DIR`), and the lock that
// keeps two processes from using it at once.
//
// Layout (everything below DIR is data, and a backup archives all of it but the lock):
//   DIR/token-secret            TOKEN_SECRET generated on first start (unless the environment sets one)
//   DIR/v3/d1/…                 D1 (SQLite, with its -wal file)
//   DIR/v3/do/parley-*/…        Durable Object storage (SQLite per object)
//   DIR/v3/r2/…                 R2 objects
//   DIR/demo-credentials.json   only with --demo
//   DIR/restore-id              written by restore (see RESTORE_ID_NAME)
//   DIR/parley.lock             JSON: who holds the directory (serve, backup or restore) — not data
//   DIR/parley.control.sock     the serve process's control socket (pause/resume for backups)
//
// The lock is a file created with O_EXCL. A lock whose process is gone (crash, SIGKILL, power
// loss) is stale and is taken over; a lock held by a live process, or written on another host,
// is refused. Liveness is the pid plus its start time from /proc, so a recycled pid does not
// keep a dead server's lock alive.
import { createHash } from 'node:crypto';
import {
  closeSync, createReadStream, existsSync, linkSync, lstatSync, mkdirSync, openSync, readdirSync,
  readFileSync, renameSync, unlinkSync, writeFileSync,
} from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

export const LOCK_NAME = 'parley.lock';
export const CONTROL_NAME = 'parley.control.sock';
export const MANIFEST_NAME = 'parley-backup.json';
/**
 * Written by every restore (a fresh random id): the serve process passes it to the Worker as
 * PARLEY_RESTORE_ID, so conversations can tell that their log was rolled back to a backup
 * (clients that saw events newer than the backup must reload rather than resume).
 */
export const RESTORE_ID_NAME = 'restore-id';
export const BACKUP_FORMAT = 1;
/** Files in a data directory that are not data: never archived, never restored. */
export const NOT_DATA = new Set([LOCK_NAME, CONTROL_NAME]);

export class LockedError extends Error {
  constructor(dir, holder, reason) {
    super(reason);
    this.name = 'LockedError';
    this.dir = dir;
    this.holder = holder;
  }
}

/** Start time of a process (clock ticks since boot, /proc/PID/stat field 22), or null. */
export function processStartTicks(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[19] ?? null; // field 22 overall; fields[0] is field 3
  } catch {
    return null;
  }
}

/** Whether a process still runs (same pid and, where known, the same start time). */
export function processAlive(pid, startTicks) {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (e) {
    if (e.code !== 'EPERM') return false;
  }
  if (startTicks) {
    const now = processStartTicks(pid);
    if (now !== null && now !== startTicks) return false; // the pid was recycled
  }
  try {
    if (readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.startsWith('Z')) return false; // zombie
  } catch { /* no /proc: trust kill(0) */ }
  return true;
}

/**
 * Whether the directory's holder still runs: its process, or the workerd runtime it started
 * (a serve process killed with SIGKILL leaves its workerd running, still writing the data).
 */
export function holderAlive(holder) {
  if (!holder) return false;
  return processAlive(holder.pid, holder.start_ticks) || runtimeOrphaned(holder);
}

/** Whether the holder's runtime (workerd) outlived it. */
export function runtimeOrphaned(holder) {
  return Boolean(holder?.runtime_pid) && processAlive(holder.runtime_pid, holder.runtime_start_ticks);
}

/** Pids of this process's children named `comm` (from /proc), e.g. the workerd Miniflare runs. */
export function childPids(comm, parent = process.pid) {
  const out = [];
  let entries;
  try { entries = readdirSync('/proc'); } catch { return out; }
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = readFileSync(`/proc/${e}/stat`, 'utf8');
      const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (name === comm && ppid === parent) out.push(Number(e));
    } catch { /* gone */ }
  }
  return out;
}

/** The lock file's content, or null when there is none (or it is unreadable garbage: {}). */
export function readLock(dir) {
  const file = join(resolve(dir), LOCK_NAME);
  if (!existsSync(file)) return null;
  try {
    return JSON.parse(readFileSync(file, 'utf8'));
  } catch {
    return {};
  }
}

/** Describe a holder for an error message. */
export function describeHolder(h) {
  if (!h) return 'nobody';
  const what = h.role ?? 'a process';
  const where = h.hostname && h.hostname !== hostname() ? ` on host ${h.hostname}` : '';
  const since = h.started_at ? ` since ${h.started_at}` : '';
  const orphan = !processAlive(h.pid, h.start_ticks) && runtimeOrphaned(h)
    ? `; that process is gone but its runtime, workerd pid ${h.runtime_pid}, still runs: stop it with \`kill ${h.runtime_pid}\`` : '';
  return `${what} (pid ${h.pid}${where}${since}${orphan})`;
}

function checkHolder(dir, holder) {
  if (holder?.hostname && holder.hostname !== hostname()) {
    throw new LockedError(
      dir, holder,
      `${dir} is locked by ${describeHolder(holder)}; this host cannot tell whether it still runs. ` +
      `If that machine no longer uses the directory, delete ${join(dir, LOCK_NAME)}.`,
    );
  }
  if (holderAlive(holder)) {
    throw new LockedError(dir, holder, `${dir} is in use by ${describeHolder(holder)}`);
  }
}

/**
 * Take the directory's lock for this process (creating the directory). info is merged into the
 * lock file (role, url, …). Returns { path, holder, update(extra), release() }. Throws
 * LockedError when another live process holds it.
 */
export function acquireLock(dir, info = {}) {
  dir = resolve(dir);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const file = join(dir, LOCK_NAME);
  const holder = {
    pid: process.pid,
    hostname: hostname(),
    start_ticks: processStartTicks(process.pid),
    started_at: new Date().toISOString(),
    ...info,
  };
  const write = (content) => {
    const fd = openSync(file, 'wx', 0o600);
    try {
      writeFileSync(fd, JSON.stringify(content, null, 2) + '\n');
    } finally {
      closeSync(fd);
    }
  };
  for (let attempt = 0; ; attempt++) {
    try {
      write(holder);
      break;
    } catch (e) {
      if (e.code !== 'EEXIST' || attempt >= 2) {
        if (e.code === 'EEXIST') throw new LockedError(dir, readLock(dir), `${dir}: could not take ${LOCK_NAME} (another process is starting?)`);
        throw e;
      }
    }
    // The lock exists: refuse a live holder; take over a stale one. Move it aside first and
    // check that what we moved is what we judged stale, so two processes taking over the same
    // stale lock at once cannot both win.
    const raw = readFileSync(file, 'utf8');
    let stale;
    try { stale = JSON.parse(raw); } catch { stale = {}; }
    checkHolder(dir, stale);
    const aside = `${file}.stale-${process.pid}`;
    try {
      renameSync(file, aside);
    } catch (e) {
      if (e.code === 'ENOENT') continue; // someone else removed it: try again
      throw e;
    }
    if (readFileSync(aside, 'utf8') !== raw) {
      // We moved a lock another process just wrote: put it back and give up.
      try { linkSync(aside, file); } catch { /* a third process holds it now */ }
      unlinkSync(aside);
      throw new LockedError(dir, readLock(dir), `${dir}: another process took ${LOCK_NAME} while this one was starting`);
    }
    unlinkSync(aside);
  }

  let current = holder;
  let released = false;
  return {
    path: file,
    get holder() { return current; },
    /** Rewrite the lock with extra fields (still ours: same pid). */
    update(extra) {
      if (released) return;
      current = { ...current, ...extra };
      const tmp = `${file}.${process.pid}.tmp`;
      writeFileSync(tmp, JSON.stringify(current, null, 2) + '\n', { mode: 0o600 });
      renameSync(tmp, file);
    },
    /** Remove the lock if it is still ours. Safe to call twice and from an 'exit' handler. */
    release() {
      if (released) return;
      released = true;
      try {
        const now = JSON.parse(readFileSync(file, 'utf8'));
        if (now.pid === process.pid && now.hostname === holder.hostname) unlinkSync(file);
      } catch { /* gone already */ }
    },
  };
}

/** Path of the serve process's control socket: in the data directory when it fits (108 bytes). */
export function controlSocketPath(dir) {
  dir = resolve(dir);
  const inside = join(dir, CONTROL_NAME);
  if (Buffer.byteLength(inside) < 100) return inside;
  const h = createHash('sha256').update(dir).digest('hex').slice(0, 16);
  return join(tmpdir(), `parley-${h}.sock`);
}

/** Whether a directory is missing or holds nothing at all. */
export function isEmptyDir(dir) {
  if (!existsSync(dir)) return true;
  return readdirSync(dir).length === 0;
}

/**
 * Whether a path (relative to the data directory, '/'-separated) is data to back up: not the
 * lock, not the control socket, not SQLite's shared-memory index (-shm: rebuilt from the
 * database and its -wal on open; the -wal itself is data), not a half-written temporary file.
 */
export function isDataPath(rel) {
  const base = rel.split('/').pop();
  if (!rel.includes('/') && NOT_DATA.has(rel)) return false;
  if (base.endsWith('-shm')) return false;
  if (/\.stale-\d+$|\.\d+\.tmp$/.test(base)) return false;
  return true;
}

/**
 * Every data file below dir as { rel, abs, size }, sorted by rel. Regular files only: a symlink,
 * socket or device in a data directory is an error (nothing Parley writes is one).
 */
export function dataFiles(dir) {
  dir = resolve(dir);
  const out = [];
  const walk = (abs, rel) => {
    for (const name of readdirSync(abs).sort()) {
      const a = join(abs, name);
      const r = rel ? `${rel}/${name}` : name;
      if (!isDataPath(r)) continue;
      const st = lstatSync(a);
      if (st.isDirectory()) walk(a, r);
      else if (st.isFile()) out.push({ rel: r, abs: a, size: st.size });
      else throw new Error(`${a}: not a regular file or directory; a Parley data directory holds none`);
    }
  };
  walk(dir, '');
  return out.sort((a, b) => (a.rel < b.rel ? -1 : a.rel > b.rel ? 1 : 0));
}

/** sha256 of a file, hex. */
export function sha256File(path) {
  return new Promise((res, rej) => {
    const h = createHash('sha256');
    createReadStream(path).on('error', rej).on('data', (c) => h.update(c)).on('end', () => res(h.digest('hex')));
  });
}
