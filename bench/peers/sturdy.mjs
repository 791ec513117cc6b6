// sturdy itself, through its public API.
import { Wal } from '../../dist/index.mjs'

export const name = 'sturdy'

export async function open(dir) {
  const wal = await Wal.open(dir)
  return {
    append: (buf) => wal.append(buf),
    appendBatch: (bufs) => wal.appendBatch(bufs),
    async *read() {
      for await (const { data } of wal.entries()) yield data
    },
    close: () => wal.close(),
  }
}
