// Live line charts of a job (recharts): loss with eval loss, and one small chart per other metric. x = step.
import { useMemo, type ReactNode } from "react";
import { CartesianGrid, Legend, Line, LineChart, ResponsiveContainer, Tooltip, XAxis, YAxis } from "recharts";
import { formatFloat, formatLearningRate, formatNumber } from "../../lib/format";
import type { MetricPoint } from "../../api/types";

const ACCENT = "#5b4fe0";
const EVAL = "#e0820f";
const GRID = "#ececf1";
const AXIS = "#8b8b97";
/** Above this many points a chart draws every n-th one (the last always); the counts stay exact. */
const MAX_DRAWN = 1500;

type Row = { step: number; [key: string]: number | null };

function thin<T>(rows: T[]): T[] {
  if (rows.length <= MAX_DRAWN) return rows;
  const every = Math.ceil(rows.length / MAX_DRAWN);
  return rows.filter((_, i) => i % every === 0 || i === rows.length - 1);
}

/** One row per step (a resumed run repeats steps: the latest point of a step wins), sorted by step. */
function byStep(points: MetricPoint[], pick: (p: MetricPoint) => Partial<Row> | null): Row[] {
  const rows = new Map<number, Row>();
  for (const p of points) {
    const values = pick(p);
    if (!values) continue;
    const step = Number(p.step) || 0;
    rows.set(step, { ...(rows.get(step) ?? { step }), ...values, step } as Row);
  }
  return thin([...rows.values()].sort((a, b) => a.step - b.step));
}

const isNum = (v: unknown): v is number => typeof v === "number" && Number.isFinite(v);

interface TipProps {
  active?: boolean;
  label?: number | string;
  payload?: ReadonlyArray<{ name?: string; value?: unknown; color?: string; dataKey?: unknown }>;
}

function ChartTip({ active, label, payload, format }: TipProps & { format: (v: number) => string }) {
  if (!active || !payload?.length) return null;
  const rows = payload.filter((p) => isNum(p.value));
  if (!rows.length) return null;
  return (
    <div className="tr-chart-tip">
      <strong>Step {formatNumber(Number(label))}</strong>
      {rows.map((p) => (
        <span key={String(p.dataKey)} className="tr-chart-tip__row">
          <i style={{ background: p.color }} aria-hidden="true" />
          {p.name}: {format(p.value as number)}
        </span>
      ))}
    </div>
  );
}

function ChartFrame({
  title,
  subtitle,
  testId,
  count,
  empty,
  children,
}: {
  title: string;
  subtitle?: ReactNode;
  testId?: string;
  count: number;
  empty: boolean;
  children: ReactNode;
}) {
  return (
    <figure className="tr-chart" data-testid={testId} data-points={count}>
      <figcaption className="tr-chart__head">
        <span className="tr-chart__title">{title}</span>
        {subtitle && <span className="tr-chart__subtitle">{subtitle}</span>}
      </figcaption>
      {empty ? <div className="tr-chart__empty">No points yet</div> : children}
    </figure>
  );
}

const axisProps = {
  tick: { fontSize: 11, fill: AXIS },
  tickLine: false,
} as const;

