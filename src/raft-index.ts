/** Entries per LSN chunk: small enough that a tiny log costs little, large enough to stay flat. */
const CHUNK = 4096

/**
 * The in-memory index of a Raft log: for each live entry, the LSN of its record, plus the term
 * of every entry as runs (a term covers many consecutive entries, so runs cost almost nothing).
 * That is 8 bytes per entry in fixed-size typed-array chunks, so a log of ten million entries
 * needs about 80 MB and never holds entries' data.
 *
 * An LSN below zero is a placeholder for an entry whose append is not yet durable: `-seq`, where
 * `seq` numbers the append, so a late completion never overwrites a newer append's slots.
 *
 * @internal
 */
export class EntryIndex {
  /** `#chunks[k]` holds the LSNs of indexes `#chunkBase + k * CHUNK` onwards. */
  #chunks: Float64Array[] = []
  #chunkBase = 0
  #first = 0
  #count = 0
  // Term runs: the run at slot r starts at index #runStart[r] and has term #runTerm[r].
  #runStart = new Float64Array(8)
  #runTerm = new Float64Array(8)
  #runHead = 0
  #runEnd = 0

  /** Index of the first entry (meaningless when empty). */
  get first(): number {
    return this.#first
  }

  /** Number of entries. */
  get count(): number {
    return this.#count
  }

  /** Index of the last entry (`first - 1` when empty). */
  get last(): number {
    return this.#first + this.#count - 1
  }

  has(index: number): boolean {
    return this.#count > 0 && index >= this.#first && index <= this.last
  }

  /** LSN of entry `index` (which must exist); negative while its append is pending. */
  lsn(index: number): number {
    const pos = index - this.#chunkBase
    const k = Math.floor(pos / CHUNK)
    return this.#chunks[k][pos - k * CHUNK]
  }

  /** Term of entry `index` (which must exist). */
  term(index: number): number {
    let lo = this.#runHead
    let hi = this.#runEnd - 1
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1
      if (this.#runStart[mid] <= index) lo = mid
      else hi = mid - 1
    }
    return this.#runTerm[lo]
  }

  /** Forget every entry; the next entry appended will be `nextIndex`. */
  clear(nextIndex = 0): void {
    this.#chunks = []
    this.#chunkBase = Math.floor(nextIndex / CHUNK) * CHUNK
    this.#first = nextIndex
    this.#count = 0
    this.#runHead = this.#runEnd = 0
  }

  /**
   * Make `index` the next slot: drop it and everything after it, or, if it does not continue
   * the entries held (below the first, past the end, or nothing held), start over at `index`.
   */
  replaceFrom(index: number): void {
    if (this.#count === 0 || index < this.#first || index > this.last + 1) this.clear(index)
    else this.truncateFrom(index)
  }

  /** Drop entry `index` and everything after it. */
  truncateFrom(index: number): void {
    if (index > this.last) return
    if (index <= this.#first) {
      this.clear(this.#first)
      return
    }
    this.#count = index - this.#first
    const keep = Math.floor((this.last - this.#chunkBase) / CHUNK) + 1
    this.#chunks.length = Math.min(this.#chunks.length, keep)
    while (this.#runEnd > this.#runHead && this.#runStart[this.#runEnd - 1] >= index) this.#runEnd--
  }

  /** Drop every entry up to and including `index`; the log continues at `index + 1`. */
  purgeTo(index: number): void {
    if (this.#count === 0 || index >= this.last) {
      if (this.#count === 0 || index + 1 > this.#first) this.clear(index + 1)
      return
    }
    if (index < this.#first) return
    this.#count -= index + 1 - this.#first
    this.#first = index + 1
    const drop = Math.floor((this.#first - this.#chunkBase) / CHUNK)
    if (drop > 0) {
      this.#chunks.splice(0, drop)
      this.#chunkBase += drop * CHUNK
    }
    while (this.#runHead + 1 < this.#runEnd && this.#runStart[this.#runHead + 1] <= this.#first) this.#runHead++
  }

  /** Append the entry after the last one, with its LSN (or placeholder) and term. */
  push(lsn: number, term: number): void {
    const index = this.#first + this.#count
    const pos = index - this.#chunkBase
    const k = Math.floor(pos / CHUNK)
    if (k === this.#chunks.length) this.#chunks.push(new Float64Array(CHUNK))
    this.#chunks[k][pos - k * CHUNK] = lsn
    this.#count++
    if (this.#runEnd === this.#runHead || this.#runTerm[this.#runEnd - 1] !== term) this.#addRun(index, term)
  }

  /** Append entries with `terms` after the last one, all with the same LSN placeholder. */
  pushAll(lsn: number, terms: ArrayLike<number>): void {
    let index = this.#first + this.#count
    let k = 0
    while (k < terms.length) {
      const pos = index - this.#chunkBase
      const c = Math.floor(pos / CHUNK)
      if (c === this.#chunks.length) this.#chunks.push(new Float64Array(CHUNK))
      // As many as fit in this chunk, in one fill.
      const n = Math.min(terms.length - k, CHUNK - (pos - c * CHUNK))
      this.#chunks[c].fill(lsn, pos - c * CHUNK, pos - c * CHUNK + n)
      for (let j = k; j < k + n; j++) {
        const term = terms[j]
        if (this.#runEnd === this.#runHead || this.#runTerm[this.#runEnd - 1] !== term) this.#addRun(index + j - k, term)
      }
      this.#count += n
      index += n
      k += n
    }
  }

  /**
   * An append numbered `seq` that put `count` entries at `start...` is durable, entry k's record
   * at `lsnOf(k)`: fill in the slots it still owns (a later append may have replaced some).
   */
  fill(start: number, seq: number, count: number, lsnOf: (k: number) => number): void {
    const from = Math.max(0, this.#first - start)
    const to = Math.min(count, this.last + 1 - start)
    for (let k = from; k < to; k++) {
      const index = start + k
      const pos = index - this.#chunkBase
      const c = Math.floor(pos / CHUNK)
      const chunk = this.#chunks[c]
      if (chunk[pos - c * CHUNK] === -seq) chunk[pos - c * CHUNK] = lsnOf(k)
    }
  }

  #addRun(start: number, term: number): void {
    if (this.#runEnd === this.#runStart.length) {
      const live = this.#runEnd - this.#runHead
      // Compact in place when the purged head is most of the array; grow otherwise.
      const size = live * 2 <= this.#runStart.length ? this.#runStart.length : this.#runStart.length * 2
      const starts = new Float64Array(size)
      const terms = new Float64Array(size)
      starts.set(this.#runStart.subarray(this.#runHead, this.#runEnd))
      terms.set(this.#runTerm.subarray(this.#runHead, this.#runEnd))
      this.#runStart = starts
      this.#runTerm = terms
      this.#runHead = 0
      this.#runEnd = live
    }
    this.#runStart[this.#runEnd] = start
    this.#runTerm[this.#runEnd] = term
    this.#runEnd++
  }
}
