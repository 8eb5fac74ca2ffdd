// The files picked on the upload page and their uploads: one request per file (or one for all of them when they
// form one dataset), sent one after the other over XMLHttpRequest with per-file progress and a cancel.
import { useEffect, useRef, useState } from "react";
import { useNavigate } from "react-router-dom";
import { useQueryClient } from "@tanstack/react-query";
import { errorMessage } from "../../../api/client";
import { datasetKeys, uploadDataset, UploadAborted, type UploadHandle } from "../../../api/datasets";
import type { Dataset } from "../../../api/types";
import { mappingFromRows, type MappingRow } from "../../../components/datasets/ColumnMappingEditor";
import { checkBatch, checkFile, type UploadLimits } from "./limits";

export type ItemState = "idle" | "queued" | "uploading" | "done" | "error" | "cancelled";

export interface Picked {
  key: string;
  file: File;
  /** Why the browser will not send it (type, size); shown in red. */
  problem?: string;
  state: ItemState;
  progress: number;
  error?: string;
  dataset?: Dataset;
}

export interface UploadOptions {
  /** All pending files as the parts of one dataset. */
  combine: boolean;
  name: string;
  format: string;
  mappingRows: MappingRow[];
}

const fileKey = (file: File) => `${file.name}:${file.size}:${file.lastModified}`;

/** Per-file progress (0..1) of a request sending several files, from the bytes sent so far. */
function groupProgress(group: Picked[], ratio: number): Map<string, number> {
  const sizes = group.map((i) => i.file.size);
  const groupTotal = sizes.reduce((a, b) => a + b, 0) || 1;
  let before = 0;
  const progress = new Map<string, number>();
  group.forEach((item, index) => {
    const start = before / groupTotal;
    const span = sizes[index] / groupTotal;
    progress.set(item.key, Math.max(0, Math.min(1, span ? (ratio - start) / span : ratio)));
    before += sizes[index];
  });
  return progress;
}

export function useUploadQueue(limits: UploadLimits) {
  const navigate = useNavigate();
  const queryClient = useQueryClient();
  const handleRef = useRef<UploadHandle | null>(null);
  const cancelledRef = useRef(false);
  const [items, setItems] = useState<Picked[]>([]);
  const [busy, setBusy] = useState(false);
  const [formError, setFormError] = useState<string>();
  const [mappingError, setMappingError] = useState<string>();

  // Leaving the page aborts an upload in flight.
  useEffect(() => () => handleRef.current?.abort(), []);

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

  const remove = (key: string) => setItems((current) => current.filter((i) => i.key !== key));

  const patchItems = (keys: string[], patch: Partial<Picked> | ((item: Picked) => Partial<Picked>)) =>
    setItems((current) =>
      current.map((item) => (keys.includes(item.key) ? { ...item, ...(typeof patch === "function" ? patch(item) : patch) } : item)),
    );

  /** Send one request: the dataset it created, "failed" or "cancelled". */
  const uploadGroup = async (
    group: Picked[],
    options: UploadOptions & { single: boolean; mapping: Record<string, string> | null },
  ): Promise<Dataset | "failed" | "cancelled"> => {
    const keys = group.map((i) => i.key);
    patchItems(keys, { state: "uploading", progress: 0 });
    const handle = uploadDataset(
      {
        files: group.map((i) => i.file),
        name: options.single ? options.name : undefined,
        format: options.format || undefined,
        column_mapping: options.mapping,
      },
      ({ loaded, total }) => {
        const progress = groupProgress(group, total ? loaded / total : 0);
        patchItems(keys, (item) => ({ progress: progress.get(item.key) ?? 0 }));
      },
    );
    handleRef.current = handle;
    try {
      const dataset = await handle.promise;
      queryClient.setQueryData(datasetKeys.detail(dataset.id), dataset);
      patchItems(keys, { state: "done", progress: 1, dataset });
      return dataset;
    } catch (err) {
      if (err instanceof UploadAborted) {
        patchItems(keys, { state: "cancelled", progress: 0 });
        return "cancelled";
      }
      patchItems(keys, { state: "error", progress: 0, error: errorMessage(err) });
      return "failed";
    } finally {
      handleRef.current = null;
    }
  };

  const submit = async (options: UploadOptions) => {
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
    const batchProblem = checkBatch(
      toSend.map((i) => i.file),
      options.combine,
      limits,
    );
    if (batchProblem) {
      setFormError(batchProblem);
      return;
    }
    const { mapping, error } = mappingFromRows(options.mappingRows);
    if (error) {
      setMappingError(error);
      return;
    }
    setMappingError(undefined);

    const groups = options.combine ? [toSend] : toSend.map((i) => [i]);
    const single = toSend.length <= 1 || options.combine;
    cancelledRef.current = false;
    setBusy(true);
    patchItems(
      toSend.map((i) => i.key),
      { state: "queued", progress: 0, error: undefined },
    );

    const created: Dataset[] = [];
    let failed = 0;
    for (const group of groups) {
      if (cancelledRef.current) {
        patchItems(
          group.map((i) => i.key),
          { state: "cancelled", progress: 0 },
        );
        continue;
      }
      const result = await uploadGroup(group, { ...options, single, mapping });
      if (result === "failed") failed += 1;
      else if (result !== "cancelled") created.push(result);
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

  return { items, busy, formError, mappingError, addFiles, remove, submit, cancel };
}
