// The user's quotas with current usage (from /api/dashboard/stats/ `quota`).
import type { QuotaSummary } from "../../api/dashboard";
import { formatBytes } from "../../lib/format";

const ROWS: { limit: string; used: string; label: string; format: (v: number) => string }[] = [
  { limit: "concurrent_jobs", used: "concurrent_jobs", label: "Active jobs", format: (v) => String(Math.round(v)) },
  { limit: "storage_bytes", used: "storage_bytes", label: "Dataset storage", format: (v) => formatBytes(v) },
  { limit: "gpu_minutes_local_per_month", used: "gpu_minutes_local_this_month", label: "Local compute this month", format: (v) => `${v.toFixed(v < 10 ? 1 : 0)} min` },
  { limit: "gpu_minutes_modal_per_month", used: "gpu_minutes_modal_this_month", label: "Modal GPU this month", format: (v) => `${v.toFixed(v < 10 ? 1 : 0)} min` },
  { limit: "modal_spend_usd_per_month", used: "modal_spend_usd_this_month", label: "Modal spend this month", format: (v) => `$${v.toFixed(2)}` },
];

export function QuotaBars({ quota }: { quota: QuotaSummary }) {
  const resets = new Date(quota.resets_at);
  return (
    <div className="db-quotas" data-testid="quota-bars">
      {ROWS.filter((r) => typeof quota.quotas[r.limit] === "number").map((row) => {
        const limit = Number(quota.quotas[row.limit]);
        const used = Number(quota.usage[row.used] ?? 0);
        const pct = limit > 0 ? Math.min(100, (used / limit) * 100) : used > 0 ? 100 : 0;
        const tone = pct >= 100 ? "danger" : pct >= 80 ? "warning" : "ok";
        return (
          <div className={`db-quota db-quota--${tone}`} key={row.limit} data-testid={`quota-${row.limit}`} data-pct={pct.toFixed(1)}>
            <div className="db-quota__head">
              <span>{row.label}</span>
              <span className="db-quota__numbers">
                {row.format(used)} <span className="muted">of {row.format(limit)}</span>
              </span>
            </div>
            <div
              className="db-quota__track"
              role="progressbar"
              aria-label={row.label}
              aria-valuemin={0}
              aria-valuemax={100}
              aria-valuenow={Math.round(pct)}
            >
              <span className="db-quota__bar" style={{ width: `${pct}%` }} />
            </div>
          </div>
        );
      })}
      <p className="muted small">Monthly quotas reset {resets.toLocaleDateString(undefined, { dateStyle: "medium" })}. Ask an operator to raise a limit.</p>
    </div>
  );
}
