// Shapes of the accounts, health and notification API (see /api/schema/ for the full reference). Where the schema is
// exact, a shape is an alias of the type generated from it (schema.gen.ts, `make types`); the hand-written ones are
// richer than the schema says (JSON fields, values the serializer leaves untyped) or are not REST bodies.
import type { components } from "./schema.gen";

type Schemas = components["schemas"];

export type QuotaMap = Record<string, number | string | boolean | null>;

export interface User {
  id: number;
  username: string;
  email: string;
  display_name: string;
  has_hf_token: boolean;
  hf_token_last4: string | null;
  quotas: QuotaMap;
  usage: QuotaMap;
  date_joined?: string;
  notify_email?: boolean;
  webhook_url?: string;
  has_webhook_secret?: boolean;
}

export interface HfTokenStatus {
  present: boolean;
  last4: string | null;
  hf_username: string | null;
}

export interface HfTokenSaved {
  valid: boolean;
  hf_username: string | null;
  last4: string | null;
}

export type ApiToken = Schemas["ApiToken"] & {
  /** Only present in the response to the create call (ApiTokenCreated). */
  key?: string;
};

export interface Paginated<T> {
  count: number;
  next: string | null;
  previous: string | null;
  results: T[];
}

export type Health = Schemas["Health"];

export type RegisterInput = Schemas["RegisterRequest"];

export type LoginInput = Schemas["LoginRequest"];

export interface ProfileInput {
  display_name?: string;
  email?: string;
  notify_email?: boolean;
  webhook_url?: string;
  /** Write-only; "" clears it. */
  webhook_secret?: string;
}

export type ChangePasswordInput = Schemas["ChangePasswordRequest"];

export interface TaskMessage {
  type: "task";
  kind: string;
  id: string | number;
  progress?: number | null;
  status?: string;
  [key: string]: unknown;
}

export interface NotificationMessage {
  type: "notification";
  title?: string;
  message?: string;
  level?: string;
  [key: string]: unknown;
}

export type SocketMessage = TaskMessage | NotificationMessage | { type: string; [key: string]: unknown };

// ---------- Datasets (docs/DATASETS-CONTRACT.md) ----------

export type DatasetStatus = Schemas["DatasetStatusEnum"];
export type Verdict = Schemas["VerdictEnum"];

export interface DatasetFile {
  id: number;
  role: "source" | "train" | "validation" | string;
  original_filename: string;
  kind: string;
  compressed?: boolean;
  size_bytes: number;
  sha256: string;
}

export interface DatasetOperation {
  type: "upload" | "preprocess" | "split" | string;
  steps?: PreprocessStep[];
  [key: string]: unknown;
}

export interface Dataset {
  id: number;
  name: string;
  status: DatasetStatus;
  progress: number | null;
  /** The detected format (or the user's override); "" until known. */
  format: string | null;
  /** The format the user chose; "" = detect automatically. */
  format_override?: string;
  column_mapping: Record<string, string> | null;
  version: number;
  root_id: number;
  parent_id: number | null;
  is_latest: boolean;
  row_count: number | null;
  size_bytes: number | null;
  original_filename: string;
  verdict: Verdict | "" | null;
  error: string;
  files: DatasetFile[];
  operation: DatasetOperation | Record<string, never> | null;
  validation_settings?: { base_model?: number | null; max_length?: number };
  created: string;
  updated: string;
}

export interface ReportError {
  file?: string;
  line?: number | null;
  message: string;
}

export interface ReportWarning {
  code: string;
  message: string;
  count?: number;
  lines?: number[];
}

export interface HistogramBin {
  start: number;
  end: number;
  count: number;
}

export interface TokenReport {
  tokenizer: string;
  max_length: number;
  mean: number;
  percentiles: Partial<Record<"p50" | "p90" | "p95" | "p99" | "max", number>>;
  histogram: HistogramBin[];
  over_max_length: number;
  over_max_length_lines?: number[];
}

export interface DatasetStatistics {
  rows: number;
  format: string;
  chars: { mean: number; p50: number; p95: number; max: number };
  turns: { mean: number; max: number; histogram: { turns: number; count: number }[] } | null;
  roles: Partial<Record<"system" | "user" | "assistant" | "tool", number>> | null;
  preference: {
    prompt_chars_mean: number;
    chosen_chars_mean: number;
    rejected_chars_mean: number;
    identical_pairs: number;
  } | null;
}

