// Cloudflare deploy (issue 8): the Worker bundles with `wrangler deploy --dry-run` offline, fits
// Cloudflare's size limits, declares every binding the code uses and exports every Durable
// Object class; and `npm run deploy`'s guided flow, driven against a stand-in wrangler (no
// account or network here), creates what is missing on a first run and only migrates and deploys
// on later ones.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { parse as parseToml } from 'smol-toml';
import {
  checkBindings, missingClassExports, parseD1Create, parseD1List, parseR2BucketList,
  parseSecretList, parseWhoami, SIZE_LIMIT_FREE, SIZE_LIMIT_PAID, usedBindings,
} from '../scripts/deploy.mjs';
import { readWranglerConfig } from '../scripts/runtime.mjs';
import { tempDir } from './support/server.mjs';

const ROOT = dirname(dirname(fileURLToPath(import.meta.url)));
const DEPLOY = join(ROOT, 'scripts', 'deploy.mjs');

/** Environment under which wrangler cannot reach anything but loopback, and does not try. */
function offlineEnv(dir) {
  return {
    WRANGLER_SEND_METRICS: 'false',
    WRANGLER_HIDE_BANNER: 'true', // the banner is what runs wrangler's update check
    CI: '1',
    WRANGLER_LOG_PATH: join(dir, 'wrangler-logs'),
    XDG_CONFIG_HOME: join(dir, 'xdg'),
    HTTPS_PROXY: 'http://127.0.0.1:9', // anything that still tried would fail at once, on loopback
    HTTP_PROXY: 'http://127.0.0.1:9',
    npm_config_registry: 'http://127.0.0.1:9/',
  };
}

function run(args, { env = {}, timeoutMs = 120_000 } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [DEPLOY, ...args], {
      cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c) => { stdout += c; });
    child.stderr.on('data', (c) => { stderr += c; });
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`deploy ${args.join(' ')} timed out\n${stdout}\n${stderr}`)); }, timeoutMs);
    child.on('close', (code) => { clearTimeout(timer); resolve({ code, stdout, stderr }); });
  });
}

test('wrangler deploy --dry-run bundles the built Worker offline, within Cloudflare\'s size limits', async () => {
  const dir = tempDir('deploy-');
  const outdir = join(dir, 'out');
  const r = await run(['--dry-run', '--no-build', '--outdir', outdir], { env: offlineEnv(dir) });
  assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
  const gzip = /bundle: ([\d.]+) KiB raw, ([\d.]+) KiB gzip/.exec(r.stdout);
  assert.ok(gzip, r.stdout);
  const gzipBytes = Number(gzip[2]) * 1024;
  console.log(`# bundle: ${gzip[1]} KiB raw, ${gzip[2]} KiB gzip; free plan limit ${SIZE_LIMIT_FREE / 1024} KiB (${(100 * gzipBytes / SIZE_LIMIT_FREE).toFixed(0)}% used), paid ${SIZE_LIMIT_PAID / 1024} KiB`);
  assert.ok(gzipBytes < SIZE_LIMIT_PAID, `gzip size ${gzip[2]} KiB is over the 10 MiB limit`);
  assert.match(r.stdout, /wrangler reports: total upload [\d.]+ KiB, gzip [\d.]+ KiB/);
  // The bundle: the entry module and the wasm, with every Durable Object class exported.
  assert.ok(existsSync(join(outdir, 'index.js')));
  const config = readWranglerConfig(ROOT);
  assert.deepEqual(missingClassExports(config, join(outdir, 'index.js')), []);
  assert.deepEqual(missingClassExports(config, join(ROOT, config.main)), []);
  // The checked-in wrangler.toml was not touched, and nothing was left in the repo.
  assert.ok(!existsSync(join(dir, 'xdg', '.wrangler', 'config', 'default.toml')), 'no login state was created');
});

