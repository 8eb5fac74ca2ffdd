// Training endpoints (/api/training/…) and what the training wizard reads (base models, ready datasets, versions).
import { keepPreviousData, useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useMemo } from "react";
import { api } from "./client";
import type {
  BaseModelInfo,
  Dataset,
  FineTunedModelInfo,
  JobCreateInput,
  JobStatus,
  LogLine,
  MetricPoint,
  Paginated,
  TrainingEstimate,
  TrainingJob,
  TrainingOptions,
  TrainingPreset,
} from "./types";

const BASE = "/api/training/";

/** Not finished yet: waiting (a sweep variant over the concurrent-jobs limit), queued or on a worker. */
export const ACTIVE_STATUSES: readonly JobStatus[] = ["waiting", "queued", "starting", "running", "recovering"];
export const FINISHED_STATUSES: readonly JobStatus[] = ["succeeded", "failed", "cancelled"];
/** Dataset formats holding chosen/rejected pairs (DPO and ORPO need one of them; SFT refuses them). */
export const PREFERENCE_FORMATS: readonly string[] = ["preference", "hh_rlhf", "sharegpt_preference"];
/** Dataset formats of single answers labelled desirable or not (KTO needs one of them; SFT, DPO and ORPO refuse them). */
export const KTO_FORMATS: readonly string[] = ["kto"];
/** Largest page the metrics and logs endpoints return in one call. */
export const BACKFILL_PAGE = 5000;

export function isActive(status: JobStatus | undefined | null): boolean {
  return !!status && ACTIVE_STATUSES.includes(status);
}

export function isPreferenceFormat(format: string | null | undefined): boolean {
  return !!format && PREFERENCE_FORMATS.includes(format);
}

export function isKtoFormat(format: string | null | undefined): boolean {
  return !!format && KTO_FORMATS.includes(format);
}

export const trainingKeys = {
  all: ["training"] as const,
  jobs: (params: string) => ["training", "jobs", params] as const,
  job: (id: number) => ["training", "job", id] as const,
  presets: ["training", "presets"] as const,
  options: ["training", "options"] as const,
  estimate: (body: string) => ["training", "estimate", body] as const,
  baseModels: ["models", "base"] as const,
  models: ["models", "list", "for-jobs"] as const,
  readyDatasets: ["datasets", "list", "training-wizard"] as const,
  versions: (id: number) => ["training", "dataset-versions", id] as const,
};

export const jobUrl = (id: number, suffix = "") => `${BASE}jobs/${encodeURIComponent(String(id))}/${suffix}`;

function results<T>(data: Paginated<T> | T[]): T[] {
  return Array.isArray(data) ? data : data.results;
}

export interface JobFilters {
  status?: string;
  method?: string;
  backend?: string;
  page?: number;
}

export function jobsQueryString(filters: JobFilters): string {
  const params = new URLSearchParams();
  for (const key of ["status", "method", "backend"] as const) {
    const value = filters[key];
    if (value) params.set(key, value);
  }
  if (filters.page && filters.page > 1) params.set("page", String(filters.page));
  return params.toString();
}

export function useJobs(filters: JobFilters) {
  const qs = jobsQueryString(filters);
  return useQuery({
    queryKey: trainingKeys.jobs(qs),
    queryFn: ({ signal }) => api.get<Paginated<TrainingJob> | TrainingJob[]>(`${BASE}jobs/${qs ? `?${qs}` : ""}`, signal),
    select: (data): Paginated<TrainingJob> =>
      Array.isArray(data) ? { count: data.length, next: null, previous: null, results: data } : data,
    placeholderData: keepPreviousData,
    // While a listed job runs, keep its status and progress moving.
    refetchInterval: (query) => {
      const data = query.state.data;
      const rows = data ? results(data) : [];
      return rows.some((job) => isActive(job.status)) ? 3_000 : false;
    },
  });
}

export function useJob(id: number, options: { enabled?: boolean } = {}) {
  return useQuery({
    enabled: options.enabled ?? true,
    queryKey: trainingKeys.job(id),
    queryFn: ({ signal }) => api.get<TrainingJob>(jobUrl(id), signal),
    // The websocket pushes status changes; this slow poll is only a safety net while the job is active.
    refetchInterval: (query) => (isActive(query.state.data?.status) ? 10_000 : false),
    retry: (count, error) => count < 2 && !(error && "status" in error && (error as { status: number }).status === 404),
  });
}

export function fetchMetrics(id: number, afterSeq: number, signal?: AbortSignal): Promise<MetricPoint[]> {
  return api.get<MetricPoint[]>(`${jobUrl(id, "metrics/")}?after_seq=${afterSeq}`, signal);
}

export function fetchLogs(id: number, afterSeq: number, signal?: AbortSignal): Promise<LogLine[]> {
  return api.get<LogLine[]>(`${jobUrl(id, "logs/")}?after_seq=${afterSeq}`, signal);
}

/** The wizard's choices (learning-rate schedulers, Modal GPU kinds and their memory), as the API serves them. */
export function useTrainingOptions() {
  return useQuery({
    queryKey: trainingKeys.options,
    queryFn: ({ signal }) => api.get<TrainingOptions>(`${BASE}options/`, signal),
    staleTime: Infinity,
  });
}