export interface ValidationReport {
  verdict: Verdict;
  format: string | null;
  format_detected: boolean;
  column_mapping: Record<string, string> | null;
  rows: number;
  rows_valid: number;
  files: { name: string; rows: number }[];
  columns: Record<string, { missing: number; empty: number }>;
  errors: ReportError[];
  errors_total: number;
  warnings: ReportWarning[];
  duplicates: { exact: number; normalized: number; examples: number[][] } | null;
  pii: Record<string, { count: number; lines?: number[] }> | null;
  quality: { lines?: Record<string, number[]>; [key: string]: number | Record<string, number[]> | undefined } | null;
  tokens: TokenReport | null;
  statistics: DatasetStatistics | null;
  /** Tool-calling formats: rows with tool calls or results, and how many of each (null: none). */
  tool_calling?: { rows: number; calls: number; results: number } | null;
  elapsed_s: number;
}

export interface PreviewSegment {
  text: string;
  trained: boolean;
  truncated?: boolean;
}

export interface ToolCall {
  type?: string;
  id?: string;
  function: { name: string; arguments: Record<string, unknown> };
}

export interface ChatMessage {
  role: string;
  content: string;
  /** Assistant turns of tool-calling rows: the calls it makes (trained). */
  tool_calls?: ToolCall[];
  /** Tool turns: the tool's name / the call they answer. */
  name?: string;
  tool_call_id?: string;
}

export interface PreviewRow {
  index: number;
  line: number | null;
  segments: PreviewSegment[];
  messages: ChatMessage[] | null;
  preference: {
    prompt?: ChatMessage[];
    chosen?: ChatMessage[];
    rejected?: ChatMessage[];
    /** prompt + rejected response, rendered and split like `segments`. */
    rejected_segments?: PreviewSegment[];
  } | null;
  truncated: boolean;
  tokens: number;
  /** Tool-calling rows: the tool specs listed to the model. */
  tools?: { type: string; function: { name: string; description?: string } }[];
}

export interface PreviewPage {
  count: number;
  offset: number;
  limit: number;
  results: PreviewRow[];
}

export type PreprocessStep =
  | { op: "normalize_unicode" }
  | { op: "strip_whitespace" }
  | { op: "dedupe"; mode: "exact" | "normalized" }
  | { op: "redact_pii" }
  | { op: "apply_template"; template: "alpaca" | "chatml" | "llama2" | "completion" }
  | { op: "chunk"; max_tokens: number; overlap: number }
  | { op: "filter_length"; min_chars?: number; max_tokens?: number };

export interface DatasetUploadInput {
  files: File[];
  name?: string;
  format?: string;
  /** Target field -> source path; sent as a JSON string. */
  column_mapping?: Record<string, string> | null;
}

// ---------- Training (/api/training/, /ws/training/<id>/) ----------

export type JobStatus = Schemas["JobStatusEnum"];
export type TrainingMethod = Schemas["MethodEnum"];
export type TrainingWeights = Schemas["WeightsEnum"];
export type TrainingBackend = Schemas["JobBackendEnum"];

/** Hyperparameters, with the Hugging Face names; anything left out takes the preset's or the engine's default. */
export interface Hyperparameters {
  num_train_epochs?: number;
  max_steps?: number;
  learning_rate?: number;
  per_device_train_batch_size?: number;
  gradient_accumulation_steps?: number;
  max_length?: number;
  warmup_ratio?: number;
  weight_decay?: number;
  lr_scheduler_type?: string;
  lora_r?: number;
  lora_alpha?: number;
  lora_dropout?: number;
  lora_target_modules?: string | string[];
  beta?: number;
  seed?: number;
  validation_split?: number;
  logging_steps?: number;
  eval_steps?: number;
  save_steps?: number;
  loss_type?: string | null;
  packing?: "auto" | "on" | "off";
  precision?: string;
  gradient_checkpointing?: string;
  train_on?: "assistant" | "all";
  chat_template?: string | null;
  early_stopping_patience?: number | null;
  load_best_model_at_end?: boolean | null;
  [key: string]: unknown;
}

