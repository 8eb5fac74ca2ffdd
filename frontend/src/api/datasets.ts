// Datasets endpoints (/api/datasets/…): react-query hooks, and the multipart upload over XMLHttpRequest
// (fetch cannot report upload progress).
import { keepPreviousData, useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { api, ApiError, ensureCsrf, NETWORK_ERROR_MESSAGE, readCookie, toApiError } from "./client";
import type {
  Dataset,
  DatasetStatistics,
  DatasetStatus,
  DatasetUploadInput,
  Paginated,
  PreprocessStep,
  PreviewPage,
  ValidationReport,
} from "./types";

const BASE = "/api/datasets/";

export const datasetKeys = {
  all: ["datasets"] as const,
  list: (url: string) => ["datasets", "list", url] as const,
  detail: (id: number) => ["datasets", "detail", id] as const,
  /** Report, preview and statistics are keyed by the dataset's `updated` so a re-run fetches them afresh. */
  report: (id: number, updated: string) => ["datasets", "detail", id, "report", updated] as const,
  preview: (id: number, updated: string, offset: number, limit: number) =>
    ["datasets", "detail", id, "preview", updated, offset, limit] as const,
  statistics: (id: number, updated: string) => ["datasets", "detail", id, "statistics", updated] as const,
  versions: (id: number) => ["datasets", "detail", id, "versions"] as const,
};

export const datasetUrl = (id: number, suffix = "") => `${BASE}${encodeURIComponent(String(id))}/${suffix}`;
export const downloadUrl = (id: number) => datasetUrl(id, "download/");

/** Statuses during which the background worker is still reading the files. */
export function isBusy(status: DatasetStatus | undefined | null): boolean {
  return status === "uploaded" || status === "processing";
}

const POLL_MS = 1_500;

/** Keep only the path and query of a pagination link, so the request stays same-origin. */
function relative(url: string): string {
  try {
    const parsed = new URL(url, window.location.origin);
    return parsed.pathname + parsed.search;
  } catch {
    return url;
  }
}

export function useDatasets(url: string = BASE) {
  return useQuery({
    queryKey: datasetKeys.list(url),
    queryFn: ({ signal }) => api.get<Paginated<Dataset> | Dataset[]>(url, signal),
    select: (data): Paginated<Dataset> =>
      Array.isArray(data)
        ? { count: data.length, next: null, previous: null, results: data }
        : { ...data, next: data.next && relative(data.next), previous: data.previous && relative(data.previous) },
    placeholderData: keepPreviousData,
    // While any row is being processed, poll so its status and progress move.
    refetchInterval: (query) => {
      const data = query.state.data;
      const rows = Array.isArray(data) ? data : data?.results ?? [];
      return rows.some((d) => isBusy(d.status)) ? 2_000 : false;
    },
  });
}

export function useDataset(id: number, enabled = true) {
  return useQuery({
    queryKey: datasetKeys.detail(id),
    queryFn: ({ signal }) => api.get<Dataset>(datasetUrl(id), signal),
    enabled,
    refetchInterval: (query) => (isBusy(query.state.data?.status) ? POLL_MS : false),
    staleTime: 2_000,
  });
}

export function useDatasetReport(dataset: Dataset | undefined) {
  const ready = !!dataset && !isBusy(dataset.status);
  return useQuery({
    queryKey: datasetKeys.report(dataset?.id ?? 0, dataset?.updated ?? ""),
    queryFn: ({ signal }) => api.get<ValidationReport>(datasetUrl(dataset!.id, "report/"), signal),
    enabled: ready,
    staleTime: 60_000,
  });
}

export function useDatasetPreview(dataset: Dataset | undefined, offset: number, limit: number, enabled = true) {
  const ready = !!dataset && !isBusy(dataset.status) && enabled;
  return useQuery({
    queryKey: datasetKeys.preview(dataset?.id ?? 0, dataset?.updated ?? "", offset, limit),
    queryFn: ({ signal }) =>
      api.get<PreviewPage>(datasetUrl(dataset!.id, `preview/?offset=${offset}&limit=${limit}`), signal),
    enabled: ready,
    placeholderData: keepPreviousData,
    staleTime: 60_000,
  });
}

export function useDatasetStatistics(dataset: Dataset | undefined, enabled = true) {
  const ready = !!dataset && !isBusy(dataset.status) && enabled;
  return useQuery({
    queryKey: datasetKeys.statistics(dataset?.id ?? 0, dataset?.updated ?? ""),
    queryFn: ({ signal }) => api.get<DatasetStatistics>(datasetUrl(dataset!.id, "statistics/"), signal),
    enabled: ready,
    staleTime: 60_000,
  });
}

export function useDatasetVersions(id: number) {
  return useQuery({
    queryKey: datasetKeys.versions(id),
    queryFn: async ({ signal }) => {
      const data = await api.get<Dataset[] | Paginated<Dataset>>(datasetUrl(id, "versions/"), signal);
      return Array.isArray(data) ? data : data.results;
    },
  });
}

/** Store a dataset returned by a mutation and refresh the lists that show it. */
function useStoreDataset() {
  const queryClient = useQueryClient();
  return (dataset: Dataset) => {
    queryClient.setQueryData(datasetKeys.detail(dataset.id), dataset);
    void queryClient.invalidateQueries({ queryKey: ["datasets", "list"] });
    void queryClient.invalidateQueries({
      predicate: (q) => q.queryKey[0] === "datasets" && q.queryKey[1] === "detail" && q.queryKey[3] === "versions",
    });
  };
}

export interface DatasetPatch {
  name?: string;
  /** A format name, or "auto" to detect it again. */
  format?: string;
  column_mapping?: Record<string, string> | null;
}

export function useUpdateDataset(id: number) {
  const store = useStoreDataset();
  return useMutation({
    mutationFn: (patch: DatasetPatch) => api.patch<Dataset>(datasetUrl(id), patch),
    onSuccess: store,
  });
}

export interface ValidateInput {
  base_model?: number;  // a catalogue id
  max_length?: number;
  format?: string;
  column_mapping?: Record<string, string> | null;
}

export function useValidateDataset(id: number) {
  const store = useStoreDataset();
  return useMutation({
    mutationFn: (input: ValidateInput = {}) => api.post<Dataset>(datasetUrl(id, "validate/"), input),
    onSuccess: store,
  });
}

export function usePreprocessDataset(id: number) {
  const store = useStoreDataset();
  return useMutation({
    mutationFn: (input: { steps: PreprocessStep[]; name?: string }) =>
      api.post<Dataset>(datasetUrl(id, "preprocess/"), input),
    onSuccess: store,
  });
}

export function useSplitDataset(id: number) {
  const store = useStoreDataset();
  return useMutation({
    mutationFn: (input: { validation_ratio: number; seed: number }) => api.post<Dataset>(datasetUrl(id, "split/"), input),
    onSuccess: store,
  });
}

export function useDeleteDataset() {
  const queryClient = useQueryClient();
  return useMutation({
    mutationFn: (id: number) => api.delete(datasetUrl(id)),
    onSuccess: () => {
      // Mark everything stale without refetching now: the deleted dataset's own queries are still mounted
      // until the page navigates away, and asking for them again would only answer 404.
      void queryClient.invalidateQueries({ queryKey: datasetKeys.all, refetchType: "none" });
    },
  });
}

// ---------- Upload ----------

export interface UploadProgress {
  loaded: number;
  total: number;
}

export interface UploadHandle {
  promise: Promise<Dataset>;
  abort: () => void;
}

export class UploadAborted extends Error {
  constructor() {
    super("Upload cancelled.");
    this.name = "UploadAborted";
  }
}

function uploadError(status: number, text: string): ApiError {
  let body: unknown;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null; // an HTML error page from a proxy: fall back to a plain message below
  }
  if (!body && status === 413) {
    return new ApiError(413, "The upload is larger than the server accepts.", {}, null);
  }
  return toApiError(status, body);
}

