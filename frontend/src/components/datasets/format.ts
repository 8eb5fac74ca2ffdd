// Formatting helpers and labels shared by the datasets pages.

export const FORMATS: { value: string; label: string; short: string; columns: string }[] = [
  { value: "alpaca", label: "Alpaca", short: "Alpaca", columns: "instruction, output, input?, system?, history?" },
  { value: "sharegpt", label: "ShareGPT", short: "ShareGPT", columns: "conversations, system?" },
  { value: "messages", label: "Messages (OpenAI chat)", short: "Messages", columns: "messages" },
  { value: "prompt_completion", label: "Prompt / completion", short: "Prompt/completion", columns: "prompt, completion" },
  { value: "text", label: "Plain text", short: "Text", columns: "text" },
  {
    value: "preference",
    label: "Preference (prompt, chosen, rejected)",
    short: "Preference",
    columns: "prompt, chosen, rejected",
  },
  { value: "hh_rlhf", label: "HH-RLHF transcripts", short: "HH-RLHF", columns: "chosen, rejected" },
  {
    value: "sharegpt_preference",
    label: "ShareGPT preference",
    short: "ShareGPT pref.",
    columns: "conversations, chosen, rejected",
  },
];

/** Field names each format reads, offered as suggestions in the column mapping editor. */
export const FORMAT_FIELDS: Record<string, string[]> = {
  alpaca: ["instruction", "input", "output", "system", "history"],
  sharegpt: ["conversations", "system"],
  messages: ["messages"],
  prompt_completion: ["prompt", "completion"],
  text: ["text"],
  preference: ["prompt", "chosen", "rejected", "system"],
  hh_rlhf: ["chosen", "rejected"],
  sharegpt_preference: ["conversations", "chosen", "rejected", "system"],
};

export function formatLabel(value: string | null | undefined, short = false): string {
  if (!value) return "—";
  const format = FORMATS.find((f) => f.value === value);
  return (short ? format?.short : format?.label) ?? value;
}

const numberFormat = new Intl.NumberFormat();

export function formatNumber(value: number | null | undefined, digits = 0): string {
  if (value === null || value === undefined || Number.isNaN(value)) return "—";
  if (digits) return value.toLocaleString(undefined, { maximumFractionDigits: digits, minimumFractionDigits: 0 });
  return numberFormat.format(Math.round(value));
}

export function formatBytes(bytes: number | null | undefined): string {
  if (bytes === null || bytes === undefined || Number.isNaN(bytes)) return "—";
  if (bytes < 1024) return `${bytes} B`;
  const units = ["KB", "MB", "GB", "TB"];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toLocaleString(undefined, { maximumFractionDigits: value < 10 ? 1 : 0 })} ${units[unit]}`;
}

export function formatDate(value: string | null | undefined, withTime = false): string {
  if (!value) return "—";
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return value;
  return date.toLocaleString(undefined, {
    year: "numeric",
    month: "short",
    day: "numeric",
    ...(withTime ? { hour: "2-digit", minute: "2-digit" } : {}),
  });
}

/** 0..1 (or 0..100) → 0..100, clamped; null when unknown. */
export function toPercent(progress: number | null | undefined): number | null {
  if (typeof progress !== "number" || Number.isNaN(progress)) return null;
  const value = progress <= 1 ? progress * 100 : progress;
  return Math.max(0, Math.min(100, value));
}

export function share(part: number, whole: number): string {
  if (!whole) return "0%";
  const pct = (part / whole) * 100;
  if (pct > 0 && pct < 0.1) return "<0.1%";
  return `${pct.toLocaleString(undefined, { maximumFractionDigits: pct < 10 ? 1 : 0 })}%`;
}

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
