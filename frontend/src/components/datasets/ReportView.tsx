// The validation report: verdict, summary figures, token-length histogram, columns, errors, warnings, PII, quality.
import type { ReactNode } from "react";
import type { ReportError, ValidationReport, Verdict } from "../../api/types";
import { Icon, type IconName } from "../Icon";
import { Card } from "../ui";
import { TokenHistogram } from "./Charts";
import { formatLabel } from "./labels";
import { formatNumber, humanize, lineList, share } from "../../lib/format";

const VERDICT: Record<Verdict, { tone: string; icon: IconName; title: string }> = {
  ok: { tone: "success", icon: "check", title: "Looks good — ready to train" },
  warnings: { tone: "warning", icon: "alert", title: "Usable, with warnings" },
  invalid: { tone: "error", icon: "alert", title: "Invalid — this dataset cannot be used for training yet" },
};

const PII_LABELS: Record<string, string> = {
  email: "Email addresses",
  phone: "Phone numbers",
  credit_card: "Credit card numbers",
  ip_address: "IP addresses",
  secret: "API keys and secrets",
};

const QUALITY_LABELS: Record<string, string> = {
  empty: "Empty rows",
  very_short: "Very short rows",
  very_long: "Very long rows",
  control_chars: "Control characters",
  broken_encoding: "Broken encoding (mojibake)",
  no_assistant_turn: "No assistant turn",
};

/** One error: "file:line" (when known) and the message. */
export function ErrorItem({ error }: { error: ReportError }) {
  const where = [error.file, error.line].filter((part) => part !== null && part !== undefined && part !== "").join(":");
  return (
    <li className="ds-issue">
      {where && <span className="ds-issue__where mono">{where}</span>}
      <span className="ds-issue__text">{error.message}</span>
    </li>
  );
}

function VerdictBanner({ report }: { report: ValidationReport }) {
  const v = VERDICT[report.verdict] ?? VERDICT.warnings;
  const invalidRows = report.rows - report.rows_valid;
  return (
    <div className={`banner banner--${v.tone} ds-verdict`} data-testid="verdict" data-verdict={report.verdict} role="status">
      <Icon name={v.icon} size={18} className="banner__icon" />
      <div className="banner__body">
        <strong className="banner__title ds-verdict__title">{v.title}</strong>
        <div>
          {formatNumber(report.rows_valid)} of {formatNumber(report.rows)} rows are valid
          {invalidRows > 0 ? ` (${formatNumber(invalidRows)} with errors)` : ""}.{" "}
          {report.format ? (
            <>
              Format <strong>{formatLabel(report.format)}</strong>
              {report.format_detected ? ", detected from the columns" : ", as you set it"}
            </>
          ) : (
            "The format could not be detected"
          )}
          {report.tool_calling && (
            <span data-testid="tool-calling-summary">
              {` · ${formatNumber(report.tool_calling.rows)} tool-calling ${report.tool_calling.rows === 1 ? "row" : "rows"} (${formatNumber(report.tool_calling.calls)} calls, ${formatNumber(report.tool_calling.results)} results)`}
            </span>
          )}
          {report.warnings.length > 0 &&
            ` · ${report.warnings.length} ${report.warnings.length === 1 ? "warning" : "warnings"}`}
          {report.errors_total > 0 && ` · ${formatNumber(report.errors_total)} ${report.errors_total === 1 ? "error" : "errors"}`}
          {typeof report.elapsed_s === "number" && <span className="muted"> · checked in {report.elapsed_s.toFixed(1)} s</span>}
        </div>
      </div>
    </div>
  );
}

function Stat({
  label,
  value,
  sub,
  tone = "neutral",
  testId,
}: {
  label: string;
  value: ReactNode;
  sub?: ReactNode;
  tone?: "neutral" | "warn" | "bad" | "good";
  testId?: string;
}) {
  return (
    <div className={`ds-stat ds-stat--${tone}`} data-testid={testId}>
      <div className="ds-stat__label">{label}</div>
      <div className="ds-stat__value">{value}</div>
      {sub && <div className="ds-stat__sub">{sub}</div>}
    </div>
  );
}

