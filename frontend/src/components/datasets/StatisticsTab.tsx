// Statistics: characters per row, turns per conversation, role balance and preference pair lengths.
import { errorMessage } from "../../api/client";
import { useDatasetStatistics } from "../../api/datasets";
import type { Dataset, DatasetStatistics } from "../../api/types";
import { Banner, Card, Spinner } from "../ui";
import { TurnsHistogram } from "./Charts";
import { formatLabel } from "./labels";
import { formatNumber, share } from "../../lib/format";

function Figures({ items }: { items: [string, number | null | undefined, number?][] }) {
  return (
    <dl className="ds-percentiles">
      {items.map(([label, value, digits]) => (
        <div key={label} className="ds-percentile">
          <dt>{label}</dt>
          <dd>{formatNumber(value, digits ?? 0)}</dd>
        </div>
      ))}
    </dl>
  );
}

/** Horizontal bars, each with its value and share of the total. */
function Bars({ items, testId, unit }: { items: { label: string; value: number; tone?: string }[]; testId?: string; unit?: string }) {
  const total = items.reduce((sum, i) => sum + i.value, 0);
  const max = Math.max(1, ...items.map((i) => i.value));
  return (
    <ul className="ds-bars" data-testid={testId}>
      {items.map((item) => (
        <li key={item.label} className="ds-bars__row">
          <span className="ds-bars__label">{item.label}</span>
          <span className="ds-bars__track">
            <span className={`ds-bars__fill ds-bars__fill--${item.tone ?? "accent"}`} style={{ width: `${(item.value / max) * 100}%` }} />
          </span>
          <span className="ds-bars__value">
            {formatNumber(item.value)}
            {unit ? ` ${unit}` : ""}
            {!unit && <span className="ds-share">{share(item.value, total)}</span>}
          </span>
        </li>
      ))}
    </ul>
  );
}

function StatisticsView({ stats }: { stats: DatasetStatistics }) {
  const order = ["system", "user", "assistant"];
  const rank = (role: string) => (order.includes(role) ? order.indexOf(role) : order.length);
  const roleEntries = stats.roles
    ? Object.entries(stats.roles)
        .filter(([, v]) => typeof v === "number")
        .sort(([a], [b]) => rank(a) - rank(b))
    : [];
  const roles = roleEntries.some(([, v]) => (v as number) > 0) ? roleEntries : [];
  const pref = stats.preference;
  return (
    <div className="ds-report" data-testid="statistics">
      <div className="ds-grid-2">
        <Card title="Characters per row" icon="activity" description={`${formatNumber(stats.rows)} rows · ${formatLabel(stats.format)}`}>
          <Figures
            items={[
              ["mean", stats.chars.mean],
              ["median", stats.chars.p50],
              ["p95", stats.chars.p95],
              ["max", stats.chars.max],
            ]}
          />
        </Card>
        {roles.length > 0 && (
          <Card title="Role balance" icon="user" description="Messages per role over all conversations.">
            <Bars
              testId="role-balance"
              items={roles.map(([role, value]) => ({
                label: role,
                value: value as number,
                tone: role === "assistant" ? "success" : role === "system" ? "muted" : "accent",
              }))}
            />
          </Card>
        )}
      </div>
      {stats.turns && stats.turns.histogram.length > 0 && (
        <Card
          title="Turns per conversation"
          icon="training"
          description={`User and assistant messages per row, system prompts not counted: mean ${formatNumber(stats.turns.mean, 1)}, max ${formatNumber(stats.turns.max)}.`}
        >
          <TurnsHistogram data={stats.turns.histogram} />
        </Card>
      )}
      {pref && (
        <Card
          title="Preference pairs"
          icon="spark"
          description="Mean characters of the prompt and of the two responses. A chosen response much longer than the rejected one can teach length instead of quality."
        >
          <Bars
            testId="preference-lengths"
            unit="chars"
            items={[
              { label: "prompt", value: pref.prompt_chars_mean, tone: "muted" },
              { label: "chosen", value: pref.chosen_chars_mean, tone: "success" },
              { label: "rejected", value: pref.rejected_chars_mean, tone: "danger" },
            ]}
          />
          <p className={`small${pref.identical_pairs ? " text-danger" : " muted"}`}>
            {formatNumber(pref.identical_pairs)} {pref.identical_pairs === 1 ? "pair has" : "pairs have"} identical chosen
            and rejected responses.
          </p>
        </Card>
      )}
    </div>
  );
}

export function StatisticsTab({ dataset, fallback }: { dataset: Dataset; fallback?: DatasetStatistics | null }) {
  const stats = useDatasetStatistics(dataset, !fallback);
  const data = fallback ?? stats.data;
  if (data) return <StatisticsView stats={data} />;
  if (stats.isError) return <Banner tone="error">{errorMessage(stats.error)}</Banner>;
  return (
    <div className="center-pad">
      <Spinner label="Loading statistics" />
    </div>
  );
}
