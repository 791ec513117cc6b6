import { EntryIndex } from './raft-index.js'
import type { LogId } from './raft-log.js'
import {
  BatchView,
  checkControlLength,
  corruptRecord,
  KIND_BATCH,
  KIND_ENTRY,
  KIND_PURGE,
  KIND_RESET,
  KIND_TRUNCATE,
  readEntryHeader,
  readU64,
} from './raft-record.js'

/**
 * Rebuilds a Raft log's state from its records, in LSN order, at open.
 *
 * The records replayed may start anywhere: purging drops the log's oldest segments, so replay
 * can begin in the middle of the history, even in the middle of a batch. That is sound because
 * every live entry was written after every record it depends on: an entry written at index `i`
 * replaces whatever held `i` and everything after it, so the live entries sit in LSN order, and
 * a purge only drops segments below both the first live entry and its own PURGE record. An
 * ENTRY that does not continue the entries replayed so far (the start of the records, or after
 * a RESET) simply starts over at its index.
 *
 * Appends are applied a whole batch at a time: a BATCH record is one, whole or absent. Of
 * appends written as ENTRY records, only the last can be incomplete (a power loss during its
 * write; it was never acknowledged), and it is left out: {@link tailLsn} says where it starts
 * so the caller can cut it off before writing anything new.
 *
 * @internal
 */
export class Replay {
  readonly index = new EntryIndex()
  purged: LogId | undefined
  /** LSN of an incomplete final batch, to cut off. */
  tailLsn: number | undefined

  // The batch being gathered: its first index, expected size, and records so far.
  #batchStart = 0
  #batchSize = 0
  #batchLsn = 0
  #lsns: number[] = []
  #terms: number[] = []

  /** Apply one record. */
  add(lsn: number, rec: Uint8Array): void {
    if (rec.length === 0) throw corruptRecord(lsn, 'an empty record')
    if (rec[0] === KIND_ENTRY) {
      this.#entry(lsn, rec)
      return
    }
    // An incomplete batch followed by another record was never acknowledged: leave it out.
    this.#dropBatch()
    if (rec[0] === KIND_BATCH) {
      const batch = new BatchView(rec as Buffer, lsn)
      this.index.replaceFrom(batch.first)
      this.index.pushAll(lsn, batch.terms())
      return
    }
    checkControlLength(rec, lsn)
    switch (rec[0]) {
      case KIND_TRUNCATE: {
        const index = readU64(rec, 1, lsn)
        if (this.index.count > 0) this.index.truncateFrom(Math.max(index, this.index.first))
        break
      }
      case KIND_PURGE:
        this.purged = { index: readU64(rec, 1, lsn), term: readU64(rec, 9, lsn) }
        this.index.purgeTo(this.purged.index)
        break
      case KIND_RESET:
        this.purged = undefined
        this.index.clear()
        break
    }
  }

  /** Call after the last record. */
  finish(): void {
    if (this.#lsns.length > 0) this.tailLsn = this.#batchLsn
  }

  #entry(lsn: number, rec: Uint8Array): void {
    const h = readEntryHeader(rec, lsn)
    if (h.first) {
      this.#dropBatch()
      this.#batchStart = h.index
      this.#batchSize = h.batchSize
      this.#batchLsn = lsn
    } else if (this.#lsns.length === 0 || h.index !== this.#batchStart + this.#lsns.length) {
      // The rest of a batch whose first records were purged with their segment: it was
      // complete (anything written after it proves so), so each entry stands on its own.
      this.#dropBatch()
      this.index.replaceFrom(h.index)
      this.index.push(lsn, h.term)
      return
    }
    this.#lsns.push(lsn)
    this.#terms.push(h.term)
    if (this.#lsns.length === this.#batchSize) {
      this.index.replaceFrom(this.#batchStart)
      for (let k = 0; k < this.#lsns.length; k++) this.index.push(this.#lsns[k], this.#terms[k])
      this.#lsns = []
      this.#terms = []
    }
  }

  #dropBatch(): void {
    if (this.#lsns.length > 0) {
      this.#lsns = []
      this.#terms = []
    }
  }
}
