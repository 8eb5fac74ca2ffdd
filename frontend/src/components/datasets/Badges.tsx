// Status and verdict badges, and the inline progress shown while a dataset is processed.
import type { DatasetStatus, Verdict } from "../../api/types";
import { toPercent } from "../../lib/format";

const statusTone: Record<DatasetStatus, string> = {
  uploaded: "neutral",
  processing: "info",
  ready: "success",
  invalid: "danger",
};

/** The dataset's status (text content is the raw status, e.g. "ready"; CSS capitalises it). */
export function StatusBadge({ status }: { status: DatasetStatus }) {
  const busy = status === "uploaded" || status === "processing";
  return (
    <span
      className={`badge badge--${statusTone[status] ?? "neutral"} ds-badge`}
      data-testid="dataset-status"
      data-status={status}
    >
      {busy && <span className="ds-badge__pulse" aria-hidden="true" />}
      {status}
    </span>
  );
}

const verdictTone: Record<Verdict, string> = { ok: "success", warnings: "warning", invalid: "danger" };
const verdictLabel: Record<Verdict, string> = { ok: "OK", warnings: "Warnings", invalid: "Invalid" };

export function VerdictBadge({ verdict }: { verdict: Verdict | "" | null | undefined }) {
  if (!verdict) return <span className="muted">—</span>;
  return (
    <span className={`badge badge--${verdictTone[verdict] ?? "neutral"}`} data-verdict={verdict} title={`Verdict: ${verdict}`}>
      {verdictLabel[verdict] ?? verdict}
    </span>
  );
}

/** A thin progress bar with its percentage; indeterminate when the progress is unknown. */
export function InlineProgress({ progress, label }: { progress: number | null | undefined; label: string }) {
  const pct = toPercent(progress);
  return (
    <span className="ds-inline-progress">
      <span
        className={`progress ds-progress${pct === null ? " ds-progress--indeterminate" : ""}`}
        role="progressbar"
        aria-label={label}
        aria-valuemin={0}
        aria-valuemax={100}
        aria-valuenow={pct === null ? undefined : Math.round(pct)}
      >
        <span className="progress__bar" style={{ width: pct === null ? "35%" : `${pct}%` }} />
      </span>
      {pct !== null && <span className="ds-inline-progress__pct">{Math.round(pct)}%</span>}
    </span>
  );
}