/** The Modal GPU kinds in order, and the memory of each in GB (to explain a "will not fit"); empty while loading. */
export function useModalGpus(): { names: string[]; memoryGb: Record<string, number> } {
  const gpus = useTrainingOptions().data?.modal_gpus;
  return useMemo(
    () => ({
      names: (gpus ?? []).map((g) => g.name),
      memoryGb: Object.fromEntries((gpus ?? []).map((g) => [g.name, g.memory_gb])),
    }),
    [gpus],
  );
}

export function usePresets() {
  return useQuery({
    queryKey: trainingKeys.presets,
    queryFn: ({ signal }) => api.get<TrainingPreset[]>(`${BASE}presets/`, signal),
    staleTime: 5 * 60_000,
  });
}

export function useBaseModels() {
  return useQuery({
    queryKey: trainingKeys.baseModels,
    queryFn: ({ signal }) => api.get<Paginated<BaseModelInfo> | BaseModelInfo[]>("/api/models/base/?page_size=200", signal),
    select: results,
    staleTime: 30_000,
  });
}

/** Every dataset row of the user (each version is a row); the wizard keeps the ready ones. */
export function useReadyDatasets() {
  return useQuery({
    queryKey: trainingKeys.readyDatasets,
    queryFn: ({ signal }) => api.get<Paginated<Dataset> | Dataset[]>("/api/datasets/?page_size=200", signal),
    select: (data) => results(data).filter((d) => d.status === "ready"),
    staleTime: 10_000,
  });
}

export function useDatasetVersionsForTraining(id: number | null) {
  return useQuery({
    queryKey: trainingKeys.versions(id ?? 0),
    queryFn: ({ signal }) =>
      api.get<Paginated<Dataset> | Dataset[]>(`/api/datasets/${encodeURIComponent(String(id))}/versions/`, signal),
    select: results,
    enabled: id !== null,
    staleTime: 10_000,
  });
}

/** Fine-tuned models, to show the final loss of succeeded jobs in the list (one request for the whole page). */
export function useModelsByJob(enabled: boolean) {
  return useQuery({
    queryKey: trainingKeys.models,
    queryFn: ({ signal }) => api.get<Paginated<FineTunedModelInfo> | FineTunedModelInfo[]>("/api/models/?page_size=200", signal),
    select: (data) => {
      const byJob = new Map<number, FineTunedModelInfo>();
      for (const model of results(data)) if (model.job !== null) byJob.set(model.job, model);
      return byJob;
    },
    enabled,
    staleTime: 15_000,
    retry: false,
  });
}

export function useFineTunedModel(id: number | null | undefined) {
  return useQuery({
    queryKey: ["models", "detail", id ?? 0],
    queryFn: ({ signal }) => api.get<FineTunedModelInfo>(`/api/models/${encodeURIComponent(String(id))}/`, signal),
    enabled: typeof id === "number",
    retry: false,
  });
}

/** POST estimate/ for a job body (`null` while the wizard is incomplete); the caller debounces `body`. */
export function useEstimate(body: JobCreateInput | null) {
  const key = body ? JSON.stringify(body) : "";
  return useQuery({
    queryKey: trainingKeys.estimate(key),
    queryFn: () => api.post<TrainingEstimate>(`${BASE}estimate/`, body),
    enabled: body !== null,
    placeholderData: keepPreviousData,
    staleTime: 60_000,
    retry: false,
  });
}

export function useCreateJob() {
  const queryClient = useQueryClient();
  return useMutation({
    mutationFn: (input: JobCreateInput) => api.post<TrainingJob>(`${BASE}jobs/`, input),
    onSuccess: (job) => {
      queryClient.setQueryData(trainingKeys.job(job.id), job);
      void queryClient.invalidateQueries({ queryKey: ["training", "jobs"] });
    },
  });
}

function useJobAction<TInput>(path: (input: TInput) => [number, string, unknown]) {
  const queryClient = useQueryClient();
  return useMutation({
    mutationFn: (input: TInput) => {
      const [id, suffix, body] = path(input);
      return api.post<TrainingJob>(jobUrl(id, suffix), body);
    },
    onSuccess: (job) => {
      queryClient.setQueryData(trainingKeys.job(job.id), job);
      void queryClient.invalidateQueries({ queryKey: ["training", "jobs"] });
    },
  });
}

/** Delete a finished job (its metrics, logs and checkpoints; the model it produced is kept). */
export function useDeleteJob() {
  const queryClient = useQueryClient();
  return useMutation({
    mutationFn: (id: number) => api.delete<unknown>(jobUrl(id)),
    onSuccess: (_data, id) => {
      queryClient.removeQueries({ queryKey: trainingKeys.job(id) });
      void queryClient.invalidateQueries({ queryKey: ["training", "jobs"] });
    },
  });
}

export const useCancelJob = () => useJobAction((id: number) => [id, "cancel/", {}]);
export const useResumeJob = () => useJobAction((id: number) => [id, "resume/", {}]);
/** Continue a succeeded job: answers the NEW job (201). */
export const useContinueJob = () =>
  useJobAction(({ id, extraEpochs }: { id: number; extraEpochs: number }) => [id, "continue/", { extra_epochs: extraEpochs }]);
