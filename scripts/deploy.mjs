// `npm run deploy`: a guided deploy to Cloudflare with wrangler.
//
//   npm run deploy                       check, create what is missing, migrate, deploy
//   npm run deploy -- --dry-run          offline: check the bindings, build the bundle with
//                                        `wrangler deploy --dry-run`, report its size; no account needed
//   npm run deploy -- --no-build         use the Worker already in build/ (skip scripts/build.mjs)
//   npm run deploy -- --yes              do not ask before creating resources
//
// What a real run does, in order (every step checks first, so later runs only do what is new):
//   1. offline checks: every binding the code uses is declared in wrangler.toml
//   2. `wrangler whoami`: signed in (wrangler login) or CLOUDFLARE_API_TOKEN set
//   3. the D1 database of wrangler.toml: found by name (`wrangler d1 list --json`) or created
//      (`wrangler d1 create`); its id goes into .parley/deploy/wrangler.toml, a copy of
//      wrangler.toml used for every wrangler command here (wrangler.toml keeps its placeholder:
//      the local runtime keys its D1 files by that id, so editing it would hide local data)
//   4. the R2 bucket: found (`wrangler r2 bucket list`) or created
//   5. `wrangler d1 migrations apply DB --remote`: new migrations go first, before new code
//   6. TOKEN_SECRET: if the Worker has none yet (`wrangler secret list`), one is taken from the
//      environment, asked for, or generated, and uploaded with the deploy (--secrets-file)
//   7. `wrangler deploy` (its [build] step runs scripts/build.mjs)
//   8. with PARLEY_ADMIN_EMAIL and PARLEY_ADMIN_PASSWORD set and no team in the remote D1 yet:
//      the first team, its owner and a site (PARLEY_SITE_ORIGINS), as `npm run serve` does
//
// The wrangler binary is node_modules/.bin/wrangler unless WRANGLER names another.
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
import { createInterface } from 'node:readline/promises';
import { pathToFileURL } from 'node:url';
import { gzipSync } from 'node:zlib';
import { stringify as toToml } from 'smol-toml';
import { readWranglerConfig } from './runtime.mjs';
import { bootstrapFromEnv, bootstrapStatements, UsageError } from './serve.mjs';
import { ROOT } from './setup.mjs';

/** Secrets the Worker reads that are not [vars] (set with `wrangler secret put`). */
export const SECRETS = ['TOKEN_SECRET'];
/**
 * Settings the Worker may read that only private deployments set (scripts/serve.mjs passes
 * them): absent on Cloudflare by design, so not required in wrangler.toml.
 */
export const PRIVATE_ONLY_VARS = ['PARLEY_RESTORE_ID'];
/** Cloudflare's limits on a Worker's compressed size (free and paid plans). */
export const SIZE_LIMIT_FREE = 3 * 1024 * 1024;
export const SIZE_LIMIT_PAID = 10 * 1024 * 1024;
export const PLACEHOLDER_ID = '00000000-0000-0000-0000-000000000000';
/** Where the generated wrangler.toml (with the real database id) is kept. */
export const DEPLOY_DIR = process.env.PARLEY_DEPLOY_DIR || join(ROOT, '.parley', 'deploy');

export class DeployError extends Error {}

// ---------------------------------------------------------------------------------------------
// Offline checks: bindings the code uses versus the ones wrangler.toml declares

function rustFiles(dir) {
  const out = [];
  if (!existsSync(dir)) return out;
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...rustFiles(p));
    else if (name.endsWith('.rs')) out.push(p);
  }
  return out;
}

/** Rust source without comments (so a binding named in a comment does not count). */
function stripComments(src) {
  return src.replace(/\/\*[\s\S]*?\*\//g, ' ').replace(/(^|[^:"])\/\/.*$/gm, '$1');
}

const BINDING_CALLS = {
  d1: /\.d1\(\s*([^)]*?)\s*\)/g,
  durable_object: /\.durable_object\(\s*([^)]*?)\s*\)/g,
  bucket: /\.bucket\(\s*([^)]*?)\s*\)/g,
  assets: /\.assets\(\s*([^)]*?)\s*\)/g,
  kv: /\.kv\(\s*([^)]*?)\s*\)/g,
  service: /\.service\(\s*([^)]*?)\s*\)/g,
  queue: /\.queue\(\s*([^)]*?)\s*\)/g,
  var: /\.(?:var|secret|object_var)\(\s*([^)]*?)\s*\)/g,
};

