// A good pure-JS group commit, the strongest thing a Node user can write without native code:
// appends in one turn share one group and one promise; the group is written with one writev
// and made durable with one fdatasync; the next group gathers while the current one syncs.
// Records are length-prefixed; caller buffers are referenced, not copied (generous to the peer).
import fs from 'node:fs'
import path from 'node:path'

export const name = 'pure-JS group commit'

export async function open(dir) {
  const file = path.join(dir, 'log')
  const fd = fs.openSync(file, 'a+')
  let gathering = null
  let busy = false

  const newGroup = () => {
    const g = { bufs: [] }
    g.done = new Promise((resolve, reject) => Object.assign(g, { resolve, reject }))
    return g
  }
  const commit = () => {
    if (busy || !gathering) return
    const g = gathering
    gathering = null
    busy = true
    fs.writev(fd, g.bufs, (err) => {
      if (err) return finish(g, err)
      fs.fdatasync(fd, (err2) => finish(g, err2))
    })
  }
  const finish = (g, err) => {
    busy = false
    err ? g.reject(err) : g.resolve()
    commit()
  }
  const add = (buf) => {
    if (!gathering) {
      gathering = newGroup()
      queueMicrotask(commit)
    }
    const len = Buffer.allocUnsafe(4)
    len.writeUInt32LE(buf.length)
    gathering.bufs.push(len, buf)
    return gathering.done
  }
  return {
    append: add,
    appendBatch: (bufs) => {
      let done
      for (const b of bufs) done = add(b)
      return done
    },
    async *read() {
      const data = fs.readFileSync(file)
      for (let at = 0; at < data.length; ) {
        const len = data.readUInt32LE(at)
        yield data.subarray(at + 4, at + 4 + len)
        at += 4 + len
      }
    },
    close: async () => fs.closeSync(fd),
  }
}
