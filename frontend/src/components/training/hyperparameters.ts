// The wizard's hyperparameter form: field specs, defaults (the engine's), parsing to the API body.
import type { Hyperparameters, TrainingMethod, TrainingWeights } from "../../api/types";

export type HpKey =
  | "num_train_epochs"
  | "max_steps"
  | "learning_rate"
  | "per_device_train_batch_size"
  | "gradient_accumulation_steps"
  | "max_length"
  | "lora_r"
  | "lora_alpha"
  | "lora_dropout"
  | "beta"
  | "warmup_ratio"
  | "weight_decay"
  | "lr_scheduler_type"
  | "lora_target_modules"
  | "seed"
  | "validation_split"
  | "logging_steps"
  | "eval_steps"
  | "save_steps"
  | "loss_type"
  | "packing"
  | "train_on"
  | "precision"
  | "gradient_checkpointing"
  | "chat_template"
  | "early_stopping_patience"
  | "load_best_model_at_end"
  | "report_to"
  | "num_processes"
  | "sharding";

export type HpValues = Record<HpKey, string>;
export type TrainBy = "epochs" | "steps";

export interface HpField {
  key: HpKey;
  label: string;
  hint: string;
  /** multi: any of `options` (checkboxes), kept as a comma-separated string, sent as a list. */
  kind: "int" | "float" | "text" | "select" | "multi";
  advanced?: boolean;
  options?: readonly string[];
  /** Options the API serves (GET /api/training/options/, the engine's list; replaces `options`). */
  servedOptions?: "lr_schedulers";
  /** Options that depend on the method (replaces `options`). */
  optionsFor?: (ctx: HpContext) => readonly string[];
  /** Labels of options (the value is shown otherwise; "" is "not set"). */
  optionLabels?: Record<string, string>;
  /** Left empty, the field is not sent (the engine's default or "off" applies). */
  optional?: boolean;
  /** Shown only when this returns true. */
  when?: (ctx: HpContext) => boolean;
}

export interface HpContext {
  method: TrainingMethod;
  weights: TrainingWeights;
  trainBy: TrainBy;
}

const usesLora = (c: HpContext) => c.weights !== "full";
const usesBeta = (c: HpContext) => c.method !== "sft";
const isSft = (c: HpContext) => c.method === "sft";

/** The preference losses per method (training/engine/spec.py LOSS_TYPES); "" keeps the method's default. */
export const LOSS_TYPES: Partial<Record<TrainingMethod, readonly string[]>> = {
  dpo: ["", "sigmoid", "ipo", "hinge", "robust", "sigmoid_norm", "bco_pair", "sppo_hard", "nca_pair", "exo_pair", "apo_zero", "apo_down", "aot", "aot_unpaired", "discopop"],
  kto: ["", "kto", "apo_zero_unpaired"],
};

/** The experiment trackers of `report_to` (training/engine/hyperparams.py REPORT_TO). */
export const TRACKERS = ["tensorboard", "mlflow", "wandb"] as const;

