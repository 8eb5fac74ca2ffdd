// /training/sweeps/:id — one hyperparameter sweep: the variants' loss curves overlaid, the ranking by eval loss (the
// best marked), cancel a variant or the whole sweep, promote the best variant's model. Polls while variants run.
import { useMemo } from "react";
import { Link, useParams } from "react-router-dom";
import { CartesianGrid, Legend, Line, LineChart, ResponsiveContainer, Tooltip, XAxis, YAxis } from "recharts";
import { errorMessage } from "../../api/client";
import { type SweepDetail, type SweepVariant, useCancelSweep, usePromoteSweep, useSweep } from "../../api/sweeps";
import { isActive, useCancelJob } from "../../api/training";
import type { JobStatus } from "../../api/types";
import { JobStatusBadge } from "../../components/training/JobBits";
import { Banner, Button, Card, PageHeader, Spinner } from "../../components/ui";
import { formatDateTime, formatFloat, formatNumber } from "../../lib/format";

const COLORS = ["#5b4fe0", "#d97706", "#059669", "#dc2626", "#0891b2", "#9333ea", "#65a30d", "#db2777", "#475569", "#ca8a04", "#2563eb", "#0d9488"];
const GRID = "#ececf1";
const AXIS = "#8b8b97";

function paramsLabel(params: Record<string, number>): string {
  return Object.entries(params)
    .map(([k, v]) => `${k}=${v}`)
    .join(", ");
}

/** One line per variant (training loss), eval points dashed, against the step. */
function SweepChart({ variants }: { variants: SweepVariant[] }) {
  const { rows, points } = useMemo(() => {
    const byStep = new Map<number, Record<string, number>>();
    let points = 0;
    const put = (step: number, key: string, value: number) => {
      const row = byStep.get(step) ?? { step };
      row[key] = value;
      byStep.set(step, row);
    };
    for (const v of variants) {
      for (const p of v.curve) {
        put(p.step, `loss_${v.job}`, p.loss);
        points += 1;
      }
      for (const p of v.eval_points) put(p.step, `eval_${v.job}`, p.eval_loss);
    }
    return { rows: [...byStep.values()].sort((a, b) => a.step - b.step), points };
  }, [variants]);
  return (
    <figure className="tr-chart" data-testid="sweep-chart" data-points={points}>
      <figcaption className="tr-chart__head">
        <span className="tr-chart__title">Loss curves</span>
        <span className="tr-chart__subtitle">training loss solid, eval loss dashed · {formatNumber(points)} points</span>
      </figcaption>
      {rows.length === 0 ? (
        <div className="tr-chart__empty">No variant has recorded a loss yet.</div>
      ) : (
        <ResponsiveContainer width="100%" height={320}>
          <LineChart data={rows} margin={{ top: 8, right: 12, bottom: 0, left: -8 }}>
            <CartesianGrid vertical={false} stroke={GRID} />
            <XAxis dataKey="step" type="number" domain={["dataMin", "dataMax"]} allowDecimals={false} axisLine={{ stroke: GRID }} tick={{ fontSize: 11, fill: AXIS }} tickLine={false} />
            <YAxis domain={["auto", "auto"]} axisLine={false} width={56} tickFormatter={(v: number) => formatFloat(v, 3)} tick={{ fontSize: 11, fill: AXIS }} tickLine={false} />
            <Tooltip
              formatter={(value) => (typeof value === "number" ? formatFloat(value) : String(value))}
              labelFormatter={(label) => `Step ${formatNumber(Number(label))}`}
              contentStyle={{ fontSize: 12, borderRadius: 8 }}
            />
            <Legend iconType="plainline" wrapperStyle={{ fontSize: 12, color: AXIS }} />
            {variants.map((v, i) => (
              <Line
                key={`loss_${v.job}`}
                type="linear"
                dataKey={`loss_${v.job}`}
                name={`${paramsLabel(v.params)}${v.best ? " (best)" : ""}`}
                stroke={COLORS[i % COLORS.length]}
                strokeWidth={v.best ? 3 : 1.75}
                dot={rows.length < 60 ? { r: 2 } : false}
                connectNulls
                isAnimationActive={false}
              />
            ))}
            {variants
              .filter((v) => v.eval_points.length > 0)
              .map((v) => (
                <Line
                  key={`eval_${v.job}`}
                  type="linear"
                  dataKey={`eval_${v.job}`}
                  name={`eval · ${paramsLabel(v.params)}`}
                  stroke={COLORS[variants.indexOf(v) % COLORS.length]}
                  strokeWidth={1.25}
                  strokeDasharray="5 3"
                  dot={{ r: 3 }}
                  legendType="none"
                  connectNulls
                  isAnimationActive={false}
                />
              ))}
          </LineChart>
        </ResponsiveContainer>
      )}
    </figure>
  );
}

