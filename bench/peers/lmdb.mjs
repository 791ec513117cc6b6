// lmdb with every commit synced (overlappingSync off): puts in one turn share a transaction.
import { open as openLmdb } from 'lmdb'

export const name = 'lmdb'

export async function open(dir) {
  const db = openLmdb({ path: dir, overlappingSync: false, noSync: false, compression: false, encoding: 'binary', mapSize: 8 * 2 ** 30 })
  let key = 0
  return {
    append: (buf) => db.put(key++, buf),
    appendBatch: (bufs) => db.transaction(() => {
      for (const b of bufs) db.put(key++, b)
    }),
    async *read() {
      for (const { value } of db.getRange()) yield value
    },
    close: () => db.close(),
  }
}
