import { types } from 'node:util'

/** The built-in `byteLength` getter of typed arrays, which no subclass or user code can replace. */
const byteLengthGetter = Object.getOwnPropertyDescriptor(Object.getPrototypeOf(Uint8Array.prototype) as object, 'byteLength')!.get!

/**
 * Whether `value` is a real `Uint8Array` (a `Buffer` too), by its brand: `instanceof` also
 * passes an object made with `Object.create(Uint8Array.prototype)`, another typed array whose
 * prototype was swapped, or anything once `Symbol.hasInstance` is overridden.
 */
export function isBytes(value: unknown): value is Uint8Array {
  return types.isUint8Array(value)
}

/** The byte length of `bytes`, read by the built-in getter: running no user code, it cannot lie. */
export function byteLengthOf(bytes: Uint8Array): number {
  return Reflect.apply(byteLengthGetter, bytes, []) as number
}
