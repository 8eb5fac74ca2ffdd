// Final metrics of a fine-tuned model, in display order, with their formats.
import { formatDuration, formatFloat, formatNumber } from "../../lib/format";

export const METRIC_ROWS: { key: string; label: string; format: (v: number) => string }[] = [
  { key: "train_loss_first", label: "First training loss", format: (v) => formatFloat(v) },
  { key: "train_loss_last", label: "Final training loss", format: (v) => formatFloat(v) },
  { key: "eval_loss_before", label: "Eval loss before", format: (v) => formatFloat(v) },
  { key: "eval_loss_after", label: "Eval loss after", format: (v) => formatFloat(v) },
  { key: "perplexity_before", label: "Perplexity before", format: (v) => formatFloat(v, 2) },
  { key: "perplexity_after", label: "Perplexity after", format: (v) => formatFloat(v, 2) },
  { key: "tokens_per_s_mean", label: "Mean throughput", format: (v) => `${formatNumber(v)} tokens/s` },
  { key: "peak_memory_mb", label: "Peak memory", format: (v) => `${formatNumber(v)} MB` },
  { key: "train_runtime_s", label: "Training time", format: (v) => formatDuration(v) },
];