/**
 * Bindings used by the Rust sources under dir: { d1, durable_object, bucket, assets, kv,
 * service, queue, var } → Map(name → [file:line]), plus `unresolved` call sites whose name is
 * neither a string literal nor a `const NAME: &str = "…"` of the sources. Settings read through
 * a helper taking the env and a literal (`text(env, "REPLAY_WINDOW")`) count as vars.
 */
export function usedBindings(dir = join(ROOT, 'src')) {
  const files = rustFiles(dir).map((f) => ({ f, src: stripComments(readFileSync(f, 'utf8')) }));
  const consts = new Map();
  for (const { src } of files) {
    for (const m of src.matchAll(/\bconst\s+([A-Z][A-Z0-9_]*)\s*:\s*&(?:'static\s+)?str\s*=\s*"([^"]*)"\s*;/g)) consts.set(m[1], m[2]);
  }
  const used = Object.fromEntries(Object.keys(BINDING_CALLS).map((k) => [k, new Map()]));
  used.unresolved = [];
  const add = (kind, name, where) => {
    if (!used[kind].has(name)) used[kind].set(name, []);
    used[kind].get(name).push(where);
  };
  for (const { f, src } of files) {
    const lineOf = (index) => src.slice(0, index).split('\n').length;
    const rel = f.slice(ROOT.length + 1);
    for (const [kind, re] of Object.entries(BINDING_CALLS)) {
      for (const m of src.matchAll(re)) {
        const arg = m[1].trim();
        const where = `${rel}:${lineOf(m.index)}`;
        const lit = /^"([^"]*)"$/.exec(arg);
        if (lit) add(kind, lit[1], where);
        else if (consts.has(arg.replace(/^(?:crate::|self::|super::)?(?:\w+::)*/, ''))) add(kind, consts.get(arg.replace(/^(?:crate::|self::|super::)?(?:\w+::)*/, '')), where);
        else if (kind === 'var' && arg === 'name') { /* the generic helper itself (config.rs) */ }
        else if (arg !== '') used.unresolved.push({ kind, arg, where });
      }
    }
    // Settings read through helpers: text(env, "X"), number(&self.env, "X", …), rate(env, "X", …)
    for (const m of src.matchAll(/\b[a-z_]+\(\s*&?(?:self\.|ctx\.)?env\s*,\s*"([A-Z][A-Z0-9_]*)"/g)) {
      add('var', m[1], `${rel}:${lineOf(m.index)}`);
    }
  }
  return used;
}

/** Bindings wrangler.toml declares, in the same shape (Sets). */
export function declaredBindings(config, secrets = SECRETS) {
  return {
    d1: new Set((config.d1_databases ?? []).map((d) => d.binding)),
    durable_object: new Set((config.durable_objects?.bindings ?? []).map((b) => b.name)),
    bucket: new Set((config.r2_buckets ?? []).map((b) => b.binding)),
    assets: new Set(config.assets?.binding ? [config.assets.binding] : []),
    kv: new Set((config.kv_namespaces ?? []).map((b) => b.binding)),
    service: new Set((config.services ?? []).map((b) => b.binding)),
    queue: new Set((config.queues?.producers ?? []).map((b) => b.binding)),
    var: new Set([...Object.keys(config.vars ?? {}), ...secrets, ...PRIVATE_ONLY_VARS]),
  };
}

/**
 * Compare: { missing: [{kind, name, where}], unused: [{kind, name}], unresolved, used, declared }.
 * `missing` breaks the deployed Worker at run time; `unused` is only untidy.
 */
export function checkBindings({ root = ROOT, config = readWranglerConfig(root), srcDir = join(root, 'src') } = {}) {
  const used = usedBindings(srcDir);
  const declared = declaredBindings(config);
  const missing = [];
  const unused = [];
  for (const kind of Object.keys(BINDING_CALLS)) {
    for (const [name, where] of used[kind]) if (!declared[kind].has(name)) missing.push({ kind, name, where });
    for (const name of declared[kind]) {
      if (!used[kind].has(name) && !PRIVATE_ONLY_VARS.includes(name)) unused.push({ kind, name });
    }
  }
  return { missing, unused, unresolved: used.unresolved, used, declared };
}

/** Durable Object classes of wrangler.toml that a built entry module does not export. */
export function missingClassExports(config, entryJs) {
  const src = readFileSync(entryJs, 'utf8');
  const exported = new Set();
  for (const m of src.matchAll(/export\s*\{([^}]*)\}/g)) {
    for (const part of m[1].split(',')) {
      const name = part.trim().split(/\s+as\s+/).pop();
      if (name) exported.add(name);
    }
  }
  for (const m of src.matchAll(/export\s+(?:class|const|let|var|function)\s+([A-Za-z_$][\w$]*)/g)) exported.add(m[1]);
  return (config.durable_objects?.bindings ?? []).map((b) => b.class_name).filter((c) => !exported.has(c));
}

// ---------------------------------------------------------------------------------------------
// The deploy configuration

/**
 * wrangler.toml as an object for a config file living elsewhere: paths made absolute, the D1
 * database id filled in, and without the [build] step when build is false.
 */
export function deployConfig(config, { root = ROOT, databaseId, build = true } = {}) {
  const c = structuredClone(config);
  const abs = (p) => (isAbsolute(p) ? p : join(root, p));
  c.main = abs(c.main);
  if (c.assets?.directory) c.assets.directory = abs(c.assets.directory);
  for (const db of c.d1_databases ?? []) {
    db.migrations_dir = abs(db.migrations_dir ?? 'migrations');
    if (databaseId && db.binding === 'DB') db.database_id = databaseId;
  }
  if (!build) delete c.build;
  else if (c.build) c.build.cwd = abs(c.build.cwd ?? '.');
  return c;
}

export function writeConfig(config, dir) {
  mkdirSync(dir, { recursive: true });
  const file = join(dir, 'wrangler.toml');
  writeFileSync(file, '# Generated by scripts/deploy.mjs from wrangler.toml: do not edit; edit wrangler.toml.\n' + toToml(config) + '\n');
  return file;
}

// ---------------------------------------------------------------------------------------------
// Parsing wrangler's output

const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/i;

/** The database id in `wrangler d1 create` output (TOML or JSON snippet), or null. */
export function parseD1Create(output) {
  const m = new RegExp(`"?database_id"?\\s*[=:]\\s*"(${UUID.source})"`, 'i').exec(output);
  return m ? m[1] : null;
}

/**
 * The first JSON value opening with `open` ('[' or '{') in output that parses to the end of its
 * last closing bracket: wrangler may print warnings ("▲ [WARNING] …") around its JSON.
 */
export function extractJson(output, open = '[') {
  const close = open === '[' ? ']' : '}';
  const end = output.lastIndexOf(close);
  for (let start = output.indexOf(open); start !== -1 && start < end; start = output.indexOf(open, start + 1)) {
    try { return JSON.parse(output.slice(start, end + 1)); } catch { /* not here */ }
  }
  return undefined;
}

/** `wrangler d1 list --json` → [{ name, uuid }]. */
export function parseD1List(output) {
  const list = extractJson(output, '[');
  if (!Array.isArray(list)) throw new DeployError(`cannot read \`wrangler d1 list --json\` output: ${output.slice(0, 200)}`);
  return list.map((d) => ({ name: d.name, uuid: d.uuid ?? d.id }));
}

/** Bucket names in `wrangler r2 bucket list` output ("name:  parley-attachments" blocks). */
export function parseR2BucketList(output) {
  return [...output.matchAll(/^name:\s+(\S+)\s*$/gm)].map((m) => m[1]);
}

/** `wrangler whoami --json` → { loggedIn, email, accounts } or null. */
export function parseWhoami(output) {
  const me = extractJson(output, '{');
  return me && typeof me === 'object' ? me : null;
}

/** Secret names in `wrangler secret list` output (JSON), or null when there is no list. */
export function parseSecretList(output) {
  const list = extractJson(output, '[');
  return Array.isArray(list) ? list.map((s) => s.name) : null;
}

/** A SQL literal: numbers as they are, text single-quoted with quotes doubled, null as NULL. */
export function sqlLiteral(v) {
  if (v === null || v === undefined) return 'NULL';
  if (typeof v === 'number' && Number.isFinite(v)) return String(v);
  return `'${String(v).replace(/'/g, "''")}'`;
}

/** A statement with `?` placeholders and its parameters → one SQL string. */
export function renderSql(sql, params) {
  let i = 0;
  const out = sql.replace(/\?/g, () => {
    if (i >= params.length) throw new DeployError(`too few parameters for: ${sql}`);
    return sqlLiteral(params[i++]);
  });
  if (i !== params.length) throw new DeployError(`too many parameters for: ${sql}`);
  return out;
}

/** Gzip size of what wrangler would upload from a --dry-run --outdir (modules, not maps). */
export function bundleSizes(outdir) {
  const files = readdirSync(outdir).filter((f) => !f.endsWith('.map') && f !== 'README.md' && statSync(join(outdir, f)).isFile());
  let raw = 0;
  let gzip = 0;
  const each = files.map((f) => {
    const data = readFileSync(join(outdir, f));
    const gz = gzipSync(data, { level: 9 }).length;
    raw += data.length;
    gzip += gz;
    return { file: f, bytes: data.length, gzip: gz };
  });
  return { files: each, raw, gzip };
}

const kib = (n) => `${(n / 1024).toFixed(1)} KiB`;

// ---------------------------------------------------------------------------------------------
// Running wrangler

export function wranglerBin() {
  return process.env.WRANGLER || join(ROOT, 'node_modules', '.bin', 'wrangler');
}

/** Run wrangler and capture its output: { code, stdout, stderr }. */
export function wranglerCapture(args, { env = {} } = {}) {
  const r = spawnSync(wranglerBin(), args, {
    cwd: ROOT, encoding: 'utf8', env: { ...process.env, ...env }, maxBuffer: 64 * 1024 * 1024,
  });
  if (r.error) throw new DeployError(`cannot run wrangler (${wranglerBin()}): ${r.error.message}`);
  return { code: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

/** Run wrangler with the terminal attached (it may prompt); rejects on a non-zero exit. */
export function wranglerInteractive(args, { env = {} } = {}) {
  return new Promise((res, rej) => {
    const child = spawn(wranglerBin(), args, { cwd: ROOT, stdio: 'inherit', env: { ...process.env, ...env } });
    child.on('error', (e) => rej(new DeployError(`cannot run wrangler: ${e.message}`)));
    child.on('close', (code) => (code === 0 ? res() : rej(new DeployError(`\`wrangler ${args.join(' ')}\` failed (exit ${code})`))));
  });
}

async function ask(question) {
  const rl = createInterface({ input: process.stdin, output: process.stdout });
  try { return (await rl.question(question)).trim(); } finally { rl.close(); }
}

// ---------------------------------------------------------------------------------------------
// The deploy

/** Offline checks shared by the dry run and the real deploy; throws DeployError on failure. */
export function preflight({ config, say }) {
  const report = checkBindings({ config });
  if (report.unresolved.length) {
    throw new DeployError(`cannot tell which binding these calls use (not a string literal or a const): ${report.unresolved.map((u) => `${u.arg} at ${u.where}`).join(', ')}`);
  }
  if (report.missing.length) {
    throw new DeployError(`the code uses bindings wrangler.toml does not declare:\n${report.missing.map((m) => `  ${m.kind} "${m.name}" (${m.where.join(', ')})`).join('\n')}`);
  }
  for (const u of report.unused) say(`note: wrangler.toml declares ${u.kind} "${u.name}", which the code does not use`);
  say(`bindings: every binding the code uses is declared (${Object.keys(BINDING_CALLS).map((k) => `${k} ${report.used[k].size}`).join(', ')})`);
  return report;
}

/**
 * `wrangler deploy --dry-run --outdir`: builds (unless build is false) and bundles without an
 * account or network. Resolves to { outdir, sizes, configFile }.
 */
export async function dryRun({ build = false, outdir, say = console.log, env = {} } = {}) {
  const config = readWranglerConfig(ROOT);
  preflight({ config, say });
  const work = mkdtempSync(join(tmpdir(), 'parley-deploy-'));
  outdir = resolve(outdir ?? join(work, 'out'));
  const configFile = writeConfig(deployConfig(config, { build }), work);
  if (!build && !existsSync(config.main ? join(ROOT, config.main) : '')) {
    throw new DeployError(`${config.main} is missing: build first (node scripts/setup.mjs) or drop --no-build`);
  }
  const offline = { WRANGLER_SEND_METRICS: 'false', WRANGLER_HIDE_BANNER: 'true', CI: '1', ...env };
  const r = wranglerCapture(['deploy', '--dry-run', '--outdir', outdir, '--config', configFile], { env: offline });
  if (r.code !== 0) throw new DeployError(`wrangler deploy --dry-run failed (exit ${r.code}):\n${r.stdout}\n${r.stderr}`);
  const sizes = bundleSizes(outdir);
  const missingClasses = missingClassExports(config, join(outdir, readdirSync(outdir).find((f) => f.endsWith('.js') && !f.endsWith('.map')) ?? 'index.js'));
  if (missingClasses.length) throw new DeployError(`the bundle does not export Durable Object classes ${missingClasses.join(', ')}`);
  say(`bundle: ${sizes.files.map((f) => `${f.file} ${kib(f.bytes)}`).join(', ')}`);
  say(`bundle: ${kib(sizes.raw)} raw, ${kib(sizes.gzip)} gzip — free plan limit ${kib(SIZE_LIMIT_FREE)} (${sizes.gzip <= SIZE_LIMIT_FREE ? 'fits' : 'TOO BIG'}), paid ${kib(SIZE_LIMIT_PAID)} (${sizes.gzip <= SIZE_LIMIT_PAID ? 'fits' : 'TOO BIG'})`);
  const wranglerSays = /Total Upload:\s*([\d.]+ KiB)\s*\/\s*gzip:\s*([\d.]+ KiB)/.exec(r.stdout);
  if (wranglerSays) say(`wrangler reports: total upload ${wranglerSays[1]}, gzip ${wranglerSays[2]}`);
  if (sizes.gzip > SIZE_LIMIT_PAID) throw new DeployError(`the bundle is ${kib(sizes.gzip)} gzip, over Cloudflare's ${kib(SIZE_LIMIT_PAID)} limit`);
  return { outdir, sizes, configFile, stdout: r.stdout, work };
}

/** The guided deploy. Options: build, yes (no questions), say. */
export async function deploy({ build = true, yes = false, say = console.log } = {}) {
  const interactive = process.stdin.isTTY && process.stdout.isTTY && !yes;
  const config = readWranglerConfig(ROOT);
  preflight({ config, say });

  // 2. Signed in?
  const who = wranglerCapture(['whoami', '--json']);
  const me = parseWhoami(who.stdout);
  if (who.code !== 0 || !me?.loggedIn) {
    throw new DeployError('wrangler is not signed in: run `npx wrangler login`, or set CLOUDFLARE_API_TOKEN (and CLOUDFLARE_ACCOUNT_ID) for a non-interactive deploy');
  }
  const accounts = me.accounts ?? [];
  if (accounts.length > 1 && !process.env.CLOUDFLARE_ACCOUNT_ID && !config.account_id) {
    throw new DeployError(`this login can use ${accounts.length} accounts; choose one with CLOUDFLARE_ACCOUNT_ID:\n${accounts.map((a) => `  ${a.id}  ${a.name}`).join('\n')}`);
  }
  say(`signed in${me.email ? ` as ${me.email}` : ''}${accounts.length === 1 ? ` (account ${accounts[0].name})` : ''}`);

  // 3. D1
  const db = (config.d1_databases ?? []).find((d) => d.binding === 'DB');
  if (!db) throw new DeployError('wrangler.toml has no [[d1_databases]] with binding = "DB"');
  const list = wranglerCapture(['d1', 'list', '--json']);
  if (list.code !== 0) throw new DeployError(`wrangler d1 list failed:\n${list.stdout}${list.stderr}`);
  const existing = parseD1List(list.stdout).find((d) => d.name === db.database_name);
  let databaseId = existing?.uuid ?? null;
  if (databaseId) {
    say(`D1 database "${db.database_name}": exists (${databaseId})`);
  } else {
    if (interactive && !/^y|^$/i.test(await ask(`Create the D1 database "${db.database_name}"? [Y/n] `))) throw new DeployError('stopped: no D1 database');
    const created = wranglerCapture(['d1', 'create', db.database_name]);
    if (created.code !== 0) throw new DeployError(`wrangler d1 create failed:\n${created.stdout}${created.stderr}`);
    databaseId = parseD1Create(created.stdout)
      ?? parseD1List(wranglerCapture(['d1', 'list', '--json']).stdout).find((d) => d.name === db.database_name)?.uuid;
    if (!databaseId) throw new DeployError(`created the D1 database but could not read its id from:\n${created.stdout}`);
    say(`D1 database "${db.database_name}": created (${databaseId})`);
  }
  if (db.database_id && db.database_id !== PLACEHOLDER_ID && db.database_id !== databaseId) {
    throw new DeployError(`wrangler.toml names D1 database id ${db.database_id}, but "${db.database_name}" in this account is ${databaseId}`);
  }
  const configFile = writeConfig(deployConfig(config, { databaseId, build }), DEPLOY_DIR);
  if (db.database_id !== databaseId) {
    say(`wrote ${configFile} (wrangler.toml with database_id = "${databaseId}"); every wrangler command here uses it.`);
    say('  To run plain `wrangler` commands instead, set that database_id in wrangler.toml [[d1_databases]]; note the local');
    say('  runtime (npm start, npm run serve) keys its D1 file by the id, so local data would start empty.');
  }
  const withConfig = ['--config', configFile];

  // 4. R2
  for (const bucket of config.r2_buckets ?? []) {
    const buckets = wranglerCapture(['r2', 'bucket', 'list']);
    if (buckets.code !== 0) throw new DeployError(`wrangler r2 bucket list failed:\n${buckets.stdout}${buckets.stderr}`);
    if (parseR2BucketList(buckets.stdout).includes(bucket.bucket_name)) {
      say(`R2 bucket "${bucket.bucket_name}": exists`);
      continue;
    }
    if (interactive && !/^y|^$/i.test(await ask(`Create the R2 bucket "${bucket.bucket_name}"? [Y/n] `))) throw new DeployError('stopped: no R2 bucket');
    const created = wranglerCapture(['r2', 'bucket', 'create', bucket.bucket_name]);
    if (created.code !== 0) throw new DeployError(`wrangler r2 bucket create failed:\n${created.stdout}${created.stderr}`);
    say(`R2 bucket "${bucket.bucket_name}": created`);
  }

  // 5. Migrations first: the running (old) code keeps working on the new schema, which is why
  // migrations only add (see docs/operations.md).
  say(`D1 migrations: applying new ones to "${db.database_name}" (remote)`);
  await wranglerInteractive(['d1', 'migrations', 'apply', db.database_name, '--remote', ...withConfig]);

  // 6. Secrets
  const secretList = wranglerCapture(['secret', 'list', ...withConfig]);
  let have;
  if (secretList.code === 0) {
    have = parseSecretList(secretList.stdout);
    // Never guess here: uploading TOKEN_SECRET over an existing one signs everyone out.
    if (!have) throw new DeployError(`cannot read \`wrangler secret list\` output:\n${secretList.stdout}`);
  } else if (/not found/i.test(secretList.stdout + secretList.stderr)) {
    have = []; // a first deploy: the Worker does not exist yet
  } else {
    throw new DeployError(`wrangler secret list failed:\n${secretList.stdout}${secretList.stderr}`);
  }
  const secrets = {};
  if (!have.includes('TOKEN_SECRET')) {
    let value = process.env.TOKEN_SECRET || '';
    if (!value && interactive) value = await ask('TOKEN_SECRET is not set for the Worker. Paste one (at least 32 characters) or press Enter to generate one: ');
    if (!value) value = randomBytes(32).toString('hex');
    if (value.length < 32) throw new DeployError('TOKEN_SECRET must be at least 32 characters');
    secrets.TOKEN_SECRET = value;
    say('TOKEN_SECRET: will be set with this deploy (it is not printed or stored; rotating it later with `wrangler secret put TOKEN_SECRET` signs everyone out)');
  } else {
    say('TOKEN_SECRET: already set');
  }

  // 7. Deploy
  const args = ['deploy', ...withConfig];
  let secretsDir = null;
  if (Object.keys(secrets).length) {
    secretsDir = mkdtempSync(join(tmpdir(), 'parley-secrets-'));
    const file = join(secretsDir, 'secrets.json');
    writeFileSync(file, JSON.stringify(secrets), { mode: 0o600 });
    args.push('--secrets-file', file);
  }
  try {
    await wranglerInteractive(args);
  } finally {
    if (secretsDir) rmSync(secretsDir, { recursive: true, force: true });
  }
  say('deployed');

  // 8. The first owner, on an empty remote D1.
  let boot;
  try {
    boot = bootstrapFromEnv(process.env);
  } catch (e) {
    if (e instanceof UsageError) throw new DeployError(e.message);
    throw e;
  }
  if (!boot) {
    say('no PARLEY_ADMIN_EMAIL / PARLEY_ADMIN_PASSWORD: no owner account created (set them and run again; see docs/operations.md, "Cloudflare")');
  } else {
    const count = wranglerCapture(['d1', 'execute', db.database_name, '--remote', '--json', '--command', 'SELECT count(*) AS n FROM teams', ...withConfig]);
    const teams = extractJson(count.stdout, '[')?.[0]?.results?.[0]?.n;
    if (count.code !== 0 || typeof teams !== 'number') throw new DeployError(`cannot count the teams in the remote D1:\n${count.stdout}${count.stderr}`);
    if (teams > 0) {
      say('owner: the remote database already has a team; PARLEY_ADMIN_* only apply to an empty one');
    } else {
      const b = bootstrapStatements(boot);
      const sqlDir = mkdtempSync(join(tmpdir(), 'parley-bootstrap-'));
      const file = join(sqlDir, 'bootstrap.sql');
      try {
        // A file, not --command: the password hash stays out of the process list.
        writeFileSync(file, b.statements.map(([q, p]) => renderSql(q, p)).join(';\n') + ';\n', { mode: 0o600 });
        const r = wranglerCapture(['d1', 'execute', db.database_name, '--remote', '--yes', '--file', file, ...withConfig]);
        if (r.code !== 0) throw new DeployError(`creating the owner failed:\n${r.stdout}${r.stderr}`);
      } finally {
        rmSync(sqlDir, { recursive: true, force: true });
      }
      say(`owner: created ${b.email} and a site; embed with <script src="https://YOUR-WORKER-HOST/widget.js" data-site="${b.siteKey}" async></script>`);
    }
  }
  return { databaseId, configFile };
}

export function parseDeployArgs(argv) {
  const opts = { dryRun: false, build: true, yes: false, outdir: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--dry-run') opts.dryRun = true;
    else if (a === '--no-build') opts.build = false;
    else if (a === '--yes' || a === '-y') opts.yes = true;
    else if (a === '--outdir') opts.outdir = argv[++i];
    else if (a.startsWith('--outdir=')) opts.outdir = a.slice('--outdir='.length);
    else throw new DeployError(`unknown option ${a}`);
  }
  return opts;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  (async () => {
    const opts = parseDeployArgs(process.argv.slice(2));
    const say = (m) => console.log(`[deploy] ${m}`);
    if (opts.dryRun) {
      const r = await dryRun({ build: opts.build, outdir: opts.outdir, say });
      say(`dry run done: bundle in ${r.outdir}. A real run would also: check \`wrangler whoami\`, find or create the D1 database and R2 bucket, apply migrations remotely, set TOKEN_SECRET if missing, and deploy.`);
      if (opts.outdir) rmSync(r.configFile, { force: true });
      else rmSync(r.work, { recursive: true, force: true });
    } else {
      await deploy({ build: opts.build, yes: opts.yes, say });
    }
  })().catch((e) => {
    console.error(`[deploy] ${e instanceof DeployError ? '' : 'failed: '}${e.message}`);
    process.exit(1);
  });
}
