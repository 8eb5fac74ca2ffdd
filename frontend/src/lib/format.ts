// Display formatters shared by every page: numbers, sizes, money, durations, dates. Domain labels (dataset formats,
// training methods, job statuses) live next to their feature: components/datasets/labels.ts, components/training/labels.ts.
// Every formatter answers "—" for a missing or non-finite value.

const EMPTY = "—";

function missing(value: number | null | undefined): value is null | undefined {
  return value === null || value === undefined || !Number.isFinite(value);
}

const integer = new Intl.NumberFormat();

/** 12,345 (rounded), or with up to `digits` decimals: 1,234.5. */
export function formatNumber(value: number | null | undefined, digits = 0): string {
  if (missing(value)) return EMPTY;
  if (digits) return value.toLocaleString(undefined, { maximumFractionDigits: digits, minimumFractionDigits: 0 });
  return integer.format(Math.round(value));
}

/** 1.2K, 3.4M, 7.1B (parameter and token counts); "—" for zero or less. */
export function formatCompact(value: number | null | undefined): string {
  if (missing(value) || value <= 0) return EMPTY;
  return new Intl.NumberFormat("en", { notation: "compact", maximumFractionDigits: 1 }).format(value);
}

/** A loss or other float with a sensible number of digits. */
export function formatFloat(value: unknown, digits = 4): string {
  if (typeof value !== "number" || !Number.isFinite(value)) return EMPTY;
  if (value !== 0 && Math.abs(value) < 1e-3) return value.toExponential(2);
  return value.toLocaleString("en", { maximumFractionDigits: digits });
}

/** 2e-4, 5e-6, 1.5e-5: the way learning rates are written. */
export function formatLearningRate(value: unknown): string {
  if (typeof value !== "number" || !Number.isFinite(value)) return EMPTY;
  if (value === 0) return "0";
  return Math.abs(value) < 1e-2 ? value.toExponential().replace(/(\.\d{2})\d+e/, "$1e") : String(value);
}

export function formatUsd(value: number | null | undefined): string {
  if (missing(value)) return EMPTY;
  if (value > 0 && value < 0.01) return "< $0.01";
  return `$${value.toLocaleString("en", { minimumFractionDigits: 2, maximumFractionDigits: 2 })}`;
}

/** A memory figure the server already gives in GB (estimates, GPU sizes). */
export function formatGb(value: number | null | undefined): string {
  if (missing(value)) return EMPTY;
  return `${value.toLocaleString("en", { maximumFractionDigits: value < 10 ? 1 : 0 })} GB`;
}

const BYTE_UNITS = ["KiB", "MiB", "GiB", "TiB"];

/** A size in bytes, in binary units: 512 B, 1.5 KiB, 230 MiB, 2 GiB. Negative sizes are "—". */
export function formatBytes(bytes: number | null | undefined): string {
  if (missing(bytes) || bytes < 0) return EMPTY;
  if (bytes < 1024) return `${Math.round(bytes)} B`;
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < BYTE_UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toLocaleString("en", { maximumFractionDigits: value < 10 ? 1 : 0 })} ${BYTE_UNITS[unit]}`;
}

/** 45 s, 12 min, 3 h 20 min, 2 d 4 h. */
export function formatDuration(seconds: number | null | undefined): string {
  if (missing(seconds)) return EMPTY;
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  const minutes = Math.round(s / 60);
  if (minutes < 60) return `${minutes} min`;
  const hours = Math.floor(s / 3600);
  const restMin = Math.round((s - hours * 3600) / 60);
  if (hours < 24) return restMin ? `${hours} h ${restMin} min` : `${hours} h`;
  const days = Math.floor(hours / 24);
  const restH = hours - days * 24;
  return restH ? `${days} d ${restH} h` : `${days} d`;
}

/** "about 3 min left" ("" when unknown). */
export function formatEta(seconds: number | null | undefined): string {
  if (missing(seconds)) return "";
  if (seconds < 1) return "finishing";
  return `about ${formatDuration(seconds)} left`;
}

/** Jan 5, 2026 (with `withTime`, also the hour and minute). */
export function formatDate(value: string | null | undefined, withTime = false): string {
  if (!value) return EMPTY;
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return value;
  return date.toLocaleString(undefined, {
    year: "numeric",
    month: "short",
    day: "numeric",
    ...(withTime ? { hour: "2-digit", minute: "2-digit" } : {}),
  });
}

/** Jan 5, 10:42 (no year). */
export function formatDateTime(value: string | null | undefined): string {
  if (!value) return EMPTY;
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return value;
  return date.toLocaleString(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
}

/** "3 min ago", "2 h ago", else a date. */
export function formatRelative(value: string | null | undefined): string {
  if (!value) return EMPTY;
  const date = new Date(value);
  const diff = (Date.now() - date.getTime()) / 1000;
  if (Number.isNaN(diff)) return value;
  if (diff < 45) return "just now";
  if (diff < 3600) return `${Math.round(diff / 60)} min ago`;
  if (diff < 86400) return `${Math.round(diff / 3600)} h ago`;
  if (diff < 30 * 86400) return `${Math.round(diff / 86400)} d ago`;
  return date.toLocaleDateString(undefined, { month: "short", day: "numeric", year: "numeric" });
}

/** A rate 0..1 as a whole percentage: "42%". */
export function formatPercent(rate: number | null | undefined): string {
  if (missing(rate)) return EMPTY;
  return `${Math.round(rate * 100)}%`;
}

/** Progress given as 0..1 or 0..100 → 0..100, clamped; null when unknown. */
export function toPercent(progress: unknown): number | null {
  if (typeof progress !== "number" || Number.isNaN(progress)) return null;
  const value = progress <= 1 ? progress * 100 : progress;
  return Math.max(0, Math.min(100, value));
}

/** Progress given as 0..1 → 0..100, clamped; 0 when unknown. */
export function toPct(progress: number | null | undefined): number {
  if (typeof progress !== "number" || !Number.isFinite(progress)) return 0;
  return Math.max(0, Math.min(100, progress * 100));
}

/** `part` as a share of `whole`: "12%", "4.5%", "<0.1%". */
export function share(part: number, whole: number): string {
  if (!whole) return "0%";
  const pct = (part / whole) * 100;
  if (pct > 0 && pct < 0.1) return "<0.1%";
  return `${pct.toLocaleString(undefined, { maximumFractionDigits: pct < 10 ? 1 : 0 })}%`;
}

/** "max_length" → "Max length". */
export function humanize(value: string): string {
  const text = value.replace(/[_-]+/g, " ").trim();
  return text.charAt(0).toUpperCase() + text.slice(1);
}

/** "4, 19, 200" (+ "…" when there are more). */
export function lineList(lines: number[] | undefined, max = 8): string {
  if (!lines?.length) return "";
  const shown = lines.slice(0, max).join(", ");
  return lines.length > max ? `${shown}, …` : shown;
}
