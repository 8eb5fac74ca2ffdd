// Dashboard charts (recharts): jobs per day, training hours per day, final loss by method.
import { Bar, BarChart, CartesianGrid, Legend, ResponsiveContainer, Tooltip, XAxis, YAxis } from "recharts";
import type { DashboardAnalytics } from "../../api/dashboard";
import type { TrainingMethod } from "../../api/types";
import { METHOD_LABEL } from "../training/labels";

const GRID = "#ececf1";
const AXIS = "#8b8b97";
const COLORS = { succeeded: "#2f9e5b", failed: "#d64545", other: "#9c96f0", hours: "#5b4fe0", train: "#5b4fe0", eval: "#e0820f" };

function shortDate(iso: string): string {
  const d = new Date(`${iso}T00:00:00Z`);
  return d.toLocaleDateString(undefined, { month: "short", day: "numeric", timeZone: "UTC" });
}

function NoData({ text }: { text: string }) {
  return <div className="db-chart-empty">{text}</div>;
}

export function JobsPerDayChart({ data, height = 220 }: { data: DashboardAnalytics["jobs_per_day"]; height?: number }) {
  const total = data.reduce((sum, d) => sum + d.count, 0);
  const rows = data.map((d) => ({
    date: shortDate(d.date),
    succeeded: d.succeeded,
    failed: d.failed,
    other: Math.max(0, d.count - d.succeeded - d.failed),
  }));
  return (
    <div className="db-chart" data-testid="jobs-per-day-chart" data-total={total}>
      {total === 0 ? (
        <NoData text="No jobs in this period yet." />
      ) : (
        <ResponsiveContainer width="100%" height={height}>
          <BarChart data={rows} margin={{ top: 8, right: 8, bottom: 0, left: -16 }}>
            <CartesianGrid stroke={GRID} vertical={false} />
            <XAxis dataKey="date" tick={{ fill: AXIS, fontSize: 11 }} interval="preserveStartEnd" minTickGap={16} />
            <YAxis allowDecimals={false} tick={{ fill: AXIS, fontSize: 11 }} />
            <Tooltip cursor={{ fill: "rgba(91,79,224,0.06)" }} />
            <Legend iconSize={10} wrapperStyle={{ fontSize: 12 }} />
            <Bar dataKey="succeeded" name="Succeeded" stackId="jobs" fill={COLORS.succeeded} isAnimationActive={false} />
            <Bar dataKey="failed" name="Failed" stackId="jobs" fill={COLORS.failed} isAnimationActive={false} />
            <Bar dataKey="other" name="Other" stackId="jobs" fill={COLORS.other} radius={[3, 3, 0, 0]} isAnimationActive={false} />
          </BarChart>
        </ResponsiveContainer>
      )}
    </div>
  );
}

export function HoursPerDayChart({ data, height = 220 }: { data: DashboardAnalytics["training_hours_per_day"]; height?: number }) {
  const total = data.reduce((sum, d) => sum + d.hours, 0);
  const rows = data.map((d) => ({ date: shortDate(d.date), hours: d.hours }));
  return (
    <div className="db-chart" data-testid="hours-per-day-chart" data-total={total.toFixed(4)}>
      {total === 0 ? (
        <NoData text="No training time recorded in this period." />
      ) : (
        <ResponsiveContainer width="100%" height={height}>
          <BarChart data={rows} margin={{ top: 8, right: 8, bottom: 0, left: -8 }}>
            <CartesianGrid stroke={GRID} vertical={false} />
            <XAxis dataKey="date" tick={{ fill: AXIS, fontSize: 11 }} interval="preserveStartEnd" minTickGap={16} />
            <YAxis tick={{ fill: AXIS, fontSize: 11 }} tickFormatter={(v: number) => (v < 1 ? `${Math.round(v * 60)}m` : `${v.toFixed(1)}h`)} />
            <Tooltip
              cursor={{ fill: "rgba(91,79,224,0.06)" }}
              formatter={(value) => {
                const v = Number(value);
                return [v < 1 ? `${(v * 60).toFixed(1)} min` : `${v.toFixed(2)} h`, "Training time"];
              }}
            />
            <Bar dataKey="hours" name="Training time" fill={COLORS.hours} radius={[3, 3, 0, 0]} isAnimationActive={false} />
          </BarChart>
        </ResponsiveContainer>
      )}
    </div>
  );
}

export function LossByMethodChart({ data, height = 220 }: { data: DashboardAnalytics["final_loss_by_method"]; height?: number }) {
  const rows = data.map((d) => ({
    method: METHOD_LABEL[d.method as TrainingMethod] ?? d.method.toUpperCase(),
    train: d.mean_final_train_loss,
    eval: d.mean_final_eval_loss,
    jobs: d.jobs,
  }));
  const hasEval = rows.some((r) => r.eval !== null);
  return (
    <div className="db-chart" data-testid="loss-by-method-chart" data-methods={rows.length}>
      {rows.length === 0 ? (
        <NoData text="Final losses appear here once a run succeeds." />
      ) : (
        <ResponsiveContainer width="100%" height={height}>
          <BarChart data={rows} margin={{ top: 8, right: 8, bottom: 0, left: -8 }}>
            <CartesianGrid stroke={GRID} vertical={false} />
            <XAxis dataKey="method" tick={{ fill: AXIS, fontSize: 12 }} />
            <YAxis tick={{ fill: AXIS, fontSize: 11 }} />
            <Tooltip
              cursor={{ fill: "rgba(91,79,224,0.06)" }}
              formatter={(value, name) => [value === null || value === undefined ? "—" : Number(value).toFixed(4), String(name)]}
            />
            <Legend iconSize={10} wrapperStyle={{ fontSize: 12 }} />
            <Bar dataKey="train" name="Mean final train loss" fill={COLORS.train} radius={[3, 3, 0, 0]} isAnimationActive={false} />
            {hasEval && <Bar dataKey="eval" name="Mean final eval loss" fill={COLORS.eval} radius={[3, 3, 0, 0]} isAnimationActive={false} />}
          </BarChart>
        </ResponsiveContainer>
      )}
    </div>
  );
}
