// Two loss curves overlaid in one chart (training loss solid, eval loss dashed), against the step.
import { useMemo } from "react";
import { CartesianGrid, Legend, Line, LineChart, ResponsiveContainer, Tooltip, XAxis, YAxis } from "recharts";
import { formatFloat, formatNumber } from "../../lib/format";
import type { LossPoint } from "../../api/models";

export const COLOR_A = "#5b4fe0";
export const COLOR_B = "#d97706";
const GRID = "#ececf1";
const AXIS = "#8b8b97";

type Row = { step: number; a_loss?: number; b_loss?: number; a_eval?: number; b_eval?: number };

const isNum = (v: unknown): v is number => typeof v === "number" && Number.isFinite(v);

export function OverlaidLossChart({
  a,
  b,
  labelA,
  labelB,
  height = 300,
}: {
  a: LossPoint[];
  b: LossPoint[];
  labelA: string;
  labelB: string;
  height?: number;
}) {
  const { rows, hasEvalA, hasEvalB, countA, countB } = useMemo(() => {
    const byStep = new Map<number, Row>();
    const put = (step: number, values: Partial<Row>) => byStep.set(step, { ...(byStep.get(step) ?? { step }), ...values, step });
    let hasEvalA = false;
    let hasEvalB = false;
    let countA = 0;
    let countB = 0;
    for (const p of a) {
      const step = Number(p.step);
      if (!Number.isFinite(step)) continue;
      if (isNum(p.loss)) {
        put(step, { a_loss: p.loss });
        countA += 1;
      }
      if (isNum(p.eval_loss)) {
        put(step, { a_eval: p.eval_loss });
        hasEvalA = true;
      }
    }
    for (const p of b) {
      const step = Number(p.step);
      if (!Number.isFinite(step)) continue;
      if (isNum(p.loss)) {
        put(step, { b_loss: p.loss });
        countB += 1;
      }
      if (isNum(p.eval_loss)) {
        put(step, { b_eval: p.eval_loss });
        hasEvalB = true;
      }
    }
    return { rows: [...byStep.values()].sort((x, y) => x.step - y.step), hasEvalA, hasEvalB, countA, countB };
  }, [a, b]);
  const dots = rows.length < 60;
  return (
    <figure className="tr-chart md-compare-chart" data-testid="compare-loss-chart" data-points-a={countA} data-points-b={countB}>
      <figcaption className="tr-chart__head">
        <span className="tr-chart__title">Loss curves</span>
        <span className="tr-chart__subtitle">
          {formatNumber(countA)} + {formatNumber(countB)} points
        </span>
      </figcaption>
      {rows.length === 0 ? (
        <div className="tr-chart__empty">Neither model has recorded loss points.</div>
      ) : (
        <ResponsiveContainer width="100%" height={height}>
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
            <Line type="linear" dataKey="a_loss" name={`${labelA} loss`} stroke={COLOR_A} strokeWidth={2} dot={dots ? { r: 2 } : false} connectNulls isAnimationActive={false} />
            <Line type="linear" dataKey="b_loss" name={`${labelB} loss`} stroke={COLOR_B} strokeWidth={2} dot={dots ? { r: 2 } : false} connectNulls isAnimationActive={false} />
            {hasEvalA && (
              <Line type="linear" dataKey="a_eval" name={`${labelA} eval`} stroke={COLOR_A} strokeWidth={1.5} strokeDasharray="5 3" dot={{ r: 3 }} connectNulls isAnimationActive={false} />
            )}
            {hasEvalB && (
              <Line type="linear" dataKey="b_eval" name={`${labelB} eval`} stroke={COLOR_B} strokeWidth={1.5} strokeDasharray="5 3" dot={{ r: 3 }} connectNulls isAnimationActive={false} />
            )}
          </LineChart>
        </ResponsiveContainer>
      )}
    </figure>
  );
}