/** Training loss (every metric point) and eval loss (eval points) against the step. */
export function LossChart({ points, height = 280 }: { points: MetricPoint[]; height?: number }) {
  const { rows, trainCount, evalCount, last } = useMemo(() => {
    let trainCount = 0;
    let evalCount = 0;
    let last: number | null = null;
    for (const p of points) {
      if (p.kind === "metric" && isNum(p.loss)) {
        trainCount += 1;
        last = p.loss;
      } else if (p.kind === "eval" && isNum(p.eval_loss)) evalCount += 1;
    }
    const rows = byStep(points, (p) => {
      if (p.kind === "metric" && isNum(p.loss)) return { loss: p.loss };
      if (p.kind === "eval" && isNum(p.eval_loss)) return { eval_loss: p.eval_loss };
      return null;
    });
    return { rows, trainCount, evalCount, last };
  }, [points]);
  const dots = rows.length < 60;
  return (
    <ChartFrame
      title="Loss"
      subtitle={last !== null ? `last ${formatFloat(last)} · ${formatNumber(trainCount)} points` : undefined}
      testId="loss-chart"
      count={trainCount}
      empty={rows.length === 0}
    >
      <ResponsiveContainer width="100%" height={height}>
        <LineChart data={rows} margin={{ top: 8, right: 12, bottom: 0, left: -8 }}>
          <CartesianGrid vertical={false} stroke={GRID} />
          <XAxis
            dataKey="step"
            type="number"
            domain={["dataMin", "dataMax"]}
            allowDecimals={false}
            axisLine={{ stroke: GRID }}
            {...axisProps}
          />
          <YAxis domain={["auto", "auto"]} axisLine={false} width={56} tickFormatter={(v: number) => formatFloat(v, 3)} {...axisProps} />
          <Tooltip content={(props) => <ChartTip {...(props as TipProps)} format={(v) => formatFloat(v)} />} />
          <Legend iconType="plainline" wrapperStyle={{ fontSize: 12, color: AXIS }} />
          <Line
            type="linear"
            dataKey="loss"
            name="Training loss"
            stroke={ACCENT}
            strokeWidth={2}
            dot={dots ? { r: 2 } : false}
            connectNulls
            isAnimationActive={false}
          />
          {evalCount > 0 && (
            <Line
              type="linear"
              dataKey="eval_loss"
              name="Eval loss"
              stroke={EVAL}
              strokeWidth={2}
              strokeDasharray="5 3"
              dot={{ r: 3.5, fill: EVAL, strokeWidth: 0 }}
              connectNulls
              isAnimationActive={false}
            />
          )}
        </LineChart>
      </ResponsiveContainer>
    </ChartFrame>
  );
}

export type MetricKey = "learning_rate" | "grad_norm" | "memory_mb" | "tokens_per_s";

const METRIC: Record<MetricKey, { title: string; unit?: string; color: string; format: (v: number) => string }> = {
  learning_rate: { title: "Learning rate", color: "#0f8b8d", format: formatLearningRate },
  grad_norm: { title: "Grad norm", color: "#c2410c", format: (v) => formatFloat(v, 3) },
  memory_mb: { title: "Memory", unit: "MB", color: "#2563eb", format: (v) => formatNumber(v) },
  tokens_per_s: { title: "Throughput", unit: "tokens/s", color: "#15803d", format: (v) => (Math.abs(v) >= 100 ? formatNumber(v) : formatFloat(v, 1)) },
};

/** One training metric against the step. */
export function MetricChart({ points, metric, height = 180 }: { points: MetricPoint[]; metric: MetricKey; height?: number }) {
  const spec = METRIC[metric];
  const rows = useMemo(
    () => byStep(points, (p) => (p.kind === "metric" && isNum(p[metric]) ? { value: p[metric] as number } : null)),
    [points, metric],
  );
  const last = rows.length ? rows[rows.length - 1].value : null;
  return (
    <ChartFrame
      title={spec.unit ? `${spec.title} (${spec.unit})` : spec.title}
      subtitle={isNum(last) ? `last ${spec.format(last)}` : undefined}
      testId={`chart-${metric}`}
      count={rows.length}
      empty={rows.length === 0}
    >
      <ResponsiveContainer width="100%" height={height}>
        <LineChart data={rows} margin={{ top: 8, right: 12, bottom: 0, left: -8 }}>
          <CartesianGrid vertical={false} stroke={GRID} />
          <XAxis dataKey="step" type="number" domain={["dataMin", "dataMax"]} allowDecimals={false} axisLine={{ stroke: GRID }} {...axisProps} />
          <YAxis
            domain={metric === "learning_rate" || metric === "memory_mb" ? [0, "auto"] : ["auto", "auto"]}
            axisLine={false}
            width={60}
            tickFormatter={(v: number) => spec.format(v)}
            {...axisProps}
          />
          <Tooltip content={(props) => <ChartTip {...(props as TipProps)} format={spec.format} />} />
          <Line
            type="linear"
            dataKey="value"
            name={spec.title}
            stroke={spec.color}
            strokeWidth={1.75}
            dot={false}
            connectNulls
            isAnimationActive={false}
          />
        </LineChart>
      </ResponsiveContainer>
    </ChartFrame>
  );
}
