// Models endpoints (/api/models/…): the fine-tuned registry, exports, Push to Hugging Face, Import to Ollama,
// the base-model catalogue with Hub search/download and fit estimates, and playground generation.
import { keepPreviousData, useMutation, useQuery, useQueryClient, type QueryClient } from "@tanstack/react-query";
import { api } from "./client";
import type { components } from "./schema.gen";
import type { BaseModelInfo, FineTunedModelInfo, MetricPoint, Paginated, ToolCall } from "./types";

type Schemas = components["schemas"];

const BASE = "/api/models/";

// ---------- Types (shared/API.md, Models; fields may grow, so most are optional) ----------

export type TaskState = "queued" | "running" | "succeeded" | "failed";

export interface FineTunedModel extends FineTunedModelInfo {
  /** The newest version of its name. */
  latest?: boolean;
  dataset?: number | null;
  dataset_name?: string;
  dataset_version?: number | null;
  base_model_repo_id?: string;
  eval_report?: Record<string, unknown> | null;
  loss_curve?: LossPoint[];
  size_bytes?: number | null;
  [key: string]: unknown;
}

export interface LossPoint {
  step: number;
  loss?: number | null;
  eval_loss?: number | null;
  [key: string]: unknown;
}

export interface CompareSide {
  model?: FineTunedModel;
  loss_curve?: LossPoint[] | MetricPoint[];
  [key: string]: unknown;
}

/** GET <id>/compare/?other=<id>: both models, their hyperparameter differences, metrics and loss curves. */
export interface CompareResult {
  a?: FineTunedModel | CompareSide;
  b?: FineTunedModel | CompareSide;
  model?: FineTunedModel;
  other?: FineTunedModel;
  hyperparameters?: Record<string, unknown>;
  metrics?: Record<string, unknown>;
  loss_curves?: Record<string, LossPoint[]> | LossPoint[][];
  [key: string]: unknown;
}

export interface Verification {
  passed?: boolean;
  ok?: boolean;
  verdict?: string;
  message?: string;
  explanation?: string;
  [key: string]: unknown;
}

export interface ModelExport {
  id: number;
  model?: number;
  format: "adapter" | "merged" | "gguf";
  quantization: string;
  status: TaskState;
  progress: number;
  stage: string;
  error: string;
  size_bytes: number;
  sha256?: string;
  verification: Verification | null;
  /** A GGUF that passed the llama.cpp verification. */
  verified?: boolean;
  file_name?: string;
  created: string;
  finished?: string | null;
}

export interface HubPush {
  id: number;
  model?: number;
  status: TaskState;
  progress?: number;
  stage?: string;
  repo_id?: string;
  repo_name?: string;
  private?: boolean;
  repo_url: string;
  commit_sha?: string;
  error: string;
  retryable: boolean;
  created?: string;
}

export interface OllamaImport {
  id: number;
  model?: number;
  status: TaskState;
  progress?: number;
  stage?: string;
  ollama_name: string;
  /** The GGUF quantization imported (lower case, e.g. "q4_k_m"). */
  quantization?: string;
  run_command: string;
  error: string;
  verification?: Verification | null;
  created?: string;
}

export interface BaseModel extends BaseModelInfo {
  gated?: boolean;
  download_progress?: number;
  error?: string;
  created?: string;
}

export interface HubSearchResult {
  repo_id: string;
  id?: string;
  downloads?: number | null;
  likes?: number | null;
  pipeline_tag?: string | null;
  gated?: boolean | string | null;
  private?: boolean;
  last_modified?: string | null;
  [key: string]: unknown;
}

export interface HubModelInfo {
  repo_id: string;
  architecture?: string;
  parameters?: number | null;
  license?: string;
  gated?: boolean | string | null;
  size_bytes?: number | null;
  has_chat_template?: boolean;
  context_length?: number | null;
  downloaded?: boolean;
  base_model?: number | null;
  /** Why the model cannot be used here (no safetensors, not a causal LM, …). */
  problems?: string[];
  downloadable?: boolean;
  [key: string]: unknown;
}

