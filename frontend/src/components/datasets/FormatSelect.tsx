// A labelled <select> of dataset formats ("" = detect automatically).
import { useId } from "react";
import { FORMATS } from "./labels";

export function FormatSelect({
  value,
  onChange,
  label = "Format",
  hint,
  autoLabel = "Auto-detect",
  disabled,
}: {
  value: string;
  onChange: (value: string) => void;
  label?: string;
  hint?: string;
  autoLabel?: string;
  disabled?: boolean;
}) {
  const id = useId();
  return (
    <div className="field">
      <div className="field__label-row">
        <label htmlFor={id} className="field__label">
          {label}
        </label>
      </div>
      <select
        id={id}
        className="input ds-select"
        value={value}
        disabled={disabled}
        onChange={(e) => onChange(e.target.value)}
        aria-describedby={hint ? `${id}-hint` : undefined}
      >
        <option value="">{autoLabel}</option>
        {FORMATS.map((f) => (
          <option key={f.value} value={f.value}>
            {f.label}
          </option>
        ))}
      </select>
      {hint && (
        <p id={`${id}-hint`} className="field__hint">
          {hint}
        </p>
      )}
    </div>
  );
}