function SummaryStats({ report }: { report: ValidationReport }) {
  const dup = report.duplicates;
  const piiEntries = Object.entries(report.pii ?? {}).filter(([, v]) => v && v.count > 0);
  const piiRows = piiEntries.reduce((sum, [, v]) => sum + v.count, 0);
  const over = report.tokens?.over_max_length ?? null;
  const invalid = report.rows - report.rows_valid;
  return (
    <div className="ds-stats" data-testid="report-summary">
      <Stat
        label="Rows"
        value={formatNumber(report.rows)}
        sub={
          report.files.length > 1
            ? `in ${report.files.length} files`
            : report.format
              ? formatLabel(report.format)
              : "format not detected"
        }
        testId="stat-rows"
      />
      <Stat
        label="Valid rows"
        value={formatNumber(report.rows_valid)}
        sub={invalid > 0 ? `${formatNumber(invalid)} with errors` : share(report.rows_valid, report.rows)}
        tone={invalid > 0 ? "bad" : "good"}
        testId="stat-valid"
      />
      <Stat
        label="Duplicates"
        value={formatNumber(dup?.exact ?? 0)}
        sub={dup ? `${formatNumber(dup.normalized)} near-duplicates` : "not checked"}
        tone={dup && (dup.exact > 0 || dup.normalized > 0) ? "warn" : "neutral"}
        testId="stat-duplicates"
      />
      <Stat
        label="PII"
        value={formatNumber(piiRows)}
        sub={piiEntries.length ? piiEntries.map(([k]) => humanize(k).toLowerCase()).join(", ") : "none found"}
        tone={piiRows > 0 ? "warn" : "neutral"}
        testId="stat-pii"
      />
      <Stat
        label="Over max length"
        value={over === null ? "—" : formatNumber(over)}
        sub={report.tokens ? `> ${formatNumber(report.tokens.max_length)} tokens` : "not measured"}
        tone={over ? "warn" : "neutral"}
        testId="stat-over-max"
      />
    </div>
  );
}

function TokensCard({ report }: { report: ValidationReport }) {
  const t = report.tokens;
  if (!t || (!t.histogram?.length && !report.rows_valid)) return null;
  const pct = t.percentiles ?? {};
  const marks: [string, number | undefined][] = [
    ["mean", t.mean],
    ["p50", pct.p50],
    ["p90", pct.p90],
    ["p95", pct.p95],
    ["p99", pct.p99],
    ["max", pct.max],
  ];
  return (
    <Card
      title="Token lengths"
      icon="activity"
      description={
        <>
          Rendered with the chat template and counted with the <strong>{t.tokenizer}</strong> tokenizer; rows longer
          than {formatNumber(t.max_length)} tokens are cut during training.
        </>
      }
    >
      <dl className="ds-percentiles">
        {marks.map(([label, value]) => (
          <div key={label} className="ds-percentile">
            <dt>{label}</dt>
            <dd>{formatNumber(value)}</dd>
          </div>
        ))}
      </dl>
      {t.histogram?.length ? (
        <TokenHistogram bins={t.histogram} maxLength={t.max_length} />
      ) : (
        <p className="muted small">No rows to measure.</p>
      )}
      {t.over_max_length > 0 && (
        <p className="small ds-note">
          <Icon name="alert" size={14} /> {formatNumber(t.over_max_length)}{" "}
          {t.over_max_length === 1 ? "row is" : "rows are"} longer than {formatNumber(t.max_length)} tokens
          {t.over_max_length_lines?.length ? ` (lines ${lineList(t.over_max_length_lines)})` : ""}. Raise the max length
          or filter them with Preprocess → Filter by length.
        </p>
      )}
    </Card>
  );
}

function ErrorsCard({ report }: { report: ValidationReport }) {
  if (!report.errors.length) return null;
  const more = report.errors_total - report.errors.length;
  return (
    <Card
      title={
        <>
          Errors <span className="badge badge--danger">{formatNumber(report.errors_total)}</span>
        </>
      }
      icon="alert"
      className="ds-card--danger"
      description={more > 0 ? `The first ${report.errors.length} are listed; ${formatNumber(more)} more are not shown.` : "Rows with errors are left out of training."}
    >
      <ul className="ds-issues" data-testid="report-errors">
        {report.errors.map((error, index) => (
          <ErrorItem key={index} error={error} />
        ))}
      </ul>
    </Card>
  );
}

function WarningsCard({ report }: { report: ValidationReport }) {
  if (!report.warnings.length) return null;
  return (
    <Card
      title={
        <>
          Warnings <span className="badge badge--warning">{report.warnings.length}</span>
        </>
      }
      icon="alert"
      description="These rows will train, but you may want to look at them first."
    >
      <ul className="ds-issues" data-testid="report-warnings">
        {report.warnings.map((warning, index) => (
          <li key={`${warning.code}-${index}`} className="ds-issue ds-issue--warning">
            <span className="ds-issue__text">
              {warning.message}
              {warning.lines?.length ? (
                <span className="ds-issue__lines">
                  {warning.lines.length === 1 ? "Line" : "Lines"} {lineList(warning.lines)}
                </span>
              ) : null}
            </span>
            <code className="ds-issue__code">{warning.code}</code>
          </li>
        ))}
      </ul>
    </Card>
  );
}

