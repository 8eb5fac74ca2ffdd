// One picked file on the upload page: name, size or upload status, progress bar, problems, and a remove button.
import { Link } from "react-router-dom";
import { Icon } from "../../../components/Icon";
import { formatBytes } from "../../../lib/format";
import type { Picked } from "./useUploadQueue";

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

export function FileItem({ item, onRemove, busy }: { item: Picked; onRemove: () => void; busy: boolean }) {
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
          <span className="ds-file__meta">{item.state === "idle" || item.state === "error" ? formatBytes(item.file.size) : itemStatus(item)}</span>
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
