// /datasets/upload: drop or pick one or more files; each becomes a dataset (or all of them one dataset),
// uploaded over XMLHttpRequest with a real progress bar per file and a cancel button.
import { useEffect, useId, useRef, useState, type DragEvent, type FormEvent } from "react";
import { Link, useNavigate } from "react-router-dom";
import { useQueryClient } from "@tanstack/react-query";
import { useMe } from "../../api/auth";
import { errorMessage } from "../../api/client";
import { datasetKeys, uploadDataset, UploadAborted, type UploadHandle } from "../../api/datasets";
import type { Dataset, QuotaMap } from "../../api/types";
import { Icon } from "../../components/Icon";
import { Banner, Button, Card, Field, PageHeader } from "../../components/ui";
import {
  ColumnMappingEditor,
  mappingFromRows,
  type MappingRow,
} from "../../components/datasets/ColumnMappingEditor";
import { FormatSelect } from "../../components/datasets/FormatSelect";
import { formatBytes } from "../../components/datasets/format";

const ACCEPT = ".jsonl,.json,.csv,.parquet,.gz";
const EXTENSIONS = [".jsonl", ".json", ".csv", ".parquet", ".jsonl.gz", ".json.gz", ".csv.gz", ".parquet.gz", ".gz"];

type ItemState = "idle" | "queued" | "uploading" | "done" | "error" | "cancelled";

interface Picked {
  key: string;
  file: File;
  problem?: string;
  state: ItemState;
  progress: number;
  error?: string;
  dataset?: Dataset;
}

function numberQuota(map: QuotaMap | undefined, ...names: string[]): number | null {
  for (const name of names) {
    const value = map?.[name];
    if (typeof value === "number" && Number.isFinite(value)) return value;
  }
  return null;
}

// The server's defaults (settings DATASET_MAX_UPLOAD_BYTES, DATASET_MAX_FILES), used until /api/auth/me/ says otherwise.
const DEFAULT_MAX_UPLOAD_BYTES = 2 * 1024 ** 3;
const DEFAULT_MAX_FILES = 10;

/** Limits known in the browser; the server checks them again (and is the only judge of the real cap). */
function useLimits() {
  const me = useMe();
  const quotas = me.data?.quotas;
  const usage = me.data?.usage;
  const storage = numberQuota(quotas, "storage_bytes");
  const used = numberQuota(usage, "storage_bytes") ?? 0;
  return {
    remaining: storage === null ? null : Math.max(0, storage - used),
    storage,
    /** Per upload request (one file, or several sent as one dataset). */
    perUpload: numberQuota(quotas, "dataset_max_upload_bytes", "max_upload_bytes") ?? DEFAULT_MAX_UPLOAD_BYTES,
    maxFiles: numberQuota(quotas, "dataset_max_files") ?? DEFAULT_MAX_FILES,
  };
}

