/**
 * Whether `value` is a real `Uint8Array` (a `Buffer` too). `instanceof` alone also passes an
 * object made with `Object.create(Uint8Array.prototype)`, whose `byteLength` getter then throws
 * an untyped `TypeError`; `ArrayBuffer.isView` is true only of views with memory behind them.
 */
export function isBytes(value: unknown): value is Uint8Array {
  return value instanceof Uint8Array && ArrayBuffer.isView(value)
}
