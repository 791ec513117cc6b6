// classic-level (LevelDB) with { sync: true } on every write; LevelDB merges concurrent writers.
import { ClassicLevel } from 'classic-level'

export const name = 'classic-level'

export async function open(dir) {
  const db = new ClassicLevel(dir, { keyEncoding: 'view', valueEncoding: 'view' })
  await db.open()
  let seq = 0
  const key = () => {
    const k = Buffer.allocUnsafe(8)
    k.writeBigUInt64BE(BigInt(seq++))
    return k
  }
  return {
    append: (buf) => db.put(key(), buf, { sync: true }),
    appendBatch: (bufs) => db.batch(bufs.map((value) => ({ type: 'put', key: key(), value })), { sync: true }),
    async *read() {
      for await (const value of db.values()) yield value
    },
    close: () => db.close(),
  }
}