test('every binding the code uses is declared in wrangler.toml', () => {
  const report = checkBindings();
  assert.deepEqual(report.unresolved, [], 'every binding name is a literal or a const');
  assert.deepEqual(report.missing, [], `undeclared: ${JSON.stringify(report.missing)}`);
  // The scan sees what the code is known to use.
  assert.ok(report.used.d1.has('DB'));
  for (const name of ['CONVERSATION', 'SITE', 'LIMITER']) assert.ok(report.used.durable_object.has(name), name);
  assert.ok(report.used.assets.has('ASSETS'));
  assert.ok(report.used.var.has('TOKEN_SECRET'));
  assert.ok(report.used.var.has('REPLAY_WINDOW'));
  if (report.unused.length) console.log(`# declared but unused: ${report.unused.map((u) => `${u.kind} ${u.name}`).join(', ')}`);
});

test('the binding check catches an undeclared binding', () => {
  const src = join(tempDir('deploy-src-'), 'src');
  mkdirSync(src);
  writeFileSync(join(src, 'lib.rs'), `
    const QUEUE_DB: &str = "AUDIT";
    fn f(env: &Env) {
      let a = env.d1("DB");
      let b = env.d1(QUEUE_DB);
      let c = env.bucket("UPLOADS"); // env.bucket("IN_A_COMMENT") is not a use
      let d = env.var("SOME_SETTING");
      let e = number(env, "OTHER_SETTING", 5);
    }
  `);
  const used = usedBindings(src);
  assert.deepEqual([...used.d1.keys()].sort(), ['AUDIT', 'DB']);
  assert.deepEqual([...used.bucket.keys()], ['UPLOADS']);
  assert.deepEqual([...used.var.keys()].sort(), ['OTHER_SETTING', 'SOME_SETTING']);
  const report = checkBindings({ srcDir: src, config: readWranglerConfig(ROOT) });
  assert.deepEqual(report.missing.map((m) => `${m.kind} ${m.name}`).sort(), ['bucket UPLOADS', 'd1 AUDIT', 'var OTHER_SETTING', 'var SOME_SETTING']);
});

test('wrangler output parsers', () => {
  const created = `✅ Successfully created DB 'parley' in region WEUR
Created your new D1 database.

To access your new D1 Database in your Worker, add the following snippet to your configuration file:
[[d1_databases]]
binding = "parley"
database_name = "parley"
database_id = "7d5f1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b"
`;
  assert.equal(parseD1Create(created), '7d5f1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b');
  assert.equal(parseD1Create('{"d1_databases":[{"binding":"DB","database_name":"parley","database_id":"7d5f1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b"}]}'), '7d5f1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b');
  assert.equal(parseD1Create('no id here'), null);
  assert.deepEqual(parseD1List('[\n {"uuid":"a-b","name":"parley","created_at":"x"}\n]'), [{ name: 'parley', uuid: 'a-b' }]);
  assert.deepEqual(parseR2BucketList('Listing buckets...\nname:           parley-attachments\ncreation_date:  2026-01-01T00:00:00.000Z\n\nname:           other\ncreation_date:  x\n'), ['parley-attachments', 'other']);
  assert.deepEqual(parseSecretList('[\n  {\n    "name": "TOKEN_SECRET",\n    "type": "secret_text"\n  }\n]'), ['TOKEN_SECRET']);
  assert.equal(parseSecretList('✘ [ERROR] Worker "parley" not found.'), null);
  assert.deepEqual(parseWhoami('{"loggedIn":true,"email":"a@b.c","accounts":[{"id":"1","name":"A"}]}').accounts, [{ id: '1', name: 'A' }]);
});

