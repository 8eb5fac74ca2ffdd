// Shown for an invalid dataset: why it failed (the first errors), and a form to set the format or a column
// mapping; saving PATCHes the dataset, which validates it again.
import { useState, type FormEvent } from "react";
import { errorMessage } from "../../api/client";
import { useUpdateDataset } from "../../api/datasets";
import type { Dataset, ValidationReport } from "../../api/types";
import { Banner, Button, Card } from "../ui";
import { ColumnMappingEditor, mappingFromRows, rowsFromMapping, type MappingRow } from "./ColumnMappingEditor";
import { FormatSelect } from "./FormatSelect";
import { ErrorItem } from "./ReportView";
import { FORMATS, formatLabel } from "./labels";
import { formatNumber } from "../../lib/format";

const FIRST_ERRORS = 5;

export function InvalidPanel({ dataset, report }: { dataset: Dataset; report: ValidationReport | undefined }) {
  const update = useUpdateDataset(dataset.id);
  // The user's own choice ("" = detect); the detected format is named in the hint.
  const [format, setFormat] = useState(dataset.format_override ?? "");
  const [rows, setRows] = useState<MappingRow[]>(() => rowsFromMapping(dataset.column_mapping));
  const [mappingError, setMappingError] = useState<string>();

  const errors = report?.errors.slice(0, FIRST_ERRORS) ?? [];
  // The stored error usually repeats the first report error; show it only when it adds something.
  const extraError = dataset.error && !errors.some((e) => e.message === dataset.error) ? dataset.error : "";
  const expected = FORMATS.find((f) => f.value === (format || report?.format));

  const submit = (event: FormEvent) => {
    event.preventDefault();
    const { mapping, error } = mappingFromRows(rows);
    if (error) {
      setMappingError(error);
      return;
    }
    setMappingError(undefined);
    update.mutate({ format: format || "auto", column_mapping: mapping });
  };

  return (
    <Card
      title="This dataset cannot be used for training yet"
      icon="alert"
      className="ds-card--danger"
      testId="invalid-panel"
      description={
        report
          ? report.format
            ? `${formatNumber(report.rows_valid)} of ${formatNumber(report.rows)} rows could be read as ${formatLabel(report.format)}. ` +
              "Usually the format is wrong, or the columns have other names than the format expects."
            : "The format could not be detected from the columns. Choose it below, and map the columns if their names differ."
          : "The files could not be read."
      }
    >
      {extraError && <Banner tone="error">{extraError}</Banner>}
      {errors.length > 0 && (
        <div>
          <h3 className="ds-subtitle">
            First {errors.length === 1 ? "error" : `${errors.length} errors`}
            {report && report.errors_total > errors.length && (
              <span className="muted"> of {formatNumber(report.errors_total)}</span>
            )}
          </h3>
          <ul className="ds-issues" data-testid="invalid-errors">
            {errors.map((e, i) => (
              <ErrorItem key={i} error={e} />
            ))}
          </ul>
        </div>
      )}
      <form className="form ds-fix" onSubmit={submit} noValidate>
        <h3 className="ds-subtitle">Fix the format or map the columns</h3>
        {update.isError && <Banner tone="error">{errorMessage(update.error)}</Banner>}
        <div className="form-row">
          <FormatSelect
            value={format}
            onChange={setFormat}
            hint={
              expected
                ? `${format ? "" : "Detected: "}${expected.label}, which reads: ${expected.columns}`
                : "Detect the format from the columns again."
            }
          />
          <div />
        </div>
        <div className="field">
          <span className="field__label">Column mapping</span>
          <ColumnMappingEditor
            rows={rows}
            onChange={setRows}
            format={format || report?.format || ""}
            error={mappingError}
            sourceColumns={Object.keys(report?.columns ?? {})}
          />
          {report && Object.keys(report.columns ?? {}).length > 0 && (
            <p className="field__hint">
              Columns in your file:{" "}
              {Object.keys(report.columns).map((c, i) => (
                <span key={c}>
                  {i > 0 && ", "}
                  <code className="code">{c}</code>
                </span>
              ))}
            </p>
          )}
        </div>
        <div className="form__actions">
          <Button type="submit" variant="primary" loading={update.isPending}>
            Save and validate again
          </Button>
        </div>
      </form>
    </Card>
  );
}
