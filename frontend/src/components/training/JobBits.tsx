// Small pieces shared by the training pages: the status badge and the progress bar with ETA.
import type { JobStatus } from "../../api/types";
import { STATUS_LABEL } from "./labels";
import { formatEta, formatNumber, toPct } from "../../lib/format";

const STATUS_TONE: Record<JobStatus, string> = {
  waiting: "muted",
  queued: "neutral",
  starting: "info",
  running: "info",
  recovering: "warning",
  succeeded: "success",
  failed: "danger",
  cancelled: "muted",
};

/** The job's status; `data-status` carries the raw value. */
export function JobStatusBadge({ status, testId }: { status: JobStatus; testId?: string }) {
  const live = status === "starting" || status === "running" || status === "recovering";
  return (
    <span className={`tr-badge tr-badge--${STATUS_TONE[status] ?? "neutral"}`} data-testid={testId} data-status={status}>
      {live && <span className="tr-badge__pulse" aria-hidden="true" />}
      {STATUS_LABEL[status] ?? status}
    </span>
  );
}

/** Progress bar: `progress` 0..1, with step/total and ETA when known. */
export function JobProgress({
  progress,
  step,
  total,
  etaS,
  status,
  compact = false,
  testId,
}: {
  progress: number;
  step?: number | null;
  total?: number | null;
  etaS?: number | null;
  status: JobStatus;
  compact?: boolean;
  testId?: string;
}) {
  const pct = status === "succeeded" ? 100 : toPct(progress);
  const indeterminate = (status === "queued" || status === "starting" || status === "recovering") && !pct;
  const tone = status === "failed" ? " tr-progress--danger" : status === "succeeded" ? " tr-progress--success" : status === "cancelled" ? " tr-progress--muted" : "";
  const running = status === "running";
  return (
    <div className={`tr-progress-wrap${compact ? " tr-progress-wrap--compact" : ""}`} data-testid={testId}>
      <div
        className={`tr-progress${tone}${indeterminate ? " tr-progress--indeterminate" : ""}`}
        role="progressbar"
        aria-label="Training progress"
        aria-valuemin={0}
        aria-valuemax={100}
        aria-valuenow={indeterminate ? undefined : Math.round(pct)}
      >
        <span className="tr-progress__bar" style={{ width: indeterminate ? "30%" : `${pct}%` }} />
      </div>
      <div className="tr-progress__meta">
        <span className="tr-progress__pct">{indeterminate ? "Waiting" : `${Math.round(pct)}%`}</span>
        {!compact && total ? (
          <span>
            step {formatNumber(step ?? 0)} / {formatNumber(total)}
          </span>
        ) : null}
        {running && etaS !== null && etaS !== undefined && <span className="tr-progress__eta">{formatEta(etaS)}</span>}
      </div>
    </div>
  );
}