export const HP_FIELDS: HpField[] = [
  { key: "num_train_epochs", label: "Epochs", hint: "Passes over the training set; fractions train part of one.", kind: "float", when: (c) => c.trainBy === "epochs" },
  { key: "max_steps", label: "Max steps", hint: "Optimizer steps to run, whatever the dataset size.", kind: "int", when: (c) => c.trainBy === "steps" },
  { key: "learning_rate", label: "Learning rate", hint: "1e-4 to 3e-4 for LoRA; ~2e-5 for full; ~5e-6 for DPO.", kind: "float" },
  { key: "per_device_train_batch_size", label: "Batch size", hint: "Sequences per forward pass.", kind: "int" },
  { key: "gradient_accumulation_steps", label: "Gradient accumulation", hint: "Effective batch = batch size × accumulation.", kind: "int" },
  { key: "max_length", label: "Max length", hint: "Tokens per sequence; longer rows are cut.", kind: "int" },
  { key: "lora_r", label: "LoRA r", hint: "Adapter rank: capacity of the update.", kind: "int", when: usesLora },
  { key: "lora_alpha", label: "LoRA alpha", hint: "Scaling: the update is multiplied by alpha / r.", kind: "int", when: usesLora },
  { key: "lora_dropout", label: "LoRA dropout", hint: "0 is fastest and usually fine.", kind: "float", when: usesLora },
  { key: "beta", label: "Beta", hint: "DPO/KTO: pull towards the reference. ORPO: odds-ratio weight.", kind: "float", when: usesBeta },
  {
    key: "loss_type",
    label: "Loss",
    hint: "DPO: sigmoid (the paper's), ipo (IPO), hinge (SLiC), sigmoid_norm (SimPO-like)… KTO: kto or apo_zero_unpaired.",
    kind: "select",
    optional: true,
    optionsFor: (c) => LOSS_TYPES[c.method] ?? [""],
    optionLabels: { "": "default" },
    when: (c) => c.method in LOSS_TYPES,
  },
  { key: "warmup_ratio", label: "Warmup ratio", hint: "Share of the steps ramping the learning rate up from 0.", kind: "float", advanced: true },
  { key: "weight_decay", label: "Weight decay", hint: "AdamW decoupled weight decay.", kind: "float", advanced: true },
  { key: "lr_scheduler_type", label: "LR scheduler", hint: "How the learning rate changes over the run.", kind: "select", servedOptions: "lr_schedulers", advanced: true },
  { key: "lora_target_modules", label: "LoRA target modules", hint: "all-linear, or module names separated by commas (q_proj, v_proj).", kind: "text", advanced: true, when: usesLora },
  { key: "seed", label: "Seed", hint: "Adapter init, data order and validation split.", kind: "int", advanced: true },
  { key: "validation_split", label: "Validation split", hint: "Share of rows held out for eval loss; 0 turns evaluation off.", kind: "float", advanced: true },
  { key: "logging_steps", label: "Logging steps", hint: "A metric point every this many steps.", kind: "int", advanced: true },
  { key: "eval_steps", label: "Eval steps", hint: "Evaluate every this many steps; 0 = only before and after.", kind: "int", advanced: true },
  { key: "save_steps", label: "Save steps", hint: "A resumable checkpoint every this many steps; 0 = none.", kind: "int", advanced: true },
  { key: "early_stopping_patience", label: "Early stopping patience", hint: "Stop after this many evaluations without a better eval loss (needs eval steps > 0); empty = off.", kind: "int", advanced: true, optional: true },
  { key: "load_best_model_at_end", label: "Keep the best weights", hint: "Keep the evaluation with the lowest eval loss as the result; default: on with early stopping.", kind: "select", options: ["", "true", "false"], optionLabels: { "": "default", true: "yes", false: "no" }, advanced: true, optional: true },
  { key: "packing", label: "Packing", hint: "auto packs raw text into max-length blocks (no row cut); on packs chat rows too; off truncates each row.", kind: "select", options: ["auto", "on", "off"], advanced: true, when: isSft },
  { key: "train_on", label: "Train on", hint: "assistant: only the answers (and their end-of-turn); all: every token.", kind: "select", options: ["assistant", "all"], advanced: true, when: isSft },
  { key: "chat_template", label: "Chat template", hint: "The model's own by default; override with a named template (saved with the model).", kind: "select", options: ["", "chatml", "alpaca", "llama2", "completion"], optionLabels: { "": "the model's own" }, advanced: true, optional: true },
  { key: "precision", label: "Precision", hint: "auto: the fastest the device runs natively (bf16 where it has it, else fp32).", kind: "select", options: ["auto", "bf16", "fp16", "fp32"], advanced: true },
  { key: "gradient_checkpointing", label: "Gradient checkpointing", hint: "auto: only when the activations would not fit; on saves memory at ~30% speed.", kind: "select", options: ["auto", "on", "off"], advanced: true },
  { key: "num_processes", label: "Processes (GPUs)", hint: "Train on this many GPUs of one machine (data parallel, 1 to 8); each takes the batch size, and the quota counts every GPU.", kind: "int", advanced: true },
  { key: "sharding", label: "Sharding (several GPUs)", hint: "auto: full fine-tuning is sharded across the GPUs with FSDP, adapters are copied (DDP); zero3 needs DeepSpeed on the worker.", kind: "select", options: ["auto", "ddp", "fsdp", "zero3"], optionLabels: { ddp: "DDP (a copy per GPU)", fsdp: "FSDP (sharded)", zero3: "DeepSpeed ZeRO-3" }, advanced: true },
  { key: "report_to", label: "Report to", hint: "Experiment trackers that log the run: TensorBoard events are kept with the job; MLflow needs a server configured; W&B needs your API key (Settings).", kind: "multi", options: TRACKERS, optionLabels: { tensorboard: "TensorBoard", mlflow: "MLflow", wandb: "Weights & Biases" }, advanced: true, optional: true },
];

