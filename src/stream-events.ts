// What the subscription service needs from the stream store, and nothing more: it sees streams
// by their root-relative names ("events/abc"), their durable tails, and a way to append wake
// events. Kept as an interface so subscriptions can be tested against a fake store.

/**
 * A view of the stream store for services layered on it (subscriptions).
 *
 * @example
 * ```ts
 * const events: StreamEvents = store
 * const stop = events.onTail((name, tail) => console.log(name, 'now ends at', tail))
 * ```
 */
export interface StreamEvents {
  /** Names of the live streams (root-relative, no leading slash). */
  names(): Iterable<string>
  /** The durable tail offset of a live stream, or `undefined` if there is no such stream. */
  tail(name: string): string | undefined
  /** Appends JSON messages to an existing `application/json` stream; resolves once durable. */
  appendJson(name: string, messages: readonly unknown[]): Promise<void>
  /**
   * Calls `listener` after a stream is created or appended to and the change is durable, with the
   * stream's new durable tail; `created` is true for the event of its creation (a new stream,
   * perhaps under the name of a deleted one, whose offsets start over). Returns a function that
   * removes the listener.
   */
  onTail(listener: (name: string, tail: string, created: boolean) => void): () => void
}
