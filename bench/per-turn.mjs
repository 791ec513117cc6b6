// Group commit for a synchronous store: everything added in one event-loop turn is committed
// together when the turn ends (one transaction, one fsync), and all of it shares one promise.

/** Returns `add(items)`: queue `items` for this turn's `commit(allItems)`; resolves once it ran. */
export function perTurn(commit) {
  let pending = null
  const flush = () => {
    const p = pending
    pending = null
    try {
      commit(p.items)
      p.resolve()
    } catch (e) {
      p.reject(e)
    }
  }
  return (items) => {
    if (!pending) {
      pending = { items: [] }
      pending.done = new Promise((resolve, reject) => Object.assign(pending, { resolve, reject }))
      queueMicrotask(flush)
    }
    for (const x of items) pending.items.push(x)
    return pending.done
  }
}
