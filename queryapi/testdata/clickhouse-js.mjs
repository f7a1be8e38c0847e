// Runs the official ClickHouse JS client (@clickhouse/client) against a
// query endpoint and prints what it observed as one JSON object, for
// queryapi/clickhousejs_test.go to compare with what it expects.
//
//   node clickhouse-js.mjs CLIENT_DIR URL
//
// CLIENT_DIR is where scripts/clickhouse-js.sh installed the client.
import { createRequire } from 'node:module'

const [clientDir, url] = process.argv.slice(2)
const { createClient } = createRequire(clientDir + '/')('@clickhouse/client')

const out = {}
// observe records what f returns, or the error's ClickHouse code.
async function observe(name, f) {
  try {
    out[name] = await f()
  } catch (e) {
    out[name] = { error_code: e.code ?? null, message: String(e.message).slice(0, 300) }
  }
}

const plain = createClient({ url, request_timeout: 20000 })
const compressed = createClient({ url, request_timeout: 20000, compression: { response: true } })
const rows = (c, query, extra = {}) =>
  c.query({ query, format: 'JSONEachRow', ...extra }).then((rs) => rs.json())

await observe('ping', async () => (await plain.ping()).success)
await observe('JSONEachRow', () => rows(plain, 'SELECT n, s FROM t ORDER BY n'))
await observe('JSON', async () => {
  const doc = await (await plain.query({ query: 'SELECT n, s FROM t ORDER BY n', format: 'JSON' })).json()
  return { rows: doc.rows, data: doc.data, meta: doc.meta.map((m) => m.type) }
})
await observe('CSV', async () => (await plain.query({ query: 'SELECT n, s FROM t ORDER BY n', format: 'CSV' })).text())
await observe('TabSeparated', async () => (await plain.query({ query: 'SELECT n, s FROM t ORDER BY n', format: 'TabSeparated' })).text())
await observe('params', () =>
  rows(plain, `SELECT {s:String} AS s, length({s:String}) AS len, {n:UInt64} AS n, {a:Array(String)} AS a,
      toUnixTimestamp({d:DateTime}) AS d, toString({ip:IPv4}) AS ip`, {
    query_params: { s: 'it\'s a \\ and "q"\ttab', n: 42, a: ['x', "y'z", 'back\\slash'], d: new Date(1700000000000), ip: '10.0.0.1' },
  }))
await observe('param on a table', () =>
  rows(plain, 'SELECT n FROM t WHERE s = {s:String}', { query_params: { s: 'quote\'"' } }))
await observe('injection', async () => {
  const got = await rows(plain, 'SELECT (SELECT count() FROM t WHERE s = {s:String}) AS c, {s:String} AS v', {
    query_params: { s: "x' OR 1=1; DROP TABLE t; --" },
  })
  const left = await rows(plain, 'SELECT count() AS c FROM t')
  return { got, left }
})
await observe('missing param', () => rows(plain, 'SELECT {n:UInt64} AS n'))
await observe('settings', () =>
  rows(plain, "SELECT toUInt64(7) AS n, toDateTime(1700000000, 'UTC') AS d, toString(getSetting('max_result_rows')) AS mrr", {
    clickhouse_settings: { output_format_json_quote_64bit_integers: 1, date_time_output_format: 'iso', max_result_rows: '5' },
  }))
await observe('refused setting', () => rows(plain, 'SELECT 1', { clickhouse_settings: { allow_ddl: 1 } }))
await observe('compressed', async () => {
  const rs = await compressed.query({ query: "SELECT number AS n, 'exporter' AS e FROM numbers(20000)", format: 'JSONEachRow' })
  const data = await rs.json()
  return { rows: data.length, last: data[data.length - 1], encoding: rs.response_headers['content-encoding'] ?? null }
})
await observe('query_id', async () => {
  const rs = await plain.query({ query: 'SELECT 1 AS x', format: 'JSONEachRow', query_id: 'js-query-1' })
  await rs.json()
  const summary = JSON.parse(rs.response_headers['x-clickhouse-summary'])
  return { query_id: rs.query_id, header: rs.response_headers['x-clickhouse-query-id'], result_rows: summary.result_rows }
})
await observe('unknown table', () => rows(plain, 'SELECT * FROM no_such_table'))
await observe('command DROP', async () => (await plain.command({ query: 'DROP TABLE t' })).query_id)
await observe('insert', async () => (await plain.insert({ table: 't', values: [{ n: 9, s: 'x', a: [], d: 0 }], format: 'JSONEachRow' })).executed)

await plain.close()
await compressed.close()
console.log(JSON.stringify(out))