function sendOnce(form: FormData, onProgress: (p: UploadProgress) => void, xhrRef: { current: XMLHttpRequest | null }) {
  return new Promise<Dataset>((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhrRef.current = xhr;
    xhr.open("POST", BASE); // same-origin: the session cookie goes with it
    xhr.setRequestHeader("Accept", "application/json");
    const token = readCookie("csrftoken");
    if (token) xhr.setRequestHeader("X-CSRFToken", token);
    xhr.upload.onprogress = (event) => {
      if (event.lengthComputable) onProgress({ loaded: event.loaded, total: event.total });
    };
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        try {
          resolve(JSON.parse(xhr.responseText) as Dataset);
        } catch {
          reject(new ApiError(xhr.status, "The server answered with something that is not JSON."));
        }
      } else {
        reject(uploadError(xhr.status, xhr.responseText));
      }
    };
    xhr.onerror = () => reject(new ApiError(0, NETWORK_ERROR_MESSAGE));
    xhr.onabort = () => reject(new UploadAborted());
    xhr.send(form);
  });
}

/** POST /api/datasets/ as multipart: every file as a `file` field (several files make one dataset). */
export function uploadDataset(input: DatasetUploadInput, onProgress: (p: UploadProgress) => void): UploadHandle {
  const form = new FormData();
  for (const file of input.files) form.append("file", file, file.name);
  if (input.name?.trim()) form.append("name", input.name.trim());
  if (input.format) form.append("format", input.format);
  if (input.column_mapping && Object.keys(input.column_mapping).length) {
    form.append("column_mapping", JSON.stringify(input.column_mapping));
  }
  const xhrRef: { current: XMLHttpRequest | null } = { current: null };
  let aborted = false;
  const promise = (async () => {
    if (!readCookie("csrftoken")) await ensureCsrf(true);
    if (aborted) throw new UploadAborted();
    try {
      return await sendOnce(form, onProgress, xhrRef);
    } catch (error) {
      // A stale CSRF cookie: fetch a fresh one and send again once.
      if (!aborted && error instanceof ApiError && error.status === 403 && /csrf/i.test(error.detail)) {
        await ensureCsrf(true);
        onProgress({ loaded: 0, total: 1 });
        return sendOnce(form, onProgress, xhrRef);
      }
      throw error;
    }
  })();
  return {
    promise,
    abort: () => {
      aborted = true;
      xhrRef.current?.abort();
    },
  };
}
