// Formatting helpers and labels for the training pages.
import type { JobStatus, TrainingMethod, TrainingWeights } from "../../api/types";

export const METHOD_LABEL: Record<TrainingMethod, string> = { sft: "SFT", dpo: "DPO", orpo: "ORPO" };
export const WEIGHTS_LABEL: Record<TrainingWeights, string> = { lora: "LoRA", qlora: "QLoRA", full: "Full" };

export const STATUS_LABEL: Record<JobStatus, string> = {
  queued: "Queued",
  starting: "Starting",
  running: "Running",
  recovering: "Recovering",
  succeeded: "Succeeded",
  failed: "Failed",
  cancelled: "Cancelled",
};

export const PHASE_LABEL: Record<string, string> = {
  loading_model: "Loading the model",
  preparing_data: "Preparing the data",
  training: "Training",
  evaluating: "Evaluating",
  saving: "Saving",
  exporting: "Exporting",
  succeeded: "Done",
  failed: "Failed",
  cancelled: "Cancelled",
};

const DATASET_FORMATS: Record<string, string> = {
  alpaca: "Alpaca",
  sharegpt: "ShareGPT",
  messages: "Messages (chat)",
  prompt_completion: "Prompt / completion",
  text: "Plain text",
  preference: "Preference pairs",
  hh_rlhf: "HH-RLHF pairs",
  sharegpt_preference: "ShareGPT preference",
};

export function datasetFormatLabel(format: string | null | undefined): string {
  if (!format) return "Unknown format";
  return DATASET_FORMATS[format] ?? format;
}

export function phaseLabel(phase: string | null | undefined): string {
  if (!phase) return "";
  return PHASE_LABEL[phase] ?? phase.replace(/_/g, " ");
}

/** 45 s, 12 min, 3 h 20 min, 2 d 4 h. */
export function formatDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "—";
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

export function formatEta(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "";
  if (seconds < 1) return "finishing";
  return `about ${formatDuration(seconds)} left`;
}

const integer = new Intl.NumberFormat();

export function formatInt(value: number | null | undefined): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return "—";
  return integer.format(Math.round(value));
}

/** 1.2K, 3.4M, 7.1B (parameter and token counts). */
export function formatCompact(value: number | null | undefined): string {
  if (value === null || value === undefined || !Number.isFinite(value) || value <= 0) return "—";
  return new Intl.NumberFormat("en", { notation: "compact", maximumFractionDigits: 1 }).format(value);
}

/** A loss or other float with a sensible number of digits. */
export function formatFloat(value: unknown, digits = 4): string {
  if (typeof value !== "number" || !Number.isFinite(value)) return "—";
  if (value !== 0 && Math.abs(value) < 1e-3) return value.toExponential(2);
  return value.toLocaleString("en", { maximumFractionDigits: digits });
}

export function formatLearningRate(value: unknown): string {
  if (typeof value !== "number" || !Number.isFinite(value)) return "—";
  if (value === 0) return "0";
  // 2e-4, 5e-6, 1.5e-5: the way learning rates are written.
  return Math.abs(value) < 1e-2 ? value.toExponential().replace(/(\.\d{2})\d+e/, "$1e") : String(value);
}

export function formatUsd(value: number | null | undefined): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return "—";
  if (value > 0 && value < 0.01) return "< $0.01";
  return `$${value.toLocaleString("en", { minimumFractionDigits: 2, maximumFractionDigits: 2 })}`;
}

export function formatGb(value: number | null | undefined): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return "—";
  return `${value.toLocaleString("en", { maximumFractionDigits: value < 10 ? 1 : 0 })} GB`;
}

export function formatDateTime(value: string | null | undefined): string {
  if (!value) return "—";
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return value;
  return date.toLocaleString(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
}

/** "3 min ago", "2 h ago", else a date. */
export function formatRelative(value: string | null | undefined): string {
  if (!value) return "—";
  const date = new Date(value);
  const diff = (Date.now() - date.getTime()) / 1000;
  if (Number.isNaN(diff)) return value;
  if (diff < 45) return "just now";
  if (diff < 3600) return `${Math.round(diff / 60)} min ago`;
  if (diff < 86400) return `${Math.round(diff / 3600)} h ago`;
  if (diff < 30 * 86400) return `${Math.round(diff / 86400)} d ago`;
  return date.toLocaleDateString(undefined, { month: "short", day: "numeric", year: "numeric" });
}

export function toPct(progress: number | null | undefined): number {
  if (typeof progress !== "number" || !Number.isFinite(progress)) return 0;
  return Math.max(0, Math.min(100, progress * 100));
}
