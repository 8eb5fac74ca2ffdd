// /datasets/upload: drop or pick one or more files; each becomes a dataset (or all of them one dataset),
// uploaded over XMLHttpRequest with a real progress bar per file and a cancel button (see useUploadQueue).
import { useState, type FormEvent } from "react";
import { Link } from "react-router-dom";
import { ColumnMappingEditor, type MappingRow } from "../../../components/datasets/ColumnMappingEditor";
import { FormatSelect } from "../../../components/datasets/FormatSelect";
import { Banner, Button, Card, Field, PageHeader } from "../../../components/ui";
import { Dropzone } from "./Dropzone";
import { FileItem } from "./FileItem";
import { useLimits } from "./limits";
import { useUploadQueue } from "./useUploadQueue";

export default function DatasetUploadPage() {
  const limits = useLimits();
  const queue = useUploadQueue(limits);
  const { items, busy } = queue;
  const [combine, setCombine] = useState(false);
  const [name, setName] = useState("");
  const [format, setFormat] = useState("");
  const [mappingRows, setMappingRows] = useState<MappingRow[]>([]);

  const pending = items.filter((i) => i.state !== "done");
  const done = items.filter((i) => i.state === "done");
  const single = pending.length <= 1 || combine;

  const submit = (event: FormEvent) => {
    event.preventDefault();
    void queue.submit({ combine, name, format, mappingRows });
  };

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
      <form className="form" onSubmit={submit} noValidate>
        <Card title="Files" icon="upload" description="JSON Lines, JSON, CSV or Parquet, optionally gzipped.">
          {queue.formError && <Banner tone="error">{queue.formError}</Banner>}
          <Dropzone busy={busy} remaining={limits.remaining} onFiles={queue.addFiles} />
          {items.length > 0 && (
            <ul className="ds-files" aria-label="Selected files">
              {items.map((item) => (
                <FileItem key={item.key} item={item} busy={busy} onRemove={() => queue.remove(item.key)} />
              ))}
            </ul>
          )}
          {pending.length > 1 && (
            <label className="ds-check">
              <input type="checkbox" checked={combine} disabled={busy} onChange={(e) => setCombine(e.target.checked)} />
              <span>
                <span className="ds-check__title">One dataset from these files</span>
                <span className="ds-check__hint">Upload them together as the parts of a single dataset, instead of one dataset per file.</span>
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
            <FormatSelect value={format} onChange={setFormat} disabled={busy} hint="Auto-detect reads the columns of the first rows." />
          </div>
          <details className="ds-details" open={mappingRows.length > 0 || undefined}>
            <summary>Column mapping (optional)</summary>
            <div className="ds-details__body">
              <p className="muted small">
                When your columns have other names than the format expects, map them here: the field on the left is
                read from the column or path on the right.
              </p>
              <ColumnMappingEditor rows={mappingRows} onChange={setMappingRows} format={format} error={queue.mappingError} />
            </div>
          </details>
        </Card>

        <div className="form__actions">
          <Button type="submit" variant="primary" icon="upload" loading={busy} disabled={!pending.length}>
            Upload
          </Button>
          <Button type="button" variant="ghost" onClick={queue.cancel}>
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
