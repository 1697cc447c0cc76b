#!/usr/bin/env node
// Interop check with tedious (pure JavaScript TDS driver; see package.json for the pinned version).
//
//   node tedious_client.js --host H --port P --user U --password PW --table T [--database master] [--tls off|on]
//
// Prints "OK tedious" and exits 0, or prints "FAIL tedious: ..." on stderr and exits
// 1 (result mismatch), 2 (driver/connection error) or 64 (bad arguments).
//
// PRELOGIN: encrypt:false sends ENCRYPT_NOT_SUP, encrypt:true sends ENCRYPT_ON. tedious only
// starts TLS (max TLS 1.2, inside PRELOGIN packets) when the server answers ON or REQ; any
// other answer silently leaves the connection in cleartext, so the script checks that TLS
// really was (or was not) negotiated.
'use strict';

process.noDeprecation = true; // tedious sets an IP address as TLS SNI (DEP0123 warning)

const { parseArgs } = require('node:util');
const { Connection, Request, TYPES } = require('tedious');

const DRIVER = 'tedious';
const TABLE_RE = /^[A-Za-z_#][\w#$]*(\.[A-Za-z_#][\w#$]*){0,2}$|^\[[^\]]+\](\.\[[^\]]+\]){0,2}$/;

class Mismatch extends Error {}

let step = 'connect'; // what the client was doing, for the FAIL line

function fail(code, msg) {
  console.error(`FAIL ${DRIVER}: ${msg}`);
  process.exit(code);
}

function expect(what, got, want) {
  const g = JSON.stringify(got);
  const w = JSON.stringify(want);
  if (g !== w) throw new Mismatch(`${what}: expected ${w}, got ${g}`);
}

function parseCli() {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        host: { type: 'string', default: '127.0.0.1' },
        port: { type: 'string', default: '1433' },
        user: { type: 'string' },
        password: { type: 'string' },
        database: { type: 'string', default: 'master' },
        table: { type: 'string' },
        tls: { type: 'string', default: 'off' },
        timeout: { type: 'string', default: '15' }, // login/connect timeout, seconds
        skip: { type: 'string', multiple: true, default: [] }, // a, b or c: skip a check
      },
    }));
  } catch (e) {
    fail(64, e.message);
  }
  for (const k of ['user', 'password', 'table']) {
    if (values[k] === undefined) fail(64, `--${k} is required`);
  }
  if (!['on', 'off'].includes(values.tls)) fail(64, '--tls must be on or off');
  if (!values.skip.every((k) => ['a', 'b', 'c'].includes(k))) fail(64, '--skip takes a, b or c');
  if (!TABLE_RE.test(values.table)) fail(64, `--table ${JSON.stringify(values.table)} is not a plain table name`);
  values.port = Number(values.port);
  values.timeout = Number(values.timeout);
  if (!Number.isInteger(values.port) || !(values.timeout > 0)) fail(64, 'bad --port or --timeout');
  return values;
}

function connect(args) {
  return new Promise((resolve, reject) => {
    const conn = new Connection({
      server: args.host,
      authentication: { type: 'default', options: { userName: args.user, password: args.password } },
      options: {
        port: args.port,
        database: args.database,
        encrypt: args.tls === 'on',
        trustServerCertificate: true,
        connectTimeout: args.timeout * 1000,
        requestTimeout: 30000,
      },
    });
    conn.connect((err) => (err ? reject(err) : resolve(conn)));
  });
}

// Runs sql; with params it goes out as an RPC (sp_executesql), without as a SQL batch.
function query(conn, sql, params = []) {
  return new Promise((resolve, reject) => {
    let columns = [];
    const rows = [];
    const req = new Request(sql, (err) => (err ? reject(err) : resolve({ columns, rows })));
    req.on('columnMetadata', (cols) => { columns = cols.map((c) => c.colName); });
    req.on('row', (cols) => rows.push(cols.map((c) => c.value)));
    for (const [name, type, value] of params) req.addParameter(name, type, value);
    if (params.length) conn.execSql(req); else conn.execSqlBatch(req);
  });
}

function tran(conn, op) { // op: beginTransaction | commitTransaction | rollbackTransaction
  return new Promise((resolve, reject) => conn[op]((err) => (err ? reject(err) : resolve())));
}

async function checks(args) {
  const conn = await connect(args);
  expect('TLS negotiated', Boolean(conn.messageIo && conn.messageIo.tlsNegotiationComplete), args.tls === 'on');

  if (!args.skip.includes('a')) {
    step = '(a) plain query';
    const r = await query(conn, "SELECT 1 AS one, N'héllo' AS greeting");
    expect('column names', r.columns, ['one', 'greeting']);
    expect('rows', r.rows, [[1, 'héllo']]);
  }
  if (!args.skip.includes('b')) {
    step = '(b) parameterised query';
    const r = await query(conn, 'SELECT @p1 + 1 AS n, @p2 AS s',
      [['p1', TYPES.Int, 41], ['p2', TYPES.NVarChar, 'wörld']]);
    expect('column names', r.columns, ['n', 's']);
    expect('rows', r.rows, [[42, 'wörld']]);
  }
  if (!args.skip.includes('c')) await transactionChecks(conn, args.table);

  step = 'close';
  await new Promise((resolve) => { conn.on('end', resolve); conn.close(); });
}

// (c) transactions through Transaction Manager requests (TDS packet type 0x0E).
async function transactionChecks(conn, t) {
  step = '(c) committed transaction';
  await query(conn, `DELETE FROM ${t}`);
  await tran(conn, 'beginTransaction');
  await query(conn, `INSERT INTO ${t} (id, name) VALUES (1, N'x')`);
  expect('@@TRANCOUNT after first INSERT', (await query(conn, 'SELECT @@TRANCOUNT')).rows, [[1]]);
  await tran(conn, 'commitTransaction');
  expect('rows after COMMIT', (await query(conn, `SELECT id, name FROM ${t} ORDER BY id`)).rows, [[1, 'x']]);

  step = '(c) rolled-back transaction';
  await tran(conn, 'beginTransaction');
  await query(conn, `INSERT INTO ${t} (id, name) VALUES (2, N'y')`);
  expect('uncommitted row visible in its own transaction',
    (await query(conn, `SELECT id, name FROM ${t} WHERE id = 2`)).rows, [[2, 'y']]);
  await tran(conn, 'rollbackTransaction');
  expect('rows after ROLLBACK', (await query(conn, `SELECT id, name FROM ${t} ORDER BY id`)).rows, [[1, 'x']]);
  expect('@@TRANCOUNT after ROLLBACK', (await query(conn, 'SELECT @@TRANCOUNT')).rows, [[0]]);
}

function describe(e) {
  const parts = [];
  for (let x = e; x && parts.length < 5; x = x.cause) {
    parts.push(`${x.name || 'Error'}${x.code ? ` (${x.code})` : ''}: ${x.message}`);
  }
  if (e && Array.isArray(e.errors)) parts.push(...e.errors.map((x) => x.message));
  return parts.join(' <- ');
}

const args = parseCli();
checks(args).then(
  () => {
    console.log(`OK ${DRIVER}`);
    if (args.skip.length) console.error(`note: ${DRIVER}: skipped check(s) ${args.skip.join(', ')}`);
  },
  (e) => fail(e instanceof Mismatch ? 1 : 2,
    e instanceof Mismatch ? `mismatch during ${step}: ${e.message}` : `error during ${step}: ${describe(e)}`),
);
