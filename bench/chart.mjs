// A dependency-free SVG bar chart of a benchmark run: one panel per workload, bars relative to
// the best value in that panel (for latency, the lowest), sturdy highlighted.

const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;')

export function chart(results, titles) {
  const width = 760
  const barH = 18
  const gap = 6
  const label = 170
  let y = 40
  const parts = []
  for (const [w, { rows, unit, better }] of Object.entries(results)) {
    const values = rows.map((r) => (typeof r.value === 'object' ? r.value.p50 : r.value))
    const max = Math.max(...values)
    parts.push(`<text x="10" y="${y}" font-weight="bold">${esc(titles[w] ?? w)} (${esc(unit)}, ${better} is better)</text>`)
    y += 10
    rows.forEach((r, i) => {
      const v = values[i]
      const len = Math.max(1, ((width - label - 120) * v) / max)
      const fill = r.name === 'sturdy' ? '#d9480f' : r.name.startsWith('raw') ? '#868e96' : '#4c6ef5'
      parts.push(`<text x="10" y="${y + barH - 4}">${esc(r.name)}</text>`)
      parts.push(`<rect x="${label}" y="${y}" width="${len.toFixed(1)}" height="${barH}" fill="${fill}"/>`)
      const shown = v >= 1e5 ? Math.round(v).toLocaleString('en-US') : v >= 100 ? v.toFixed(0) : v.toFixed(2)
      parts.push(`<text x="${label + len + 6}" y="${y + barH - 4}">${esc(shown)}</text>`)
      y += barH + gap
    })
    y += 24
  }
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${y}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="10" y="20" font-size="15" font-weight="bold">sturdy vs peers — durable appends, measured in one run</text>
${parts.join('\n')}
</svg>
`
}