function ColumnsTable({ report }: { report: ValidationReport }) {
  const columns = Object.entries(report.columns ?? {});
  if (!columns.length) return null;
  return (
    <Card title="Columns" icon="datasets" description="Rows where each column is missing or empty.">
      <div className="table-wrap">
        <table className="table ds-table-compact" data-testid="report-columns">
          <thead>
            <tr>
              <th scope="col">Column</th>
              <th scope="col" className="num">
                Missing
              </th>
              <th scope="col" className="num">
                Empty
              </th>
            </tr>
          </thead>
          <tbody>
            {columns.map(([name, c]) => (
              <tr key={name}>
                <td className="strong mono">{name}</td>
                <td className={`num${c.missing ? " ds-cell-warn" : ""}`}>
                  {formatNumber(c.missing)} <span className="ds-share">{share(c.missing, report.rows)}</span>
                </td>
                <td className={`num${c.empty ? " ds-cell-warn" : ""}`}>
                  {formatNumber(c.empty)} <span className="ds-share">{share(c.empty, report.rows)}</span>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </Card>
  );
}

function QualityTable({ report }: { report: ValidationReport }) {
  const q = report.quality;
  if (!q) return null;
  const lines = (q.lines ?? {}) as Record<string, number[]>;
  const rows = Object.entries(q).filter(([k, v]) => k !== "lines" && typeof v === "number") as [string, number][];
  const dup = report.duplicates;
  return (
    <Card title="Quality" icon="spark" description="Heuristic checks on the content of each row.">
      <div className="table-wrap">
        <table className="table ds-table-compact" data-testid="report-quality">
          <thead>
            <tr>
              <th scope="col">Check</th>
              <th scope="col" className="num">
                Rows
              </th>
              <th scope="col">Example lines</th>
            </tr>
          </thead>
          <tbody>
            {rows.map(([key, count]) => (
              <tr key={key}>
                <td className="strong">{QUALITY_LABELS[key] ?? humanize(key)}</td>
                <td className={`num${count ? " ds-cell-warn" : ""}`}>{formatNumber(count)}</td>
                <td className="mono ds-lines">{lineList(lines[key], 6) || "—"}</td>
              </tr>
            ))}
            {dup && (
              <>
                <tr>
                  <td className="strong">Exact duplicates</td>
                  <td className={`num${dup.exact ? " ds-cell-warn" : ""}`}>{formatNumber(dup.exact)}</td>
                  <td className="mono ds-lines">
                    {dup.examples?.length ? dup.examples.slice(0, 3).map((pair) => pair.join(" = ")).join(", ") : "—"}
                  </td>
                </tr>
                <tr>
                  <td className="strong">Near-duplicates (normalized)</td>
                  <td className={`num${dup.normalized ? " ds-cell-warn" : ""}`}>{formatNumber(dup.normalized)}</td>
                  <td className="mono ds-lines">—</td>
                </tr>
              </>
            )}
          </tbody>
        </table>
      </div>
    </Card>
  );
}

function PiiTable({ report }: { report: ValidationReport }) {
  const entries = Object.entries(report.pii ?? {});
  if (!entries.length) return null;
  const found = entries.some(([, v]) => v?.count > 0);
  return (
    <Card
      title="Personal data"
      icon="lock"
      description={found ? "Redact it with Preprocess → Redact PII before training." : "No personal data was found."}
    >
      <div className="table-wrap">
        <table className="table ds-table-compact" data-testid="report-pii">
          <thead>
            <tr>
              <th scope="col">Kind</th>
              <th scope="col" className="num">
                Rows
              </th>
              <th scope="col">Example lines</th>
            </tr>
          </thead>
          <tbody>
            {entries.map(([key, value]) => (
              <tr key={key}>
                <td className="strong">{PII_LABELS[key] ?? humanize(key)}</td>
                <td className={`num${value?.count ? " ds-cell-warn" : ""}`}>{formatNumber(value?.count ?? 0)}</td>
                <td className="mono ds-lines">{lineList(value?.lines, 6) || "—"}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </Card>
  );
}

function FilesTable({ report }: { report: ValidationReport }) {
  if (report.files.length < 2) return null;
  return (
    <Card title="Files" icon="datasets">
      <div className="table-wrap">
        <table className="table ds-table-compact">
          <thead>
            <tr>
              <th scope="col">File</th>
              <th scope="col" className="num">
                Rows
              </th>
            </tr>
          </thead>
          <tbody>
            {report.files.map((file) => (
              <tr key={file.name}>
                <td className="strong mono">{file.name}</td>
                <td className="num">{formatNumber(file.rows)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </Card>
  );
}

export function ReportView({ report }: { report: ValidationReport }) {
  return (
    <div className="ds-report" data-testid="validation-report">
      <VerdictBanner report={report} />
      <SummaryStats report={report} />
      <ErrorsCard report={report} />
      <TokensCard report={report} />
      <WarningsCard report={report} />
      <div className="ds-grid-2">
        <div className="ds-stack">
          <ColumnsTable report={report} />
          <PiiTable report={report} />
        </div>
        <div className="ds-stack">
          <QualityTable report={report} />
          <FilesTable report={report} />
        </div>
      </div>
      {report.column_mapping && Object.keys(report.column_mapping).length > 0 && (
        <p className="muted small">
          Column mapping:{" "}
          {Object.entries(report.column_mapping).map(([target, source], i) => (
            <span key={target}>
              {i > 0 && ", "}
              <code className="code">{target}</code> ← <code className="code">{source}</code>
            </span>
          ))}
        </p>
      )}
    </div>
  );
}
