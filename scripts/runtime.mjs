// The one place that turns wrangler.toml into a running local Parley on workerd, through
// Miniflare: `npm start`, the integration tests and private deployments all come through here,
// so local and deployed bindings cannot drift apart.
//
// Persistence: Miniflare's defaultPersistRoot is `<persistDir>/v3`, the layout wrangler uses,
// so `wrangler d1 migrations apply DB --local --persist-to <persistDir>` (and `wrangler dev
// --persist-to <persistDir>`) see the same D1, Durable Object and R2 data.
import { pbkdf2Sync, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Miniflare } from 'miniflare';
import { parse as parseToml } from 'smol-toml';
import { ROOT } from './setup.mjs';

export const MIGRATIONS_TABLE = 'd1_migrations';
export const PASSWORD_ITERATIONS = 100000;
// D1 binding → the persistDir it was started with, so seedDemo can find demo-credentials.json.
const persistDirOf = new WeakMap();

// ---------------------------------------------------------------------------------------------
// wrangler.toml → Miniflare options

/** Parse <root>/wrangler.toml. */
export function readWranglerConfig(root = ROOT) {
  return parseToml(readFileSync(join(root, 'wrangler.toml'), 'utf8'));
}

/** The first [[d1_databases]] entry with the given binding (default DB). */
function d1Config(config, binding = 'DB') {
  const db = (config.d1_databases ?? []).find((d) => d.binding === binding);
  if (!db) throw new Error(`wrangler.toml has no [[d1_databases]] with binding = "${binding}"`);
  return db;
}

/** wrangler's run_worker_first → assets router config (boolean or list of route rules). */
function routerConfigFor(runWorkerFirst) {
  const rc = { has_user_worker: true };
  if (typeof runWorkerFirst === 'boolean') {
    rc.invoke_user_worker_ahead_of_assets = runWorkerFirst;
  } else if (Array.isArray(runWorkerFirst) && runWorkerFirst.length > 0) {
    // Same split as wrangler: "/x/*" runs the worker first, "!/x/*" goes to assets first.
    const user_worker = [];
    const asset_worker = [];
    for (const rule of runWorkerFirst) {
      if (rule.startsWith('!/')) asset_worker.push(rule.slice(1));
      else if (rule.startsWith('/')) user_worker.push(rule);
      else throw new Error(`wrangler.toml: run_worker_first rule '${rule}' must start with '/' or '!/'`);
    }
    rc.static_routing = { user_worker, asset_worker };
  }
  return rc;
}

/**
 * Build the Miniflare worker options for wrangler.toml. Returns { options, unmapped }, where
 * unmapped lists the configuration keys Miniflare has no use for locally.
 */
export function miniflareOptionsFromConfig(config, { root = ROOT, bindings = {} } = {}) {
  const known = new Set([
    'name', 'main', 'compatibility_date', 'compatibility_flags', 'durable_objects', 'migrations',
    'd1_databases', 'r2_buckets', 'assets', 'vars', 'build',
  ]);
  const unmapped = Object.keys(config).filter((k) => !known.has(k));
  if (config.build) unmapped.push('build (run by scripts/setup.mjs, not by Miniflare)');

  if (!config.main) throw new Error('wrangler.toml: `main` is missing');
  const sqliteClasses = new Set(
    (config.migrations ?? []).flatMap((m) => m.new_sqlite_classes ?? []),
  );
  const durableObjects = {};
  for (const b of config.durable_objects?.bindings ?? []) {
    durableObjects[b.name] = {
      className: b.class_name,
      ...(b.script_name ? { scriptName: b.script_name } : {}),
      useSQLite: sqliteClasses.has(b.class_name),
    };
  }
  const d1Databases = {};
  for (const d of config.d1_databases ?? []) {
    d1Databases[d.binding] = d.preview_database_id ?? d.database_id ?? d.binding;
  }
  const r2Buckets = {};
  for (const r of config.r2_buckets ?? []) {
    r2Buckets[r.binding] = r.preview_bucket_name ?? r.bucket_name ?? r.binding;
  }

  const options = {
    name: config.name ?? 'worker',
    modules: true,
    scriptPath: resolve(root, config.main),
    modulesRules: [{ type: 'CompiledWasm', include: ['**/*.wasm'] }],
    compatibilityDate: config.compatibility_date,
    compatibilityFlags: config.compatibility_flags ?? [],
    durableObjects,
    d1Databases,
    r2Buckets,
    bindings: { ...(config.vars ?? {}), ...bindings },
  };
  if (config.assets) {
    const directory = resolve(root, config.assets.directory);
    options.assets = {
      directory,
      ...(config.assets.binding ? { binding: config.assets.binding } : {}),
      routerConfig: routerConfigFor(config.assets.run_worker_first),
      assetConfig: {
        compatibility_date: config.compatibility_date,
        compatibility_flags: config.compatibility_flags ?? [],
        ...(config.assets.html_handling ? { html_handling: config.assets.html_handling } : {}),
        ...(config.assets.not_found_handling
          ? { not_found_handling: config.assets.not_found_handling }
          : {}),
      },
    };
  }
  return { options, unmapped };
}