function RankingTable({ sweep }: { sweep: SweepDetail }) {
  const cancel = useCancelJob();
  const names = Object.keys(sweep.parameters);
  const ordered = [...sweep.variants].sort((a, b) => (a.rank ?? 1e9) - (b.rank ?? 1e9) || a.job - b.job);
  return (
    <div className="table-wrap">
      <table className="table tr-table" data-testid="sweep-table">
        <thead>
          <tr>
            <th scope="col">Rank</th>
            {names.map((n) => (
              <th scope="col" key={n}>
                {n}
              </th>
            ))}
            <th scope="col">Status</th>
            <th scope="col" className="num">
              Eval loss
            </th>
            <th scope="col" className="num">
              Final train loss
            </th>
            <th scope="col">Job</th>
          </tr>
        </thead>
        <tbody>
          {ordered.map((v) => (
            <tr key={v.job} data-testid="sweep-variant" data-best={v.best || undefined} data-rank={v.rank ?? undefined}>
              <td>
                {v.rank ?? "—"}{" "}
                {v.best && (
                  <span className="tr-badge tr-badge--success" data-testid="best-badge">
                    Best
                  </span>
                )}
              </td>
              {names.map((n) => (
                <td key={n}>{v.params[n] ?? "—"}</td>
              ))}
              <td>
                <JobStatusBadge status={v.status as JobStatus} />
                {v.error && <div className="muted small">{v.error}</div>}
              </td>
              <td className="num">{v.eval_loss === null ? "—" : formatFloat(v.eval_loss)}</td>
              <td className="num">{v.final_loss === null ? "—" : formatFloat(v.final_loss)}</td>
              <td>
                <Link to={`/training/jobs/${v.job}`}>Job {v.job}</Link>
                {isActive(v.status as JobStatus) && (
                  <>
                    {" · "}
                    <Button variant="ghost" size="sm" onClick={() => cancel.mutate(v.job)} disabled={cancel.isPending}>
                      Cancel
                    </Button>
                  </>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

export default function SweepPage() {
  const id = Number(useParams().id);
  const sweep = useSweep(id);
  const cancel = useCancelSweep(id);
  const promote = usePromoteSweep(id);
  const data = sweep.data;
  if (sweep.isPending) {
    return (
      <div className="center-pad">
        <Spinner label="Loading the sweep" />
      </div>
    );
  }
  if (!data) return <Banner tone="error">{errorMessage(sweep.error)}</Banner>;
  const running = data.status === "running";
  const best = data.variants.find((v) => v.best);
  return (
    <>
      <PageHeader
        title={data.name}
        description={
          <>
            {data.strategy === "grid" ? "Grid" : "Random"} sweep of {formatNumber(data.variant_count)} variants over{" "}
            {Object.keys(data.parameters).join(", ")} · started {formatDateTime(data.created)}
            {data.finished ? ` · finished ${formatDateTime(data.finished)}` : ""}
          </>
        }
        actions={
          <>
            <Link to="/training" className="btn btn--ghost btn--md tr-link-btn">
              <span>All jobs</span>
            </Link>
            {running && (
              <Button variant="danger" onClick={() => cancel.mutate()} loading={cancel.isPending}>
                Cancel sweep
              </Button>
            )}
            <Button variant="primary" onClick={() => promote.mutate(undefined)} loading={promote.isPending} disabled={!best} data-testid="promote-best">
              Promote best
            </Button>
          </>
        }
      />
      {(cancel.error || promote.error) && <Banner tone="error">{errorMessage(cancel.error ?? promote.error)}</Banner>}
      {promote.data && (
        <Banner tone="success" testId="promoted">
          Promoted: <Link to={`/models/${promote.data.model}`}>{promote.data.name} v{promote.data.version}</Link> (tagged “{promote.data.tag}”).
        </Banner>
      )}
      {!promote.data && data.promoted_model && (
        <Banner tone="info">
          The promoted model: <Link to={`/models/${data.promoted_model}`}>model {data.promoted_model}</Link>.
        </Banner>
      )}
      <Card
        title={running ? `Running · ${data.active_count} of ${data.variant_count} variants active` : "Finished"}
        description={
          best
            ? `Best${running ? " so far" : ""}: ${paramsLabel(best.params)}, ranked by ${data.metric_used === "eval_loss" ? "final eval loss" : "final training loss (a variant has no eval loss)"}.`
            : "No variant has succeeded yet."
        }
        testId="sweep-card"
      >
        <SweepChart variants={data.variants} />
        <RankingTable sweep={data} />
      </Card>
    </>
  );
}
