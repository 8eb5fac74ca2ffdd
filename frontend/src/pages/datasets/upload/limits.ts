// What the browser knows of the upload limits, and the checks it runs on each file before sending it.
// The server checks everything again and is the only judge of the real caps.
import { useMe } from "../../../api/auth";
import type { QuotaMap } from "../../../api/types";
import { formatBytes } from "../../../lib/format";

export const ACCEPT = ".jsonl,.json,.csv,.parquet,.gz";
const EXTENSIONS = [".jsonl", ".json", ".csv", ".parquet", ".jsonl.gz", ".json.gz", ".csv.gz", ".parquet.gz", ".gz"];

// The server's defaults (settings DATASET_MAX_UPLOAD_BYTES, DATASET_MAX_FILES), used until /api/auth/me/ says otherwise.
const DEFAULT_MAX_UPLOAD_BYTES = 2 * 1024 ** 3;
const DEFAULT_MAX_FILES = 10;

export interface UploadLimits {
  /** Storage left, or null when the user has no storage quota. */
  remaining: number | null;
  storage: number | null;
  /** Per upload request (one file, or several sent as one dataset). */
  perUpload: number;
  maxFiles: number;
}

function numberQuota(map: QuotaMap | undefined, ...names: string[]): number | null {
  for (const name of names) {
    const value = map?.[name];
    if (typeof value === "number" && Number.isFinite(value)) return value;
  }
  return null;
}

export function useLimits(): UploadLimits {
  const me = useMe();
  const quotas = me.data?.quotas;
  const usage = me.data?.usage;
  const storage = numberQuota(quotas, "storage_bytes");
  const used = numberQuota(usage, "storage_bytes") ?? 0;
  return {
    remaining: storage === null ? null : Math.max(0, storage - used),
    storage,
    perUpload: numberQuota(quotas, "dataset_max_upload_bytes", "max_upload_bytes") ?? DEFAULT_MAX_UPLOAD_BYTES,
    maxFiles: numberQuota(quotas, "dataset_max_files") ?? DEFAULT_MAX_FILES,
  };
}

/** Why this file cannot be uploaded, or undefined. */
export function checkFile(file: File, limits: UploadLimits): string | undefined {
  const name = file.name.toLowerCase();
  if (!EXTENSIONS.some((ext) => name.endsWith(ext))) {
    return "Unsupported file type. Use .jsonl, .json, .csv or .parquet (optionally gzipped as .gz).";
  }
  if (file.size === 0) return "The file is empty.";
  if (file.size > limits.perUpload) {
    return `Larger than the ${formatBytes(limits.perUpload)} upload limit. Split the file or compress it with gzip.`;
  }
  if (limits.remaining !== null && file.size > limits.remaining) {
    return `Larger than your remaining storage (${formatBytes(limits.remaining)} free of ${formatBytes(limits.storage)}).`;
  }
  return undefined;
}

/** Why this batch cannot be sent as it is (several files in one dataset, or more than the storage left), or undefined. */
export function checkBatch(files: File[], combine: boolean, limits: UploadLimits): string | undefined {
  const total = files.reduce((sum, file) => sum + file.size, 0);
  if (combine && files.length > limits.maxFiles) return `One dataset can hold at most ${limits.maxFiles} files.`;
  if (combine && total > limits.perUpload) {
    return (
      `Together these files are ${formatBytes(total)}, over the ${formatBytes(limits.perUpload)} upload limit. ` +
      "Upload them as separate datasets or compress them with gzip."
    );
  }
  if (limits.remaining !== null && total > limits.remaining) {
    return `These files need ${formatBytes(total)} but only ${formatBytes(limits.remaining)} of storage is free.`;
  }
  return undefined;
}
