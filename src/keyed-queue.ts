// Serializes work per key: when each change spans an await (a durable write), running the
// changes of one key one at a time keeps each a read-modify-persist step that sees the previous
// one complete. Different keys run in parallel. Used per subscription and per durable-store key.

/** Runs tasks one at a time per key, in submission order. */
export class KeyedQueue {
  readonly #tails = new Map<string, Promise<unknown>>()

  /** Runs `task` after every task submitted earlier for `key`; resolves or rejects with it. */
  run<T>(key: string, task: () => Promise<T>): Promise<T> {
    const previous = this.#tails.get(key) ?? Promise.resolve()
    const result = previous.then(task, task)
    const tail = result.catch(() => {})
    this.#tails.set(key, tail)
    // Forget the key once idle so the map does not grow with every id ever seen.
    void tail.then(() => {
      if (this.#tails.get(key) === tail) this.#tails.delete(key)
    })
    return result
  }

  /** Keys with a task queued or running. */
  keys(): string[] {
    return [...this.#tails.keys()]
  }

  /** Resolves once every task submitted so far has finished. */
  async drain(): Promise<void> {
    while (this.#tails.size > 0) await Promise.all([...this.#tails.values()])
  }
}