/** A stand-in for wrangler: records every call, answers like wrangler from a state file. */
function fakeWrangler(dir) {
  const bin = join(dir, 'wrangler');
  writeFileSync(bin, `#!${process.execPath}
const fs = require('node:fs');
const stateFile = process.env.FAKE_WRANGLER_STATE;
const state = JSON.parse(fs.readFileSync(stateFile, 'utf8'));
const args = process.argv.slice(2);
const call = { args };
const opt = (name) => { const i = args.indexOf(name); return i === -1 ? null : args[i + 1]; };
const save = () => { state.calls.push(call); fs.writeFileSync(stateFile, JSON.stringify(state)); };
const pos = [];
for (let i = 0; i < args.length; i++) {
  if (['--config', '--secrets-file', '--outdir'].includes(args[i])) i++;
  else if (!args[i].startsWith('--')) pos.push(args[i]);
}
const cmd = pos.slice(0, 3).join(' ');
if (opt('--config')) call.database_id = /database_id = "([^"]+)"/.exec(fs.readFileSync(opt('--config'), 'utf8'))?.[1];
if (args[0] === 'whoami') {
  save();
  if (!state.loggedIn) { console.log(JSON.stringify({ loggedIn: false })); process.exit(1); }
  console.log(JSON.stringify({ loggedIn: true, email: 'ops@example.com', accounts: [{ id: 'acc1', name: 'Example' }] }));
} else if (cmd === 'd1 list') {
  save(); console.log(JSON.stringify(state.databases, null, 2));
} else if (cmd === 'd1 create parley') {
  state.databases.push({ uuid: '7d5f1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b', name: 'parley' }); save();
  console.log("✅ Successfully created DB 'parley'\\n[[d1_databases]]\\nbinding = \\"parley\\"\\ndatabase_name = \\"parley\\"\\ndatabase_id = \\"7d5f1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b\\"");
} else if (cmd === 'r2 bucket list') {
  save(); console.log('Listing buckets...\\n' + state.buckets.map((b) => 'name:           ' + b + '\\ncreation_date:  2026-01-01T00:00:00.000Z').join('\\n\\n'));
} else if (args[0] === 'r2' && args[2] === 'create') {
  state.buckets.push(args[3]); save(); console.log('Created bucket ' + args[3]);
} else if (cmd === 'd1 migrations apply') {
  call.remote = args.includes('--remote'); save(); console.log('Migrations applied');
} else if (cmd === 'secret list') {
  save();
  if (!state.deployed) { console.error('✘ [ERROR] Worker "parley" not found.'); process.exit(1); }
  console.log(JSON.stringify(state.secrets.map((name) => ({ name, type: 'secret_text' })), null, 2));
} else if (cmd === 'd1 execute parley') {
  call.remote = args.includes('--remote');
  if (opt('--command')) {
    call.command = opt('--command');
    save(); console.log(JSON.stringify([{ results: [{ n: state.teams }], success: true, meta: {} }]));
  } else {
    call.sql = fs.readFileSync(opt('--file'), 'utf8');
    call.sql_mode = (fs.statSync(opt('--file')).mode & 0o777).toString(8);
    state.teams += 1; save(); console.log('Executed');
  }
} else if (args[0] === 'deploy') {
  const file = opt('--secrets-file');
  if (file) {
    const secrets = JSON.parse(fs.readFileSync(file, 'utf8'));
    call.secret_names = Object.keys(secrets);
    call.token_secret_length = secrets.TOKEN_SECRET?.length ?? 0;
    call.secrets_file_mode = (fs.statSync(file).mode & 0o777).toString(8);
    state.secrets.push(...Object.keys(secrets));
  }
  state.deployed = true; save(); console.log('Deployed parley');
} else {
  save(); console.error('fake wrangler: unexpected ' + args.join(' ')); process.exit(2);
}
`);
  chmodSync(bin, 0o755);
  const stateFile = join(dir, 'state.json');
  const reset = (extra = {}) => writeFileSync(stateFile, JSON.stringify({ loggedIn: true, databases: [], buckets: [], secrets: [], deployed: false, teams: 0, calls: [], ...extra }));
  const read = () => JSON.parse(readFileSync(stateFile, 'utf8'));
  const clearCalls = () => { const s = read(); s.calls = []; writeFileSync(stateFile, JSON.stringify(s)); };
  return { bin, stateFile, reset, read, clearCalls };
}

