// Labels of the training pages: methods, weights, job statuses and phases, dataset formats.
import type { JobStatus, TrainingMethod, TrainingWeights } from "../../api/types";

export const METHOD_LABEL: Record<TrainingMethod, string> = { sft: "SFT", dpo: "DPO", orpo: "ORPO", kto: "KTO" };
export const WEIGHTS_LABEL: Record<TrainingWeights, string> = { lora: "LoRA", qlora: "QLoRA", full: "Full" };

export const STATUS_LABEL: Record<JobStatus, string> = {
  waiting: "Waiting for a slot",
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
  kto: "KTO (labelled answers)",
};

export function datasetFormatLabel(format: string | null | undefined): string {
  if (!format) return "Unknown format";
  return DATASET_FORMATS[format] ?? format;
}

export function phaseLabel(phase: string | null | undefined): string {
  if (!phase) return "";
  return PHASE_LABEL[phase] ?? phase.replace(/_/g, " ");
}