export interface FitEstimate {
  method?: string;
  max_length?: number;
  batch_size?: number;
  /** Memory needed by method (full / lora / qlora), in GB. */
  memory_gb_by_method?: Record<string, number>;
  peak_memory_gb_by_method?: Record<string, number>;
  memory_gb?: number;
  available_gb?: number;
  memory_available_gb?: number;
  fits?: boolean | Record<string, boolean>;
  notes?: string[];
  [key: string]: unknown;
}

export interface ChatTurn {
  /** `tool`: a tool's result, after the assistant turn that called it (the request then carries the `tools`). */
  role: "system" | "user" | "assistant" | "tool";
  content: string;
}

export interface GenerateParams {
  messages: ChatTurn[];
  max_new_tokens: number;
  temperature: number;
  top_p: number;
  /** Optional tool (function) specs offered to the model; the answer's `<tool_call>` blocks come back as `tool_calls`. */
  tools?: Record<string, unknown>[];
}

// ---------- Helpers ----------

export const TERMINAL: readonly TaskState[] = ["succeeded", "failed"];
export const isTaskActive = (status: string | undefined | null) => status === "queued" || status === "running";

/** The GGUF quantizations the server exports (models_app/exports.py QUANTIZATIONS), largest first. */
export const GGUF_QUANTIZATIONS: { value: string; label: string; hint: string }[] = [
  { value: "f16", label: "F16", hint: "16-bit: the full-precision GGUF, the largest file." },
  { value: "q8_0", label: "Q8_0", hint: "8-bit, about half of F16; nearly lossless." },
  { value: "q6_k", label: "Q6_K", hint: "6-bit k-quant; very close to F16." },
  { value: "q5_k_m", label: "Q5_K_M", hint: "5-bit k-quant; a good balance of size and quality." },
  { value: "q4_k_m", label: "Q4_K_M", hint: "4-bit k-quant, about a third of F16: the usual choice for local use." },
];

/** The model-name pattern Ollama accepts here (the server checks the same). */
export const OLLAMA_NAME_PATTERN = /^[a-z0-9][a-z0-9._-]{0,62}(:[a-z0-9._-]{1,64})?$/;

export function results<T>(data: Paginated<T> | T[] | undefined): T[] {
  if (!data) return [];
  return Array.isArray(data) ? data : data.results;
}

export function isLatest(model: FineTunedModel): boolean {
  if (typeof model.latest === "boolean") return model.latest;
  return model.is_latest === true;
}

export function finalLoss(model: FineTunedModelInfo): number | null {
  for (const key of ["train_loss_last", "train_loss", "loss"]) {
    const value = model.metrics?.[key];
    if (typeof value === "number" && Number.isFinite(value)) return value;
  }
  return null;
}

export const modelUrl = (id: number, suffix = "") => `${BASE}${encodeURIComponent(String(id))}/${suffix}`;

export const modelKeys = {
  all: ["models"] as const,
  list: ["models", "list"] as const,
  detail: (id: number) => ["models", "detail", id] as const,
  versions: (id: number) => ["models", "detail", id, "versions"] as const,
  compare: (a: number, b: number) => ["models", "compare", a, b] as const,
  exports: (id: number) => ["models", "detail", id, "exports"] as const,
  pushes: (id: number) => ["models", "detail", id, "pushes"] as const,
  push: (id: number) => ["models", "push", id] as const,
  imports: (id: number) => ["models", "detail", id, "ollama-imports"] as const,
  ollamaImport: (id: number) => ["models", "ollama-import", id] as const,
  base: ["models", "base"] as const,
  hubSearch: (q: string) => ["models", "hub", "search", q] as const,
  hubInfo: (repo: string) => ["models", "hub", "info", repo] as const,
  fit: (id: number, qs: string) => ["models", "base", id, "fit", qs] as const,
};

