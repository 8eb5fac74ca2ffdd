// Bar charts (recharts): the token-length histogram of the report and the turns histogram of the statistics.
import type { ReactNode } from "react";
import { Bar, BarChart, CartesianGrid, ResponsiveContainer, Tooltip, XAxis, YAxis } from "recharts";
import { formatNumber } from "../../lib/format";
import type { HistogramBin } from "../../api/types";

const ACCENT = "#5b4fe0";
const DANGER = "#e05d61";
const GRID = "#ececf1";
const AXIS = "#8b8b97";

interface TipProps {
  active?: boolean;
  payload?: ReadonlyArray<{ payload?: unknown }>;
}

function ChartTip({ active, payload, render }: TipProps & { render: (row: never) => ReactNode }) {
  const row = payload?.[0]?.payload;
  if (!active || !row) return null;
  return <div className="ds-chart-tip">{render(row as never)}</div>;
}

interface TokenBin extends HistogramBin {
  label: string;
  within: number;
  over: number;
}

/** Token lengths per row: bins at or past max_length are drawn in red. */
export function TokenHistogram({ bins, maxLength }: { bins: HistogramBin[]; maxLength: number | null }) {
  const data: TokenBin[] = bins.map((bin) => {
    const past = maxLength !== null && bin.end > maxLength;
    return {
      ...bin,
      label: `${formatNumber(bin.start)}–${formatNumber(bin.end)}`,
      within: past ? 0 : bin.count,
      over: past ? bin.count : 0,
    };
  });
  const hasOver = data.some((d) => d.over > 0);
  return (
    <div className="ds-chart" data-testid="token-histogram" role="img" aria-label="Histogram of token lengths per row">
      <ResponsiveContainer width="100%" height={240}>
        <BarChart data={data} margin={{ top: 8, right: 8, bottom: 4, left: -8 }} barCategoryGap={2}>
          <CartesianGrid vertical={false} stroke={GRID} />
          <XAxis
            dataKey="start"
            tickFormatter={(value: number) => formatNumber(value)}
            tick={{ fontSize: 11, fill: AXIS }}
            tickLine={false}
            axisLine={{ stroke: GRID }}
            interval="preserveStartEnd"
            minTickGap={18}
          />
          <YAxis
            allowDecimals={false}
            tick={{ fontSize: 11, fill: AXIS }}
            tickLine={false}
            axisLine={false}
            width={48}
          />
          <Tooltip
            cursor={{ fill: "rgba(91, 79, 224, 0.06)" }}
            content={(props) => (
              <ChartTip
                {...(props as TipProps)}
                render={(row: TokenBin) => (
                  <>
                    <strong>{row.label} tokens</strong>
                    <span>
                      {formatNumber(row.count)} {row.count === 1 ? "row" : "rows"}
                      {row.over > 0 ? " · over max length" : ""}
                    </span>
                  </>
                )}
              />
            )}
          />
          <Bar dataKey="within" stackId="t" fill={ACCENT} radius={[3, 3, 0, 0]} isAnimationActive={false} name="Within max length" />
          {hasOver && (
            <Bar dataKey="over" stackId="t" fill={DANGER} radius={[3, 3, 0, 0]} isAnimationActive={false} name="Over max length" />
          )}
        </BarChart>
      </ResponsiveContainer>
    </div>
  );
}

/** Rows per number of turns. */
export function TurnsHistogram({ data }: { data: { turns: number; count: number }[] }) {
  return (
    <div className="ds-chart" data-testid="turns-histogram" role="img" aria-label="Histogram of turns per conversation">
      <ResponsiveContainer width="100%" height={200}>
        <BarChart data={data} margin={{ top: 8, right: 8, bottom: 4, left: -8 }} barCategoryGap={6}>
          <CartesianGrid vertical={false} stroke={GRID} />
          <XAxis dataKey="turns" tick={{ fontSize: 11, fill: AXIS }} tickLine={false} axisLine={{ stroke: GRID }} />
          <YAxis allowDecimals={false} tick={{ fontSize: 11, fill: AXIS }} tickLine={false} axisLine={false} width={48} />
          <Tooltip
            cursor={{ fill: "rgba(91, 79, 224, 0.06)" }}
            content={(props) => (
              <ChartTip
                {...(props as TipProps)}
                render={(row: { turns: number; count: number }) => (
                  <>
                    <strong>
                      {row.turns} {row.turns === 1 ? "turn" : "turns"}
                    </strong>
                    <span>
                      {formatNumber(row.count)} {row.count === 1 ? "row" : "rows"}
                    </span>
                  </>
                )}
              />
            )}
          />
          <Bar dataKey="count" fill={ACCENT} radius={[3, 3, 0, 0]} maxBarSize={64} isAnimationActive={false} name="Rows" />
        </BarChart>
      </ResponsiveContainer>
    </div>
  );
}