// ---------------------------------------------------------------------------------------------
// D1 migrations

/**
 * Split a SQL file into statements: `--` and block comments removed, quoted text kept intact,
 * statements end at `;` (a CREATE TRIGGER body runs to its closing `END;`).
 */
export function splitSql(sql) {
  const statements = [];
  let cur = '';
  let i = 0;
  const n = sql.length;
  const flush = () => {
    const s = cur.trim();
    if (s) statements.push(s);
    cur = '';
  };
  const inTrigger = () => /^\s*CREATE\s+(TEMP\s+|TEMPORARY\s+)?TRIGGER\b/i.test(cur)
    && !/\bEND\s*$/i.test(cur.trimEnd());
  while (i < n) {
    const c = sql[i];
    const next = sql[i + 1];
    if (c === '-' && next === '-') {
      while (i < n && sql[i] !== '\n') i++;
      continue;
    }
    if (c === '/' && next === '*') {
      const end = sql.indexOf('*/', i + 2);
      i = end === -1 ? n : end + 2;
      cur += ' ';
      continue;
    }
    if (c === "'" || c === '"' || c === '`' || c === '[') {
      const close = c === '[' ? ']' : c;
      let j = i + 1;
      while (j < n) {
        if (sql[j] === close) {
          if (close !== ']' && sql[j + 1] === close) { j += 2; continue; } // doubled quote
          break;
        }
        j++;
      }
      cur += sql.slice(i, j + 1);
      i = j + 1;
      continue;
    }
    if (c === ';') {
      if (inTrigger()) { cur += c; i++; continue; }
      flush();
      i++;
      continue;
    }
    cur += c;
    i++;
  }
  flush();
  return statements;
}

/**
 * Apply <root>/<migrations_dir>/*.sql not yet recorded in d1_migrations, in filename order, each
 * in one D1 batch (atomic) together with its d1_migrations row. Returns the names applied.
 */
export async function applyMigrations(d1, migrationsDir, log = () => {}) {
  await d1.prepare(
    `CREATE TABLE IF NOT EXISTS ${MIGRATIONS_TABLE}(
      id         INTEGER PRIMARY KEY AUTOINCREMENT,
      name       TEXT UNIQUE,
      applied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP NOT NULL
    )`,
  ).run();
  const { results } = await d1.prepare(`SELECT name FROM ${MIGRATIONS_TABLE}`).all();
  const applied = new Set(results.map((r) => r.name));
  const files = existsSync(migrationsDir)
    ? readdirSync(migrationsDir).filter((f) => f.endsWith('.sql')).sort()
    : [];
  const done = [];
  for (const file of files) {
    if (applied.has(file)) continue;
    const statements = splitSql(readFileSync(join(migrationsDir, file), 'utf8'));
    try {
      await d1.batch([
        ...statements.map((s) => d1.prepare(s)),
        d1.prepare(`INSERT INTO ${MIGRATIONS_TABLE} (name) VALUES (?)`).bind(file),
      ]);
    } catch (e) {
      throw new Error(`D1 migration ${file} failed: ${e?.cause?.message ?? e.message}`);
    }
    log(`applied D1 migration ${file} (${statements.length} statements)`);
    done.push(file);
  }
  return done;
}

// ---------------------------------------------------------------------------------------------
// Secrets, ids, demo data

