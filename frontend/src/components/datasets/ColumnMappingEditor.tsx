// Key/value rows for a column mapping: target field (what the format expects) ← source path in the file.
import { useId } from "react";
import { Icon } from "../Icon";
import { FORMAT_FIELDS } from "./labels";

export interface MappingRow {
  key: number;
  target: string;
  source: string;
}

let nextKey = 1;
export const newMappingRow = (target = "", source = ""): MappingRow => ({ key: nextKey++, target, source });

export function rowsFromMapping(mapping: Record<string, string> | null | undefined): MappingRow[] {
  return Object.entries(mapping ?? {}).map(([target, source]) => newMappingRow(target, source));
}

/** The mapping object, or an error message naming the first bad row. Empty rows are ignored. */
export function mappingFromRows(rows: MappingRow[]): { mapping: Record<string, string> | null; error?: string } {
  const mapping: Record<string, string> = {};
  for (const [index, row] of rows.entries()) {
    const target = row.target.trim();
    const source = row.source.trim();
    if (!target && !source) continue;
    if (!target || !source || !source.replace(/\?$/, "")) {
      return { mapping: null, error: `Row ${index + 1}: fill in both the field and the column in your file.` };
    }
    if (target in mapping) return { mapping: null, error: `The field “${target}” is mapped twice.` };
    mapping[target] = source;
  }
  return { mapping: Object.keys(mapping).length ? mapping : null };
}

export function ColumnMappingEditor({
  rows,
  onChange,
  format,
  error,
  sourceColumns = [],
}: {
  rows: MappingRow[];
  onChange: (rows: MappingRow[]) => void;
  format: string;
  error?: string;
  /** Columns found in the file (from the report), offered as source suggestions. */
  sourceColumns?: string[];
}) {
  const listId = useId();
  const sourceListId = useId();
  const suggestions = format ? FORMAT_FIELDS[format] ?? [] : [...new Set(Object.values(FORMAT_FIELDS).flat())];
  const update = (key: number, patch: Partial<MappingRow>) =>
    onChange(rows.map((row) => (row.key === key ? { ...row, ...patch } : row)));

  return (
    <div className="ds-mapping" data-testid="column-mapping">
      <datalist id={listId}>
        {suggestions.map((field) => (
          <option key={field} value={field} />
        ))}
      </datalist>
      <datalist id={sourceListId}>
        {sourceColumns.map((column) => (
          <option key={column} value={column} />
        ))}
      </datalist>
      {rows.length > 0 && (
        <div className="ds-mapping__head" aria-hidden="true">
          <span>Field</span>
          <span />
          <span>Column or path in your file</span>
          <span />
        </div>
      )}
      {rows.map((row, index) => (
        <div className="ds-mapping__row" key={row.key}>
          <input
            className="input"
            aria-label={`Mapping ${index + 1} field`}
            placeholder="e.g. instruction"
            list={listId}
            value={row.target}
            onChange={(e) => update(row.key, { target: e.target.value })}
          />
          <span className="ds-mapping__arrow" aria-hidden="true">
            ←
          </span>
          <input
            className="input mono"
            aria-label={`Mapping ${index + 1} source column`}
            placeholder="e.g. instances.0.input"
            list={sourceColumns.length ? sourceListId : undefined}
            value={row.source}
            onChange={(e) => update(row.key, { source: e.target.value })}
          />
          <button
            type="button"
            className="btn btn--ghost btn--sm"
            aria-label={`Remove mapping ${index + 1}`}
            onClick={() => onChange(rows.filter((r) => r.key !== row.key))}
          >
            <Icon name="x" size={15} />
          </button>
        </div>
      ))}
      {error && <p className="field__error">{error}</p>}
      <div>
        <button type="button" className="btn btn--ghost btn--sm" onClick={() => onChange([...rows, newMappingRow()])}>
          <Icon name="plus" size={15} />
          <span>Add mapping</span>
        </button>
      </div>
      <p className="field__hint">
        Only mapped fields are read, so map every field the format needs. Use dots for nested values
        (<code className="code">instances.0.output</code>) and end a path with <code className="code">?</code> when it
        may be missing.
      </p>
    </div>
  );
}