/** Poll every `ms` while any item is queued or running (the notifications socket usually beats it). */
function pollWhileActive<T extends { status?: string }>(ms: number) {
  return (query: { state: { data?: Paginated<T> | T[] | T } }) => {
    const data = query.state.data;
    if (!data) return false;
    const rows: T[] = Array.isArray(data) ? data : "results" in (data as object) ? (data as Paginated<T>).results : [data as T];
    return rows.some((row) => isTaskActive(row.status)) ? ms : false;
  };
}

// ---------- Fine-tuned models ----------

export function useModels() {
  return useQuery({
    queryKey: modelKeys.list,
    queryFn: ({ signal }) => api.get<Paginated<FineTunedModel> | FineTunedModel[]>(`${BASE}?page_size=200`, signal),
    select: (data) => results(data),
  });
}

export function useModel(id: number) {
  return useQuery({
    queryKey: modelKeys.detail(id),
    queryFn: ({ signal }) => api.get<FineTunedModel>(modelUrl(id), signal),
    enabled: Number.isFinite(id),
    retry: (count, error) => count < 2 && !(error && "status" in error && (error as { status: number }).status === 404),
  });
}

export function useModelVersions(id: number) {
  return useQuery({
    queryKey: modelKeys.versions(id),
    queryFn: ({ signal }) => api.get<Paginated<FineTunedModel> | FineTunedModel[]>(modelUrl(id, "versions/"), signal),
    select: (data) => results(data),
    enabled: Number.isFinite(id),
  });
}

export function useUpdateModel(id: number) {
  const queryClient = useQueryClient();
  return useMutation({
    mutationFn: (input: { tag?: string; notes?: string; name?: string }) => api.patch<FineTunedModel>(modelUrl(id), input),
    onSuccess: (model) => {
      queryClient.setQueryData(modelKeys.detail(id), model);
      void queryClient.invalidateQueries({ queryKey: modelKeys.list });
      void queryClient.invalidateQueries({ queryKey: modelKeys.versions(id) });
    },
  });
}

export function useDeleteModel() {
  const queryClient = useQueryClient();
  return useMutation({
    mutationFn: (id: number) => api.delete(modelUrl(id)),
    onSuccess: (_data, id) => {
      queryClient.removeQueries({ queryKey: modelKeys.detail(id) });
      void queryClient.invalidateQueries({ queryKey: modelKeys.all });
    },
  });
}

export function useCompare(a: number | null, b: number | null) {
  return useQuery({
    queryKey: modelKeys.compare(a ?? 0, b ?? 0),
    queryFn: ({ signal }) => api.get<CompareResult>(`${modelUrl(a ?? 0, "compare/")}?other=${encodeURIComponent(String(b))}`, signal),
    enabled: a !== null && b !== null && a !== b,
    retry: false,
  });
}

// ---------- Exports ----------

export function useExports(modelId: number) {
  return useQuery({
    queryKey: modelKeys.exports(modelId),
    queryFn: ({ signal }) => api.get<Paginated<ModelExport> | ModelExport[]>(modelUrl(modelId, "exports/"), signal),
    select: (data) => results(data),
    refetchInterval: pollWhileActive<ModelExport>(2_000),
  });
}

export function useStartExport(modelId: number) {
  const queryClient = useQueryClient();
  return useMutation({
    mutationFn: (input: { format: ModelExport["format"]; quantization?: string }) =>
      api.post<ModelExport>(modelUrl(modelId, "export/"), input),
    onSuccess: () => void queryClient.invalidateQueries({ queryKey: modelKeys.exports(modelId) }),
  });
}