test('npm run deploy: a first run creates D1, R2 and the secret; later runs migrate first and deploy', async () => {
  const dir = tempDir('deploy-flow-');
  const fake = fakeWrangler(dir);
  const deployDir = join(dir, 'deploy-config');
  const admin = { PARLEY_ADMIN_EMAIL: 'owner@example.com', PARLEY_ADMIN_PASSWORD: "it's a long password", PARLEY_SITE_ORIGINS: 'https://shop.example' };
  const env = {
    WRANGLER: fake.bin, FAKE_WRANGLER_STATE: fake.stateFile, PARLEY_DEPLOY_DIR: deployDir, TOKEN_SECRET: '', ...admin,
  };
  // Each call's command words (options and their values left out).
  const names = (calls) => calls.map((c) => {
    const words = [];
    for (let i = 0; i < c.args.length; i++) {
      if (['--config', '--secrets-file', '--outdir', '--command', '--file'].includes(c.args[i])) i++;
      else if (!c.args[i].startsWith('--')) words.push(c.args[i]);
    }
    return words.join(' ');
  });

  // Not signed in: stop before touching anything.
  fake.reset({ loggedIn: false });
  const out = await run(['--yes', '--no-build'], { env });
  assert.equal(out.code, 1);
  assert.match(out.stderr, /not signed in.*wrangler login/);
  assert.deepEqual(names(fake.read().calls), ['whoami']);

  // First deploy.
  fake.reset();
  const first = await run(['--yes', '--no-build'], { env });
  assert.equal(first.code, 0, `${first.stdout}\n${first.stderr}`);
  const calls = fake.read().calls;
  assert.deepEqual(names(calls), [
    'whoami', 'd1 list', 'd1 create parley', 'r2 bucket list', 'r2 bucket create parley-attachments',
    'd1 migrations apply parley', 'secret list', 'deploy', 'd1 execute parley', 'd1 execute parley',
  ]);
  const migrate = calls.find((c) => c.args[1] === 'migrations');
  assert.equal(migrate.remote, true);
  assert.equal(migrate.database_id, '7d5f1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b', 'migrations use the real database id');
  const dep = calls.find((c) => c.args[0] === 'deploy');
  assert.equal(dep.database_id, '7d5f1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b');
  assert.deepEqual(dep.secret_names, ['TOKEN_SECRET']);
  assert.equal(dep.token_secret_length, 64, 'a generated 32-byte secret');
  assert.equal(dep.secrets_file_mode, '600');
  // The first owner: an empty remote D1 gets the team, owner and site, from a private file.
  const [count, insert] = calls.filter((c) => c.args[1] === 'execute');
  assert.match(count.command, /SELECT count\(\*\) AS n FROM teams/);
  assert.equal(insert.remote, true);
  assert.equal(insert.sql_mode, '600');
  assert.match(insert.sql, /INSERT INTO teams[\s\S]*INSERT INTO sites[\s\S]*'\["https:\/\/shop\.example"\]'[\s\S]*INSERT INTO agents[\s\S]*'owner@example\.com'/);
  assert.ok(!insert.sql.includes('long password'), 'only the password hash is stored');
  assert.match(first.stdout, /owner: created owner@example\.com and a site; embed with .*data-site="pk_/);
  // The generated config: the real id, absolute paths; wrangler.toml itself keeps its placeholder.
  const generated = parseToml(readFileSync(join(deployDir, 'wrangler.toml'), 'utf8'));
  assert.equal(generated.d1_databases[0].database_id, '7d5f1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b');
  assert.equal(generated.main, join(ROOT, 'build', 'index.js'));
  assert.equal(generated.d1_databases[0].migrations_dir, join(ROOT, 'migrations'));
  assert.equal(generated.build, undefined, '--no-build drops the [build] step');
  assert.match(first.stdout, /set that database_id in wrangler\.toml/);
  assert.equal(readWranglerConfig(ROOT).d1_databases[0].database_id, '00000000-0000-0000-0000-000000000000');

  // A later deploy: nothing created, migrations before the deploy, the secret left alone.
  fake.clearCalls();
  const second = await run(['--yes'], { env });
  assert.equal(second.code, 0, `${second.stdout}\n${second.stderr}`);
  const later = fake.read().calls;
  assert.deepEqual(names(later), ['whoami', 'd1 list', 'r2 bucket list', 'd1 migrations apply parley', 'secret list', 'deploy', 'd1 execute parley']);
  assert.equal(later.find((c) => c.args[0] === 'deploy').secret_names, undefined);
  assert.match(second.stdout, /already has a team/);
  assert.match(second.stdout, /TOKEN_SECRET: already set/);
  const withBuild = parseToml(readFileSync(join(deployDir, 'wrangler.toml'), 'utf8'));
  assert.equal(withBuild.build.command, 'node scripts/build.mjs');
  assert.equal(withBuild.build.cwd, ROOT);
});