/** TOKEN_SECRET: 32 random bytes (hex), created once and kept in <persistDir>/token-secret. */
export function loadTokenSecret(persistDir) {
  const file = join(persistDir, 'token-secret');
  if (existsSync(file)) {
    const s = readFileSync(file, 'utf8').trim();
    if (/^[0-9a-f]{64,}$/.test(s)) return s;
  }
  const secret = randomBytes(32).toString('hex');
  mkdirSync(persistDir, { recursive: true });
  writeFileSync(file, secret + '\n', { mode: 0o600 });
  return secret;
}

const BASE32 = 'abcdefghijklmnopqrstuvwxyz234567';

/** Lowercase RFC 4648 base32 without padding. */
export function base32(bytes) {
  let out = '';
  let bits = 0;
  let value = 0;
  for (const b of bytes) {
    value = (value << 8) | b;
    bits += 8;
    while (bits >= 5) {
      out += BASE32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
    value &= (1 << bits) - 1;
  }
  if (bits > 0) out += BASE32[(value << (5 - bits)) & 31];
  return out;
}

/** `<prefix>_` + 16 random bytes in lowercase base32 (26 chars). */
export function randomId(prefix) {
  return `${prefix}_${base32(randomBytes(16))}`;
}

/** PBKDF2-SHA256 as the Worker verifies it: standard base64 hash and salt. */
export function hashPassword(password, { iterations = PASSWORD_ITERATIONS, salt = randomBytes(16) } = {}) {
  const hash = pbkdf2Sync(password, salt, iterations, 32, 'sha256');
  return { hash: hash.toString('base64'), salt: Buffer.from(salt).toString('base64'), iterations };
}

/**
 * Create a demo team, site and owner agent if no team exists. Returns { siteKey, email, password }.
 * The password is kept in <persistDir>/demo-credentials.json (it cannot be read back from the
 * hash); persistDir defaults to the one d1 came from when d1 is startRuntime()'s.
 */
export async function seedDemo(d1, { origins = [], persistDir } = {}) {
  const dir = persistDir ?? persistDirOf.get(d1);
  const credFile = dir ? join(dir, 'demo-credentials.json') : null;
  const existing = await d1.prepare('SELECT id FROM teams LIMIT 1').first();
  if (existing) {
    if (credFile && existsSync(credFile)) return JSON.parse(readFileSync(credFile, 'utf8'));
    const site = await d1.prepare('SELECT site_key FROM sites ORDER BY created_at LIMIT 1').first();
    const owner = await d1
      .prepare("SELECT email FROM agents WHERE role = 'owner' ORDER BY created_at LIMIT 1")
      .first();
    return { siteKey: site?.site_key ?? null, email: owner?.email ?? null, password: null };
  }
  const now = Date.now();
  const teamId = randomId('t');
  const siteId = randomId('s');
  const agentId = randomId('a');
  const siteKey = `pk_${randomBytes(18).toString('base64url')}`;
  const email = 'admin@parley.local';
  const password = randomBytes(12).toString('base64url');
  const pw = hashPassword(password);
  // The key the demo shop's server would sign visitor ids with (Parley.identify).
  const identitySecret = randomBytes(32).toString('hex');
  await d1.batch([
    d1.prepare('INSERT INTO teams (id, name, created_at) VALUES (?, ?, ?)').bind(teamId, 'Demo team', now),
    d1.prepare(
      `INSERT INTO sites (id, team_id, site_key, name, allowed_origins, identity_secret, created_at)
       VALUES (?, ?, ?, ?, ?, ?, ?)`,
    ).bind(siteId, teamId, siteKey, 'Demo shop', JSON.stringify(origins), identitySecret, now),
    d1.prepare(
      `INSERT INTO agents (id, team_id, email, name, role, password_hash, password_salt,
         password_iterations, created_at) VALUES (?, ?, ?, ?, 'owner', ?, ?, ?, ?)`,
    ).bind(agentId, teamId, email, 'Demo Admin', pw.hash, pw.salt, pw.iterations, now),
    ...[
      ['Greetings', 'Hello', 'Hello! Thanks for reaching out — how can I help you today?'],
      ['Greetings', '您好', '您好！感谢您的咨询，请问有什么可以帮您？'],
      ['Orders', 'Order status', 'Could you share your order number? I will check its status right away.'],
      ['Closing', 'Anything else', 'Is there anything else I can help you with?'],
    ].map(([group, title, body]) =>
      d1.prepare(
        'INSERT INTO quick_replies (id, team_id, agent_id, group_name, title, body, created_at) VALUES (?, ?, NULL, ?, ?, ?, ?)',
      ).bind(randomId('q'), teamId, group, title, body, now),
    ),
  ]);
  const creds = { siteKey, email, password, identitySecret };
  if (credFile) {
    mkdirSync(dir, { recursive: true });
    writeFileSync(credFile, JSON.stringify(creds, null, 2) + '\n', { mode: 0o600 });
  }
  return creds;
}

// ---------------------------------------------------------------------------------------------
// The runtime

/**
 * Start Parley locally. Returns { mf, url, port, d1, persistDir, unmapped, dispose() }; url is
 * the origin ("http://127.0.0.1:8787"), d1 the DB binding (migrations applied).
 * Options: host, port (0 = any free port), persistDir (required for data that survives
 * restarts), vars (merged over wrangler.toml [vars]; may override TOKEN_SECRET), log (a
 * function taking one line, for progress), root (directory holding wrangler.toml; the repo),
 * miniflare (extra Miniflare options, e.g. a Log).
 */
export async function startRuntime({
  host = '127.0.0.1',
  port = 0,
  persistDir,
  vars = {},
  log = () => {},
  root = ROOT,
  miniflare = {},
  // Bindings that exist only on Cloudflare (Workers AI), provided by local modules for tests:
  // binding name → path of a module whose default export makes the binding from its env. A
  // stand-in may also take the place of one of the Worker's R2 buckets (to make it fail): its
  // env has the Worker's buckets.
  standIns = {},
} = {}) {
  if (!persistDir) throw new Error('startRuntime: persistDir is required');
  persistDir = resolve(persistDir);
  mkdirSync(persistDir, { recursive: true });
  const config = readWranglerConfig(root);
  const { options, unmapped } = miniflareOptionsFromConfig(config, {
    root,
    // workerd keeps alarms in memory: the Worker wakes every object once after a start.
    bindings: { TOKEN_SECRET: loadTokenSecret(persistDir), RECOVER_ALARMS_ON_START: 'true', ...vars },
  });
  if (!existsSync(options.scriptPath)) {
    throw new Error(`${options.scriptPath} does not exist: build the Worker first (npm run build)`);
  }
  if (options.assets && !existsSync(options.assets.directory)) {
    // git does not keep empty directories; an empty assets directory is still valid.
    mkdirSync(options.assets.directory, { recursive: true });
  }
  const shared = {
    host,
    port,
    defaultPersistRoot: join(persistDir, 'v3'),
    // No request.cf from the internet: locally there is no edge to say where a visitor is.
    cf: {},
  };
  const helpers = Object.entries(standIns).map(([binding, scriptPath]) => ({
    binding,
    worker: { name: `standin-${binding.toLowerCase()}`, modules: true, scriptPath: resolve(scriptPath), r2Buckets: options.r2Buckets },
  }));
  const ownBuckets = Object.fromEntries(Object.entries(options.r2Buckets).filter(([b]) => !(b in standIns)));
  const mf = new Miniflare(helpers.length === 0
    ? { ...options, ...shared, ...miniflare }
    : {
      ...shared,
      workers: [
        {
          ...options,
          r2Buckets: ownBuckets,
          wrappedBindings: Object.fromEntries(helpers.map((h) => [h.binding, { scriptName: h.worker.name }])),
        },
        ...helpers.map((h) => h.worker),
      ],
      ...miniflare,
    });
  let disposed = false;
  const dispose = async () => {
    if (disposed) return;
    disposed = true;
    await mf.dispose();
  };
  try {
    const ready = await mf.ready;
    const d1 = await mf.getD1Database('DB');
    persistDirOf.set(d1, persistDir);
    const db = d1Config(config, 'DB');
    await applyMigrations(d1, resolve(root, db.migrations_dir ?? 'migrations'), log);
    const realPort = Number(ready.port);
    // The first request has the Worker wake every site and open conversation (src/recovery.rs):
    // workerd forgot their alarms when its last process ended. In the background.
    fetch(`${ready.origin}/healthz`).then((r) => r.arrayBuffer()).catch(() => {});
    return { mf, url: ready.origin, port: realPort, d1, persistDir, unmapped, dispose };
  } catch (e) {
    await dispose().catch(() => {});
    throw e;
  }
}
