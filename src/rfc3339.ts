// RFC 3339 timestamps (`Stream-Expires-At`). `Date.parse` alone is too lenient: it rolls
// 2099-02-30 over to March and takes 24:00, so the fields are checked first.

const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?(?:[Zz]|[+-](\d{2}):(\d{2}))$/

/**
 * Whether `text` is an RFC 3339 date-time that names a real instant.
 *
 * @example
 * ```ts
 * isRfc3339('2099-02-28T00:00:00Z') // true
 * isRfc3339('2099-02-30T00:00:00Z') // false
 * ```
 */
export function isRfc3339(text: string): boolean {
  const m = RFC3339.exec(text)
  if (m === null) return false
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number) as [number, number, number, number, number, number]
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0)
  const daysInMonth = month === 2 ? (leap ? 29 : 28) : [4, 6, 9, 11].includes(month) ? 30 : 31
  const offsetOk = m[8] === undefined || (Number(m[8]) <= 23 && Number(m[9]) <= 59)
  return (
    month >= 1 && month <= 12 && day >= 1 && day <= daysInMonth &&
    hour <= 23 && minute <= 59 && second <= 59 && offsetOk &&
    !Number.isNaN(Date.parse(text))
  )
}