/** GET exports/<id>/download/: a short-lived signed link to the file (followed by the browser). */
export async function fetchDownloadLink(exportId: number): Promise<string> {
  const body = await api.get<{ url?: string; download_url?: string; expires?: string } | string>(
    `${BASE}exports/${encodeURIComponent(String(exportId))}/download/`,
  );
  if (typeof body === "string") return body;
  const url = body?.url ?? body?.download_url;
  if (!url) throw new Error("The server did not return a download link.");
  return url;
}

// ---------- Push to Hugging Face ----------

export function usePushes(modelId: number) {
  return useQuery({
    queryKey: modelKeys.pushes(modelId),
    queryFn: ({ signal }) => api.get<Paginated<HubPush> | HubPush[]>(modelUrl(modelId, "pushes/"), signal),
    select: (data) => results(data),
  });
}

export function usePush(pushId: number | null) {
  return useQuery({
    queryKey: modelKeys.push(pushId ?? 0),
    queryFn: ({ signal }) => api.get<HubPush>(`${BASE}push-hub/${encodeURIComponent(String(pushId))}/`, signal),
    enabled: pushId !== null,
    refetchInterval: pollWhileActive<HubPush>(2_000),
  });
}

export function useStartPush(modelId: number) {
  const queryClient = useQueryClient();
  return useMutation({
    mutationFn: (input: { repo_name: string; private: boolean }) => api.post<HubPush>(modelUrl(modelId, "push-hub/"), input),
    onSuccess: (push) => {
      queryClient.setQueryData(modelKeys.push(push.id), push);
      void queryClient.invalidateQueries({ queryKey: modelKeys.pushes(modelId) });
    },
  });
}

export function useRetryPush(modelId: number) {
  const queryClient = useQueryClient();
  return useMutation({
    mutationFn: (pushId: number) => api.post<HubPush>(`${BASE}push-hub/${encodeURIComponent(String(pushId))}/retry/`),
    onSuccess: (push) => {
      queryClient.setQueryData(modelKeys.push(push.id), push);
      void queryClient.invalidateQueries({ queryKey: modelKeys.pushes(modelId) });
    },
  });
}

// ---------- Import to Ollama ----------

export function useOllamaImports(modelId: number) {
  return useQuery({
    queryKey: modelKeys.imports(modelId),
    queryFn: ({ signal }) => api.get<Paginated<OllamaImport> | OllamaImport[]>(modelUrl(modelId, "ollama-imports/"), signal),
    select: (data) => results(data),
  });
}

export function useOllamaImport(importId: number | null) {
  return useQuery({
    queryKey: modelKeys.ollamaImport(importId ?? 0),
    queryFn: ({ signal }) => api.get<OllamaImport>(`${BASE}ollama-imports/${encodeURIComponent(String(importId))}/`, signal),
    enabled: importId !== null,
    refetchInterval: pollWhileActive<OllamaImport>(2_000),
  });
}

export function useStartOllamaImport(modelId: number) {
  const queryClient = useQueryClient();
  return useMutation({
    mutationFn: (input: { name: string; quantization?: string }) => api.post<OllamaImport>(modelUrl(modelId, "ollama-import/"), input),
    onSuccess: (item) => {
      queryClient.setQueryData(modelKeys.ollamaImport(item.id), item);
      void queryClient.invalidateQueries({ queryKey: modelKeys.imports(modelId) });
    },
  });
}

// ---------- Base models and the Hub ----------

export function useBaseCatalog() {
  return useQuery({
    queryKey: modelKeys.base,
    queryFn: ({ signal }) => api.get<Paginated<BaseModel> | BaseModel[]>(`${BASE}base/?page_size=200`, signal),
    select: (data) => results(data),
    refetchInterval: (query) => {
      const rows = results(query.state.data);
      return rows.some((row) => row.status === "downloading") ? 2_000 : false;
    },
  });
}

