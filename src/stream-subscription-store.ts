// Where subscription records live on disk: one JSON file per subscription under
// `subscriptions/`, replaced by a durable atomic write on every change and removed durably on
// delete. A file is named by a hash of the subscription id, since ids are client-chosen text.

import { createHash } from 'node:crypto'

import { isTempName } from './directory-atomic-write.js'
import type { FsDirectory } from './fs-directory.js'
import { isSubscriptionRecord, type SubscriptionRecord } from './stream-subscription-record.js'

const FOLDER = 'subscriptions'

function fileOf(id: string): string {
  return `${FOLDER}/${createHash('sha256').update(id).digest('hex')}.json`
}

/**
 * Durable storage of subscription records in a directory. A failed write poisons it: memory may
 * then be ahead of the disk, so every later write fails too and the service answers 500.
 */
export class SubscriptionStore {
  readonly #dir: FsDirectory
  #failure: Error | undefined

  constructor(dir: FsDirectory) {
    this.#dir = dir
  }

  /** The write failure that poisoned the store, if any. */
  get failure(): Error | undefined {
    return this.#failure
  }

  async #guard(write: () => Promise<void>): Promise<void> {
    if (this.#failure !== undefined) throw this.#failure
    try {
      await write()
    } catch (e) {
      this.#failure = e instanceof Error ? e : new Error(String(e))
      throw this.#failure
    }
  }

  /** Every stored record. Temporaries left by interrupted writes are removed. */
  async loadAll(): Promise<SubscriptionRecord[]> {
    await this.#dir.createDirAll(FOLDER)
    const records: SubscriptionRecord[] = []
    for (const name of await this.#dir.listDir(FOLDER)) {
      if (isTempName(name)) await this.#dir.delete(`${FOLDER}/${name}`)
      if (!/^[0-9a-f]{64}\.json$/.test(name)) continue
      let record: unknown
      try {
        record = JSON.parse((await this.#dir.readFile(`${FOLDER}/${name}`)).toString('utf8'))
      } catch (e) {
        throw new Error(`${FOLDER}/${name}: ${e instanceof Error ? e.message : String(e)}`, { cause: e })
      }
      if (!isSubscriptionRecord(record)) throw new Error(`${FOLDER}/${name} is not a subscription record`)
      records.push(record)
    }
    return records
  }

  /** Replaces the record of `record.id`; durable when the promise resolves. */
  save(record: SubscriptionRecord): Promise<void> {
    return this.#guard(() => this.#dir.atomicWriteDurable(fileOf(record.id), JSON.stringify(record)))
  }

  /** Removes the record of `id`; durable when the promise resolves. */
  remove(id: string): Promise<void> {
    const file = fileOf(id)
    return this.#guard(async () => {
      await this.#dir.delete(file)
      await this.#dir.syncParentDir(file)
    })
  }
}