function checkFile(file: File, limits: ReturnType<typeof useLimits>): string | undefined {
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

const fileKey = (file: File) => `${file.name}:${file.size}:${file.lastModified}`;

function itemStatus(item: Picked): string {
  switch (item.state) {
    case "queued":
      return "Waiting…";
    case "uploading":
      return item.progress >= 1 ? "Processing on the server…" : `${Math.round(item.progress * 100)}%`;
    case "done":
      return "Uploaded";
    case "cancelled":
      return "Cancelled";
    default:
      return formatBytes(item.file.size);
  }
}

function FileItem({ item, onRemove, busy }: { item: Picked; onRemove: () => void; busy: boolean }) {
  const pct = Math.round(item.progress * 100);
  const showBar = item.state === "uploading" || item.state === "done" || item.state === "queued";
  const tone = item.state === "done" ? " progress--success" : item.state === "error" ? " progress--danger" : "";
  return (
    <li className={`ds-file ds-file--${item.state}${item.problem || item.error ? " ds-file--bad" : ""}`} data-testid="upload-file">
      <span className="ds-file__icon">
        <Icon name={item.state === "done" ? "check" : item.problem || item.error ? "alert" : "datasets"} size={16} />
      </span>
      <div className="ds-file__body">
        <div className="ds-file__head">
          <span className="ds-file__name">{item.file.name}</span>
          <span className="ds-file__meta">
            {item.state === "idle" || item.state === "error" ? formatBytes(item.file.size) : itemStatus(item)}
          </span>
        </div>
        {showBar && (
          <div
            className={`progress ds-upload-progress${tone}`}
            role="progressbar"
            aria-label={`Upload of ${item.file.name}`}
            aria-valuemin={0}
            aria-valuemax={100}
            aria-valuenow={pct}
            data-testid="upload-progress"
            data-progress={pct}
          >
            <span className="progress__bar" style={{ width: `${pct}%` }} />
          </div>
        )}
        {item.problem && <p className="field__error">{item.problem}</p>}
        {item.error && (
          <p className="field__error" data-testid="upload-error">
            {item.error}
          </p>
        )}
        {item.state === "done" && item.dataset && (
          <p className="small">
            <Link to={`/datasets/${item.dataset.id}`}>Open “{item.dataset.name}”</Link>
          </p>
        )}
      </div>
      {!busy && item.state !== "done" && (
        <button type="button" className="btn btn--ghost btn--sm" aria-label={`Remove ${item.file.name}`} onClick={onRemove}>
          <Icon name="x" size={15} />
        </button>
      )}
    </li>
  );
}

export default function DatasetUploadPage() {
  const navigate = useNavigate();
  const queryClient = useQueryClient();
  const limits = useLimits();
  const inputId = useId();
  const inputRef = useRef<HTMLInputElement>(null);
  const handleRef = useRef<UploadHandle | null>(null);
  const cancelledRef = useRef(false);

  const [items, setItems] = useState<Picked[]>([]);
  const [dragging, setDragging] = useState(false);
  const [combine, setCombine] = useState(false);
  const [name, setName] = useState("");
  const [format, setFormat] = useState("");
  const [mappingRows, setMappingRows] = useState<MappingRow[]>([]);
  const [mappingError, setMappingError] = useState<string>();
  const [busy, setBusy] = useState(false);
  const [formError, setFormError] = useState<string>();

  // Leaving the page aborts an upload in flight.
  useEffect(() => () => handleRef.current?.abort(), []);

  const pending = items.filter((i) => i.state !== "done");
  const single = pending.length <= 1 || combine;

  const addFiles = (list: FileList | File[] | null) => {
    if (!list) return;
    // Copy now: a FileList is live, and the input is cleared right after this call.
    const files = Array.from(list);
    setFormError(undefined);
    setItems((current) => {
      const seen = new Set(current.map((i) => i.key));
      const added: Picked[] = [];
      for (const file of files) {
        const key = fileKey(file);
        if (seen.has(key)) continue;
        seen.add(key);
        added.push({ key, file, problem: checkFile(file, limits), state: "idle", progress: 0 });
      }
      return [...current.filter((i) => i.state !== "done"), ...added];
    });
  };

  const patchItems = (keys: string[], patch: Partial<Picked> | ((item: Picked) => Partial<Picked>)) =>
    setItems((current) =>
      current.map((item) => (keys.includes(item.key) ? { ...item, ...(typeof patch === "function" ? patch(item) : patch) } : item)),
    );

  const onDrop = (event: DragEvent) => {
    event.preventDefault();
    setDragging(false);
    if (!busy) addFiles(event.dataTransfer.files);
  };

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setFormError(undefined);
    const toSend = items.filter((i) => i.state !== "done");
    if (!toSend.length) {
      setFormError("Choose at least one file to upload.");
      return;
    }
    if (toSend.some((i) => i.problem)) {
      setFormError("Remove the files marked in red before uploading.");
      return;
    }
    const total = toSend.reduce((sum, i) => sum + i.file.size, 0);
    if (combine && toSend.length > limits.maxFiles) {
      setFormError(`One dataset can hold at most ${limits.maxFiles} files.`);
      return;
    }
    if (combine && total > limits.perUpload) {
      setFormError(
        `Together these files are ${formatBytes(total)}, over the ${formatBytes(limits.perUpload)} upload limit. ` +
          "Upload them as separate datasets or compress them with gzip.",
      );
      return;
    }
    if (limits.remaining !== null && total > limits.remaining) {
      setFormError(`These files need ${formatBytes(total)} but only ${formatBytes(limits.remaining)} of storage is free.`);
      return;
    }
    const { mapping, error } = mappingFromRows(mappingRows);
    if (error) {
      setMappingError(error);
      return;
    }
    setMappingError(undefined);

    const groups = combine ? [toSend] : toSend.map((i) => [i]);
    cancelledRef.current = false;
    setBusy(true);
    patchItems(
      toSend.map((i) => i.key),
      { state: "queued", progress: 0, error: undefined },
    );

    const created: Dataset[] = [];
    let failed = 0;
    for (const group of groups) {
      const keys = group.map((i) => i.key);
      if (cancelledRef.current) {
        patchItems(keys, { state: "cancelled", progress: 0 });
        continue;
      }
      patchItems(keys, { state: "uploading", progress: 0 });
      // Several files in one request: fill each file's bar in turn from the bytes sent so far.
      const sizes = group.map((i) => i.file.size);
      const groupTotal = sizes.reduce((a, b) => a + b, 0) || 1;
      const handle = uploadDataset(
        {
          files: group.map((i) => i.file),
          name: single ? name : undefined,
          format: format || undefined,
          column_mapping: mapping,
        },
        ({ loaded, total: sent }) => {
          const ratio = sent ? loaded / sent : 0;
          let before = 0;
          const progress = new Map<string, number>();
          group.forEach((item, index) => {
            const start = before / groupTotal;
            const span = sizes[index] / groupTotal;
            progress.set(item.key, Math.max(0, Math.min(1, span ? (ratio - start) / span : ratio)));
            before += sizes[index];
          });
          patchItems(keys, (item) => ({ progress: progress.get(item.key) ?? 0 }));
        },
      );
      handleRef.current = handle;
      try {
        const dataset = await handle.promise;
        created.push(dataset);
        queryClient.setQueryData(datasetKeys.detail(dataset.id), dataset);
        patchItems(keys, { state: "done", progress: 1, dataset });
      } catch (err) {
        if (err instanceof UploadAborted) {
          patchItems(keys, { state: "cancelled", progress: 0 });
        } else {
          failed += 1;
          patchItems(keys, { state: "error", progress: 0, error: errorMessage(err) });
        }
      } finally {
        handleRef.current = null;
      }
    }
    setBusy(false);
    if (created.length) void queryClient.invalidateQueries({ queryKey: ["datasets", "list"] });

    if (!failed && !cancelledRef.current && created.length) {
      navigate(created.length === 1 ? `/datasets/${created[0].id}` : "/datasets");
      return;
    }
    if (failed) {
      setFormError(
        groups.length > 1
          ? `${failed} of ${groups.length} uploads failed. Fix them and press Upload to try again.`
          : "The upload failed. See the message under the file.",
      );
    }
  };

  const cancel = () => {
    if (busy) {
      cancelledRef.current = true;
      handleRef.current?.abort();
    } else {
      navigate("/datasets");
    }
  };

  const done = items.filter((i) => i.state === "done");

  return (
    <div className="ds-upload">
      <nav className="ds-breadcrumb" aria-label="Breadcrumb">
        <Link to="/datasets">Datasets</Link>
        <span aria-hidden="true">/</span>
        <span className="muted">Upload</span>
      </nav>
      <PageHeader
        title="Upload a dataset"
        description="Chat, instruction, completion, plain text or preference data. Every row is checked after the upload."
      />
      <form className="form" onSubmit={(e) => void submit(e)} noValidate>
        <Card title="Files" icon="upload" description="JSON Lines, JSON, CSV or Parquet, optionally gzipped.">
          {formError && <Banner tone="error">{formError}</Banner>}
          <label
            htmlFor={inputId}
            className={`ds-dropzone${dragging ? " is-dragging" : ""}${busy ? " is-disabled" : ""}`}
            data-testid="dropzone"
            onDragEnter={(e) => {
              e.preventDefault();
              if (!busy) setDragging(true);
            }}
            onDragOver={(e) => {
              e.preventDefault();
              e.dataTransfer.dropEffect = busy ? "none" : "copy";
            }}
            onDragLeave={(e) => {
              if (!e.currentTarget.contains(e.relatedTarget as Node | null)) setDragging(false);
            }}
            onDrop={onDrop}
          >
            <input
              ref={inputRef}
              id={inputId}
              type="file"
              multiple
              accept={ACCEPT}
              className="ds-dropzone__input"
              data-testid="file-input"
              disabled={busy}
              onChange={(e) => {
                addFiles(e.target.files);
                e.target.value = ""; // picking the same file again still fires change
              }}
            />
            <span className="ds-dropzone__icon">
              <Icon name="upload" size={20} />
            </span>
            <span className="ds-dropzone__title">
              Drop files here or <span className="ds-dropzone__link">browse</span>
            </span>
            <span className="ds-dropzone__hint">
              .jsonl, .json, .csv, .parquet or .gz
              {limits.remaining !== null && ` · ${formatBytes(limits.remaining)} of storage free`}
            </span>
          </label>

          {items.length > 0 && (
            <ul className="ds-files" aria-label="Selected files">
              {items.map((item) => (
                <FileItem
                  key={item.key}
                  item={item}
                  busy={busy}
                  onRemove={() => setItems((current) => current.filter((i) => i.key !== item.key))}
                />
              ))}
            </ul>
          )}

          {pending.length > 1 && (
            <label className="ds-check">
              <input type="checkbox" checked={combine} disabled={busy} onChange={(e) => setCombine(e.target.checked)} />
              <span>
                <span className="ds-check__title">One dataset from these files</span>
                <span className="ds-check__hint">
                  Upload them together as the parts of a single dataset, instead of one dataset per file.
                </span>
              </span>
            </label>
          )}
        </Card>

        <Card title="Options" icon="settings" description="Leave these alone and the format is detected from the columns.">
          <div className="form-row">
            <Field
              label="Name"
              name="name"
              placeholder={single ? pending[0]?.file.name.replace(/\.(jsonl|json|csv|parquet)(\.gz)?$/i, "") || "My dataset" : ""}
              value={single ? name : ""}
              disabled={!single || busy}
              onChange={(e) => setName(e.target.value)}
              hint={single ? "Optional. Defaults to the file name." : "Each file becomes its own dataset, named after the file."}
            />
            <FormatSelect
              value={format}
              onChange={setFormat}
              disabled={busy}
              hint="Auto-detect reads the columns of the first rows."
            />
          </div>
          <details className="ds-details" open={mappingRows.length > 0 || undefined}>
            <summary>Column mapping (optional)</summary>
            <div className="ds-details__body">
              <p className="muted small">
                When your columns have other names than the format expects, map them here: the field on the left is
                read from the column or path on the right.
              </p>
              <ColumnMappingEditor rows={mappingRows} onChange={setMappingRows} format={format} error={mappingError} />
            </div>
          </details>
        </Card>

        <div className="form__actions">
          <Button type="submit" variant="primary" icon="upload" loading={busy} disabled={!pending.length}>
            Upload
          </Button>
          <Button type="button" variant="ghost" onClick={cancel}>
            Cancel
          </Button>
          {busy && <span className="muted small">Keep this page open until the upload finishes.</span>}
          {!busy && done.length > 0 && (
            <span className="muted small">
              {done.length} uploaded. <Link to="/datasets">See all datasets</Link>
            </span>
          )}
        </div>
      </form>
    </div>
  );
}
