// The drop target of the upload page: a label for the hidden file input, so a click browses and a drop adds files.
import { useId, useState } from "react";
import { Icon } from "../../../components/Icon";
import { formatBytes } from "../../../lib/format";
import { ACCEPT } from "./limits";

export function Dropzone({ busy, remaining, onFiles }: { busy: boolean; remaining: number | null; onFiles: (files: FileList | null) => void }) {
  const inputId = useId();
  const [dragging, setDragging] = useState(false);
  return (
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
      onDrop={(e) => {
        e.preventDefault();
        setDragging(false);
        if (!busy) onFiles(e.dataTransfer.files);
      }}
    >
      <input
        id={inputId}
        type="file"
        multiple
        accept={ACCEPT}
        className="ds-dropzone__input"
        data-testid="file-input"
        disabled={busy}
        onChange={(e) => {
          onFiles(e.target.files);
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
        {remaining !== null && ` · ${formatBytes(remaining)} of storage free`}
      </span>
    </label>
  );
}
