/**
 * A horizontal bar chart as a standalone SVG string: one bar per row, a
 * min–max whisker over each bar, the value and a note at the bar's end, and
 * a labelled axis. No chart library: the report needs one kind of chart, and
 * a hand-written SVG renders the same in a browser, on GitHub and in
 * rsvg-convert.
 */
export interface BarRow {
  label: string;
  /** NaN or null draws "unavailable" (or `missing`) instead of a bar. */
  value: number | null;
  min?: number;
  max?: number;
  /** Text after the value, e.g. "31% of ceiling · p99 8.7 ms". */
  note?: string;
  /** Bar fill; defaults by group. */
  group?: "ceiling" | "baseline" | "seed" | "latch";
  missing?: string;
}

export interface BarChartOptions {
  title: string;
  subtitle?: string;
  /** Axis caption, e.g. "requests per second (median; whisker: min–max)". */
  axisLabel: string;
  width?: number;
}

const FILL: Record<NonNullable<BarRow["group"]>, string> = {
  ceiling: "#6b7280",
  baseline: "#9ca3af",
  seed: "#d97706",
  latch: "#0f766e",
};

function escapeXml(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

/** A round axis step giving about five ticks up to `top`. */
function niceStep(top: number): number {
  const raw = top / 5;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * magnitude >= raw) return m * magnitude;
  return 10 * magnitude;
}

function compact(n: number): string {
  if (n >= 10_000) return `${Math.round(n / 1000)}k`;
  if (n >= 1_000) return `${(n / 1000).toFixed(1).replace(/\.0$/, "")}k`;
  return n >= 100 ? String(Math.round(n)) : n.toFixed(1).replace(/\.0$/, "");
}

/**
 * @example
 * writeFileSync("chart.svg", barChartSvg([{ label: "ceiling", value: 29745, group: "ceiling" }], { title: "GET /protected", axisLabel: "req/s" }));
 */
export function barChartSvg(rows: BarRow[], options: BarChartOptions): string {
  const width = options.width ?? 960;
  const labelWidth = 340;
  const noteWidth = 290;
  const barLeft = labelWidth + 10;
  const barWidth = width - barLeft - noteWidth;
  const top = options.subtitle ? 74 : 54;
  const rowHeight = 34;
  const barHeight = 20;
  const plotHeight = rows.length * rowHeight;
  const height = top + plotHeight + 56;

  const values = rows.flatMap((r) => [r.value ?? Number.NaN, r.max ?? Number.NaN]).filter((v) => Number.isFinite(v));
  const highest = values.length > 0 ? Math.max(...values) : 1;
  const step = niceStep(highest);
  const axisMax = Math.max(step, Math.ceil(highest / step) * step);
  const x = (v: number): number => barLeft + (v / axisMax) * barWidth;

  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="13">`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="16" y="28" font-size="17" font-weight="bold" fill="#111827">${escapeXml(options.title)}</text>`,
  );
  if (options.subtitle) out.push(`<text x="16" y="50" fill="#4b5563">${escapeXml(options.subtitle)}</text>`);

  for (let tick = 0; tick <= axisMax + step / 1000; tick += step) {
    const tx = x(tick);
    out.push(
      `<line x1="${tx.toFixed(1)}" y1="${top - 6}" x2="${tx.toFixed(1)}" y2="${top + plotHeight}" stroke="#e5e7eb"/>`,
      `<text x="${tx.toFixed(1)}" y="${top + plotHeight + 18}" text-anchor="middle" fill="#374151">${compact(tick)}</text>`,
    );
  }
  out.push(
    `<line x1="${barLeft}" y1="${top + plotHeight}" x2="${barLeft + barWidth}" y2="${top + plotHeight}" stroke="#6b7280"/>`,
    `<text x="${barLeft + barWidth / 2}" y="${top + plotHeight + 42}" text-anchor="middle" fill="#374151">${escapeXml(options.axisLabel)}</text>`,
  );

  rows.forEach((row, i) => {
    const y = top + i * rowHeight + (rowHeight - barHeight) / 2;
    const mid = y + barHeight / 2 + 4.5;
    out.push(`<text x="${labelWidth}" y="${mid.toFixed(1)}" text-anchor="end" fill="#111827">${escapeXml(row.label)}</text>`);
    if (row.value === null || !Number.isFinite(row.value)) {
      out.push(
        `<text x="${barLeft + 6}" y="${mid.toFixed(1)}" fill="#9ca3af" font-style="italic">${escapeXml(row.missing ?? "unavailable")}</text>`,
      );
      return;
    }
    const fill = FILL[row.group ?? "baseline"];
    const end = x(row.value);
    out.push(
      `<rect x="${barLeft}" y="${y.toFixed(1)}" width="${Math.max(1, end - barLeft).toFixed(1)}" height="${barHeight}" fill="${fill}" rx="2"/>`,
    );
    let textX = end;
    if (row.min !== undefined && row.max !== undefined && Number.isFinite(row.min) && Number.isFinite(row.max) && row.max > row.min) {
      const x1 = x(row.min);
      const x2 = x(row.max);
      const wy = y + barHeight / 2;
      out.push(
        `<line x1="${x1.toFixed(1)}" y1="${wy.toFixed(1)}" x2="${x2.toFixed(1)}" y2="${wy.toFixed(1)}" stroke="#111827" stroke-width="1.5"/>`,
        `<line x1="${x1.toFixed(1)}" y1="${(wy - 5).toFixed(1)}" x2="${x1.toFixed(1)}" y2="${(wy + 5).toFixed(1)}" stroke="#111827" stroke-width="1.5"/>`,
        `<line x1="${x2.toFixed(1)}" y1="${(wy - 5).toFixed(1)}" x2="${x2.toFixed(1)}" y2="${(wy + 5).toFixed(1)}" stroke="#111827" stroke-width="1.5"/>`,
      );
      textX = Math.max(textX, x2);
    }
    const text = `${Math.round(row.value).toLocaleString("en-US")}${row.note ? ` ${row.note}` : ""}`;
    out.push(`<text x="${(textX + 8).toFixed(1)}" y="${mid.toFixed(1)}" fill="#111827">${escapeXml(text)}</text>`);
  });

  out.push("</svg>");
  return `${out.join("\n")}\n`;
}