export interface TrainingJob {
  id: number;
  name: string;
  status: JobStatus;
  phase: string;
  base_model: number;
  base_model_name: string;
  dataset: number;
  dataset_name: string;
  dataset_version: number;
  method: TrainingMethod;
  weights: TrainingWeights;
  hyperparameters: Hyperparameters;
  backend: TrainingBackend;
  modal_gpu: string;
  attempts: number;
  last_checkpoint_step: number;
  current_step: number;
  total_steps: number;
  progress: number;
  eta_s: number | null;
  error: string;
  error_kind: string;
  cancel_requested: boolean;
  /** The fine-tuned model produced by a succeeded run. */
  model: number | null;
  cost_usd: number | null;
  init_from_job: number | null;
  /** Held-out prompts both models answer for the evaluation report (0: none). */
  compare_prompts?: number;
  /** The dataset (version) evaluated on, when not the training dataset's validation split. */
  eval_dataset?: number | null;
  versions: Record<string, string>;
  dataset_sha256: string;
  metric_seq: number;
  log_seq: number;
  created: string;
  started: string | null;
  finished: string | null;
  /** Present when the API includes the run's result (train_loss_last, eval_loss_after, ...). */
  result?: { metrics?: Record<string, unknown>; [key: string]: unknown } | null;
}

export interface JobCreateInput {
  name?: string;
  base_model: number;
  dataset: number;
  dataset_version?: number | null;
  method: TrainingMethod;
  weights: TrainingWeights;
  hyperparameters: Hyperparameters;
  backend: TrainingBackend;
  modal_gpu?: string;
  compare_prompts?: number;
  eval_dataset?: number | null;
  eval_dataset_version?: number | null;
}

/** One point of a job's metric stream: kind "metric" (training step) or "eval" (eval_loss). */
export interface MetricPoint {
  seq: number;
  kind: "metric" | "eval" | string;
  step: number;
  epoch: number | null;
  loss: number | null;
  eval_loss: number | null;
  learning_rate: number | null;
  grad_norm: number | null;
  memory_mb: number | null;
  tokens_per_s: number | null;
  eta_s: number | null;
  time: string;
  total_steps?: number;
  phase?: string;
  perplexity?: number | null;
  [key: string]: unknown;
}

export interface LogLine {
  seq: number;
  level: string;
  line: string;
  time?: string;
}

export interface TrainingPreset {
  id: string;
  name: string;
  description: string;
  method: TrainingMethod;
  weights: TrainingWeights;
  hyperparameters: Hyperparameters;
}

export interface TrainingEstimate {
  rows: number;
  steps: number;
  tokens: number;
  mean_tokens_per_row: number;
  duration_s: number | null;
  peak_memory_gb_by_method: Record<TrainingWeights, number>;
  peak_memory_gb: number;
  fits: boolean;
  memory_available_gb: number;
  modal_cost_usd_by_gpu: Record<string, number>;
  modal: Record<string, { duration_s: number; cost_usd: number; fits: boolean }>;
  notes: string[];
}

export interface BaseModelInfo {
  id: number;
  name: string;
  source: string;
  repo_id: string;
  architecture: string;
  parameters: number | null;
  context_length: number | null;
  license: string;
  has_chat_template: boolean;
  size_bytes: number | null;
  status: string;
  description: string;
}

export interface FineTunedModelInfo {
  id: number;
  name: string;
  version: number;
  base_model: number;
  base_model_name: string;
  job: number | null;
  method: string;
  weights: string;
  metrics: Record<string, unknown>;
  hyperparameters: Hyperparameters;
  tag: string;
  notes: string;
  created: string;
}

/** GET /api/training/options/: the wizard's choices, served from the engine and the settings (not copied here). */
export type TrainingOptions = Schemas["TrainingOptions"];
export type ModalGpu = Schemas["ModalGpu"];

export type JobSocketMessage =
  | ({ type: "metric" } & MetricPoint)
  | { type: "status"; status: JobStatus; phase?: string; error?: string; model?: number; [key: string]: unknown }
  | ({ type: "log" } & LogLine)
  | { type: "checkpoint"; step: number };