export function useHubSearch(q: string) {
  return useQuery({
    queryKey: modelKeys.hubSearch(q),
    queryFn: ({ signal }) =>
      api.get<Paginated<HubSearchResult> | HubSearchResult[] | { results: HubSearchResult[] }>(
        `${BASE}hub/search/?q=${encodeURIComponent(q)}`,
        signal,
      ),
    select: (data) => (Array.isArray(data) ? data : data.results).map((r) => ({ ...r, repo_id: r.repo_id ?? r.id ?? "" })),
    enabled: q.trim().length > 0,
    placeholderData: keepPreviousData,
    retry: false,
    staleTime: 60_000,
  });
}

export function useHubInfo(repoId: string | null) {
  return useQuery({
    queryKey: modelKeys.hubInfo(repoId ?? ""),
    queryFn: ({ signal }) => api.get<HubModelInfo>(`${BASE}hub/info/?repo_id=${encodeURIComponent(repoId ?? "")}`, signal),
    enabled: !!repoId,
    retry: false,
    staleTime: 60_000,
  });
}

export function useHubDownload() {
  const queryClient = useQueryClient();
  return useMutation({
    mutationFn: (repoId: string) => api.post<BaseModel | Record<string, unknown>>(`${BASE}hub/download/`, { repo_id: repoId }),
    onSuccess: () => void queryClient.invalidateQueries({ queryKey: modelKeys.base }),
  });
}

export function useFit(baseId: number | null, params: { method: string; max_length: number; batch_size: number }) {
  const qs = new URLSearchParams({
    method: params.method,
    max_length: String(params.max_length),
    batch_size: String(params.batch_size),
  }).toString();
  return useQuery({
    queryKey: modelKeys.fit(baseId ?? 0, qs),
    queryFn: ({ signal }) => api.get<FitEstimate>(`${BASE}base/${encodeURIComponent(String(baseId))}/fit/?${qs}`, signal),
    enabled: baseId !== null && params.max_length > 0 && params.batch_size > 0,
    placeholderData: keepPreviousData,
    retry: false,
    staleTime: 60_000,
  });
}

// ---------- Playground (REST fallback; streaming is in hooks/useGenerateStream.ts) ----------

/** One whole answer from the REST endpoint (the playground's fallback when the socket cannot open): the generated
 * `GenerateAnswer`, with the calls and the base model's answer (untyped JSON there) given their real shapes. */
type AnswerFields = Omit<Schemas["GenerateAnswer"], "tool_calls" | "base"> & { tool_calls?: ToolCall[] };
export type GenerateOnceAnswer = AnswerFields & { base?: AnswerFields };

export function generateOnce(
  target: { kind: "model" | "base"; id: number },
  params: GenerateParams & { compare_with_base?: boolean },
): Promise<GenerateOnceAnswer> {
  const path = target.kind === "base" ? `${BASE}base/${target.id}/generate/` : modelUrl(target.id, "generate/");
  return api.post<GenerateOnceAnswer>(path, params);
}

// ---------- Live task updates ----------

/** The task kinds on /ws/notifications/ that belong to a model, and the queries each refreshes. */
export function refreshForTask(queryClient: QueryClient, kind: string, id: number | string, modelId?: number): void {
  const k = kind.toLowerCase();
  const numericId = Number(id);
  if (k.includes("export")) {
    if (modelId !== undefined) void queryClient.invalidateQueries({ queryKey: modelKeys.exports(modelId) });
  } else if (k.includes("push") || k.includes("hub_upload")) {
    void queryClient.invalidateQueries({ queryKey: modelKeys.push(numericId) });
    if (modelId !== undefined) void queryClient.invalidateQueries({ queryKey: modelKeys.pushes(modelId) });
  } else if (k.includes("ollama")) {
    void queryClient.invalidateQueries({ queryKey: modelKeys.ollamaImport(numericId) });
    if (modelId !== undefined) void queryClient.invalidateQueries({ queryKey: modelKeys.imports(modelId) });
  } else if (k.includes("download")) {
    void queryClient.invalidateQueries({ queryKey: modelKeys.base });
  }
}
