// better-sqlite3 in WAL mode with synchronous = FULL. Its API is synchronous, so appends made in
// one turn are gathered and inserted in one transaction (one fsync), its best case.
import path from 'node:path'

import Database from 'better-sqlite3'

import { perTurn } from '../per-turn.mjs'

export const name = 'better-sqlite3'

export async function open(dir) {
  const db = new Database(path.join(dir, 'log.db'))
  db.pragma('journal_mode = WAL')
  db.pragma('synchronous = FULL')
  db.exec('CREATE TABLE IF NOT EXISTS log (id INTEGER PRIMARY KEY, data BLOB NOT NULL)')
  const insert = db.prepare('INSERT INTO log (data) VALUES (?)')
  const insertAll = db.transaction((rows) => {
    for (const r of rows) insert.run(r)
  })
  const add = perTurn(insertAll)
  return {
    append: (buf) => add([buf]),
    appendBatch: (bufs) => add(bufs),
    async *read() {
      for (const row of db.prepare('SELECT data FROM log ORDER BY id').iterate()) yield row.data
    },
    close: async () => db.close(),
  }
}