/** The engine's defaults (training/engine/spec.py HyperParams). */
export const HP_DEFAULTS: HpValues = {
  num_train_epochs: "1",
  max_steps: "100",
  learning_rate: "2e-4",
  per_device_train_batch_size: "4",
  gradient_accumulation_steps: "1",
  max_length: "1024",
  lora_r: "16",
  lora_alpha: "32",
  lora_dropout: "0",
  beta: "0.1",
  warmup_ratio: "0",
  weight_decay: "0",
  lr_scheduler_type: "linear",
  lora_target_modules: "all-linear",
  seed: "42",
  validation_split: "0.05",
  logging_steps: "1",
  eval_steps: "0",
  save_steps: "100",
  loss_type: "",
  packing: "auto",
  train_on: "assistant",
  precision: "auto",
  gradient_checkpointing: "auto",
  chat_template: "",
  early_stopping_patience: "",
  load_best_model_at_end: "",
  report_to: "",
  num_processes: "1",
  sharding: "auto",
};

function show(value: unknown, key?: string): string {
  if (Array.isArray(value)) return value.join(", ");
  if (typeof value === "boolean") return value ? "true" : "false";
  if (typeof value === "number") {
    // Learning rates read best as 2e-4 rather than 0.0002.
    if (key === "learning_rate" && value !== 0 && Math.abs(value) < 1e-2) return value.toExponential();
    return String(value);
  }
  return typeof value === "string" ? value : "";
}

/** Form values from a preset's hyperparameters on top of the defaults. */
export function valuesFromPreset(hp: Hyperparameters): { values: HpValues; trainBy: TrainBy } {
  const values = { ...HP_DEFAULTS };
  for (const key of Object.keys(HP_DEFAULTS) as HpKey[]) {
    if (hp[key] !== undefined && hp[key] !== null) values[key] = show(hp[key], key);
  }
  const steps = typeof hp.max_steps === "number" && hp.max_steps > 0;
  if (!steps) values.max_steps = HP_DEFAULTS.max_steps;
  return { values, trainBy: steps ? "steps" : "epochs" };
}

export function visibleFields(ctx: HpContext, advanced: boolean): HpField[] {
  return HP_FIELDS.filter((f) => !!f.advanced === advanced && (!f.when || f.when(ctx))).map((f) =>
    f.optionsFor ? { ...f, options: f.optionsFor(ctx) } : f,
  );
}

/** The API body's hyperparameters, and the fields that do not parse. */
export function buildHyperparameters(values: HpValues, ctx: HpContext): { hyperparameters: Hyperparameters; errors: Partial<Record<HpKey, string>> } {
  const out: Record<string, unknown> = {};
  const errors: Partial<Record<HpKey, string>> = {};
  for (const field of HP_FIELDS) {
    if (field.when && !field.when(ctx)) continue;
    const raw = (values[field.key] ?? "").trim();
    if (raw === "") {
      if (field.key === "num_train_epochs" || field.key === "max_steps") errors[field.key] = "Required.";
      continue;
    }
    if (field.optionsFor && !field.optionsFor(ctx).includes(raw)) continue; // e.g. a DPO loss after switching to KTO
    if (field.kind === "select") {
      out[field.key] = raw === "true" ? true : raw === "false" ? false : raw;
    } else if (field.kind === "multi") {
      out[field.key] = raw.split(",").map((s) => s.trim()).filter(Boolean);
    } else if (field.kind === "text") {
      const parts = raw.split(",").map((s) => s.trim()).filter(Boolean);
      out[field.key] = parts.length === 1 ? parts[0] : parts;
    } else {
      const n = Number(raw);
      if (!Number.isFinite(n)) errors[field.key] = "Enter a number.";
      else if (field.kind === "int" && !Number.isInteger(n)) errors[field.key] = "Enter a whole number.";
      else out[field.key] = n;
    }
  }
  if (ctx.trainBy === "epochs") out.max_steps = -1;
  return { hyperparameters: out as Hyperparameters, errors };
}

/** The wizard step that owns an API error key (e.g. "hyperparameters.learning_rate" → 3). */
export function stepForErrorKey(key: string): number {
  if (key === "base_model") return 0;
  if (["dataset", "dataset_version", "eval_dataset", "eval_dataset_version", "compare_prompts"].includes(key)) return 1;
  if (key === "method" || key === "weights") return 2;
  if (key === "hyperparameters" || key.startsWith("hyperparameters.") || key === "preset") return 3;
  if (key === "backend" || key === "modal_gpu") return 4;
  return 5;
}

export function hpKeyOf(errorKey: string): HpKey | null {
  if (!errorKey.startsWith("hyperparameters.")) return null;
  const key = errorKey.slice("hyperparameters.".length) as HpKey;
  return key in HP_DEFAULTS ? key : null;
}

export const ADVANCED_KEYS = new Set(HP_FIELDS.filter((f) => f.advanced).map((f) => f.key));
