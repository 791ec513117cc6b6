import { ownBytes, type FileData } from './directory-data.js'
import type { FileWriter } from './directory.js'
import { SturdyError } from './errors.js'
import type { CheckedFlushPolicy } from './flush-policy.js'

/** What a Directory backend gives a writer: ordered writes, the barrier, and release. */
export interface WriterSink {
  /** Write all of `bytes` after the previous write. */
  write(bytes: Buffer): Promise<void>
  /** Make every completed write durable. */
  sync(): Promise<void>
  /** Release the file. */
  close(): Promise<void>
}

/**
 * The {@link FileWriter} both backends hand out: it orders appends, applies the
 * {@link FlushPolicy} and poisons itself on the first failure. The backend only supplies a
 * {@link WriterSink}.
 *
 * @example
 * ```ts
 * const writer = new PolicyWriter('a.log', sink, checkFlushPolicy('per-append'), { dirty: false })
 * await writer.append('x') // written and durable
 * ```
 */
export class PolicyWriter implements FileWriter {
  readonly path: string
  readonly #sink: WriterSink
  readonly #policy: CheckedFlushPolicy
  /** Every operation runs after the one before it; this never rejects. */
  #queue: Promise<void> = Promise.resolve()
  #failure: SturdyError | undefined
  /** Whether something written (or a truncation on create) is not yet durable. */
  #dirty: boolean
  /** Appends since the last barrier was scheduled (for `everyN`). */
  #sinceBarrier = 0
  #timer: NodeJS.Timeout | undefined
  #closing: Promise<void> | undefined

  /** `dirty`: whether the file already has changes to make durable (a truncating create). */
  constructor(path: string, sink: WriterSink, policy: CheckedFlushPolicy, options: { dirty: boolean }) {
    this.path = path
    this.#sink = sink
    this.#policy = policy
    this.#dirty = options.dirty
  }

  get closed(): boolean {
    return this.#closing !== undefined
  }

  append(data: FileData): Promise<void> {
    let bytes: Buffer
    try {
      this.#checkOpen()
      bytes = ownBytes(data)
    } catch (e) {
      return Promise.reject(e)
    }
    const barrier = this.#barrierAfterThisAppend()
    return this.#enqueue(async () => {
      this.#dirty = true
      await this.#sink.write(bytes)
      if (barrier) await this.#barrier()
    })
  }

  sync(): Promise<void> {
    try {
      this.#checkOpen()
    } catch (e) {
      return Promise.reject(e)
    }
    this.#sinceBarrier = 0
    this.#cancelTimer()
    return this.#enqueue(() => this.#barrier())
  }

  close(): Promise<void> {
    if (this.#closing) return this.#closing
    this.#cancelTimer()
    this.#closing = this.#queue.then(async () => {
      // A poisoned writer still releases its file, and says it is poisoned.
      let failure: unknown = this.#failure
      if (failure === undefined && this.#policy.kind !== 'manual' && this.#dirty) {
        try {
          await this.#barrier()
        } catch (e) {
          failure = e
        }
      }
      try {
        await this.#sink.close()
      } catch (e) {
        failure ??= e
      }
      if (failure !== undefined) throw failure
    })
    return this.#closing
  }

  /** Whether the append being made now should be followed by a barrier, per the policy. */
  #barrierAfterThisAppend(): boolean {
    switch (this.#policy.kind) {
      case 'per-append':
        return true
      case 'every-n':
        if (++this.#sinceBarrier < this.#policy.n) return false
        this.#sinceBarrier = 0
        return true
      case 'interval':
        this.#timer ??= setTimeout(() => {
          this.#timer = undefined
          // A failure here poisons the writer; the next call reports it.
          this.#enqueue(() => this.#barrier()).catch(() => {})
        }, this.#policy.ms).unref()
        return false
      case 'manual':
        return false
    }
  }

  async #barrier(): Promise<void> {
    await this.#sink.sync()
    this.#dirty = false
  }

  #cancelTimer(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer)
    this.#timer = undefined
  }

  #checkOpen(): void {
    if (this.closed) throw new SturdyError('ERR_CLOSED', `the writer for ${JSON.stringify(this.path)} is closed`)
  }

  /** Run `job` after everything queued before; the first failure poisons every later job. */
  #enqueue(job: () => Promise<void>): Promise<void> {
    const run = this.#queue.then(async () => {
      if (this.#failure) throw this.#failure
      try {
        await job()
      } catch (e) {
        const why = e instanceof Error ? e.message : String(e)
        this.#failure = new SturdyError('ERR_POISONED', `an earlier write or sync of ${JSON.stringify(this.path)} failed: ${why}`)
        throw e
      }
    })
    this.#queue = run.catch(() => {})
    return run
  }
}
