// Building blocks of the training wizard: choice cards, the stepper, select fields, the hyperparameter grid.
import { useId, type ReactNode } from "react";
import { useTrainingOptions } from "../../../api/training";
import type { TrainingPreset } from "../../../api/types";
import { Icon } from "../../../components/Icon";
import type { HpField, HpKey, HpValues } from "../../../components/training/hyperparameters";
import { METHOD_LABEL, WEIGHTS_LABEL } from "../../../components/training/labels";
import { Field } from "../../../components/ui";
import { formatLearningRate } from "../../../lib/format";
import { STEPS } from "./state";

/** The steps as a vertical list; each shows what was chosen in it. Steps up to `reachable` can be opened. */
export function Stepper({
  current,
  reachable,
  onGo,
  errorSteps,
  summaries,
}: {
  current: number;
  reachable: number;
  onGo: (step: number) => void;
  errorSteps: Set<number>;
  summaries: (string | null)[];
}) {
  return (
    <ol className="tr-stepper" aria-label="Steps">
      {STEPS.map((label, index) => {
        const state = index === current ? "current" : index < current ? "done" : "todo";
        const enabled = index <= reachable && index !== current;
        const error = errorSteps.has(index);
        return (
          <li key={label} className={`tr-stepper__item is-${state}${error ? " has-error" : ""}`}>
            <button
              type="button"
              className="tr-stepper__button"
              onClick={() => onGo(index)}
              disabled={!enabled}
              aria-current={index === current ? "step" : undefined}
              aria-label={`Step ${index + 1}: ${label}`}
            >
              <span className="tr-stepper__index">{error ? "!" : state === "done" ? <Icon name="check" size={13} /> : index + 1}</span>
              <span className="tr-stepper__text">
                <span className="tr-stepper__label">{label}</span>
                {summaries[index] && <span className="tr-stepper__summary">{summaries[index]}</span>}
              </span>
            </button>
          </li>
        );
      })}
    </ol>
  );
}

/** A radio rendered as a card; the whole card is its label. */
export function ChoiceCard({
  name,
  value,
  checked,
  disabled,
  onSelect,
  title,
  aside,
  children,
  reason,
  testId,
}: {
  name: string;
  value: string;
  checked: boolean;
  disabled?: boolean;
  onSelect: () => void;
  title: ReactNode;
  aside?: ReactNode;
  children?: ReactNode;
  reason?: ReactNode;
  testId?: string;
}) {
  const id = useId();
  return (
    <label
      htmlFor={id}
      className={`tr-choice${checked ? " is-checked" : ""}${disabled ? " is-disabled" : ""}`}
      data-testid={testId}
      aria-disabled={disabled || undefined}
    >
      <input id={id} type="radio" className="tr-choice__radio" name={name} value={value} checked={checked} disabled={disabled} onChange={onSelect} />
      <span className="tr-choice__head">
        <span className="tr-choice__title">{title}</span>
        {aside && <span className="tr-choice__aside">{aside}</span>}
      </span>
      {children && <span className="tr-choice__body">{children}</span>}
      {reason && (
        <span className="tr-choice__reason">
          <Icon name="alert" size={14} /> {reason}
        </span>
      )}
    </label>
  );
}

export function SelectField({
  label,
  value,
  onChange,
  options,
  hint,
  error,
  id,
  disabled,
}: {
  label: string;
  value: string;
  onChange: (value: string) => void;
  options: { value: string; label: string; disabled?: boolean }[];
  hint?: ReactNode;
  error?: string;
  id?: string;
  disabled?: boolean;
}) {
  const generated = useId();
  const selectId = id ?? `s${generated}`;
  return (
    <div className={`field${error ? " field--invalid" : ""}`}>
      <div className="field__label-row">
        <label htmlFor={selectId} className="field__label">
          {label}
        </label>
      </div>
      <select
        id={selectId}
        className="input tr-select"
        value={value}
        onChange={(e) => onChange(e.target.value)}
        aria-invalid={error ? true : undefined}
        aria-describedby={error ? `${selectId}-error` : hint ? `${selectId}-hint` : undefined}
        disabled={disabled}
      >
        {options.map((o) => (
          <option key={o.value} value={o.value} disabled={o.disabled}>
            {o.label}
          </option>
        ))}
      </select>
      {hint && !error && (
        <p id={`${selectId}-hint`} className="field__hint">
          {hint}
        </p>
      )}
      {error && (
        <p id={`${selectId}-error`} className="field__error" data-testid="field-error">
          {error}
        </p>
      )}
    </div>
  );
}

/** A grid of hyperparameter inputs (ids `hp-<key>`, so a server error can focus its field). */
export function HpGrid({
  fields,
  values,
  errors,
  onChange,
}: {
  fields: HpField[];
  values: HpValues;
  errors: Partial<Record<HpKey, string>>;
  onChange: (key: HpKey, value: string) => void;
}) {
  const served = useTrainingOptions();
  return (
    <div className="tr-hp-grid">
      {fields.map((f) =>
        f.kind === "multi" ? (
          <MultiField key={f.key} field={f} value={values[f.key]} error={errors[f.key]} onChange={(v) => onChange(f.key, v)} />
        ) : f.kind === "select" ? (
          <SelectField
            key={f.key}
            id={`hp-${f.key}`}
            label={f.label}
            value={values[f.key]}
            onChange={(v) => onChange(f.key, v)}
            options={((f.servedOptions ? served.data?.[f.servedOptions] ?? [values[f.key]] : f.options) ?? []).map((o) => ({ value: o, label: f.optionLabels?.[o] ?? o }))}
            hint={f.hint}
            error={errors[f.key]}
          />
        ) : (
          <Field
            key={f.key}
            id={`hp-${f.key}`}
            label={f.label}
            value={values[f.key]}
            onChange={(e) => onChange(f.key, e.target.value)}
            inputMode={f.kind === "int" ? "numeric" : f.kind === "float" ? "decimal" : undefined}
            autoComplete="off"
            spellCheck={false}
            hint={f.hint}
            error={errors[f.key]}
            className={`tr-hp tr-hp--${f.key}`}
            data-hp={f.key}
          />
        ),
      )}
    </div>
  );
}

/** Checkboxes for a `multi` field (e.g. report_to); the value is the chosen options, comma-separated. */
function MultiField({ field, value, error, onChange }: { field: HpField; value: string; error?: string; onChange: (value: string) => void }) {
  const chosen = value.split(",").map((s) => s.trim()).filter(Boolean);
  const toggle = (option: string, on: boolean) =>
    onChange((field.options ?? []).filter((o) => (o === option ? on : chosen.includes(o))).join(","));
  return (
    <fieldset className={`field tr-hp tr-hp--${field.key}${error ? " field--invalid" : ""}`} id={`hp-${field.key}`} data-hp={field.key}>
      <legend className="field__label">{field.label}</legend>
      <div className="tr-hp-multi">
        {(field.options ?? []).map((o) => (
          <label key={o} className="md-check">
            <input type="checkbox" checked={chosen.includes(o)} onChange={(e) => toggle(o, e.target.checked)} data-testid={`${field.key}-${o}`} />
            <span>{field.optionLabels?.[o] ?? o}</span>
          </label>
        ))}
      </div>
      {error ? <p className="field__error" data-testid="field-error">{error}</p> : <p className="field__hint">{field.hint}</p>}
    </fieldset>
  );
}

export function PresetCard({
  preset,
  selected,
  disabledReason,
  onApply,
}: {
  preset: TrainingPreset;
  selected: boolean;
  disabledReason: string | null;
  onApply: () => void;
}) {
  const hp = preset.hyperparameters;
  const chips = [
    `${METHOD_LABEL[preset.method] ?? preset.method} · ${WEIGHTS_LABEL[preset.weights] ?? preset.weights}`,
    hp.num_train_epochs !== undefined ? `${hp.num_train_epochs} ep` : null,
    hp.learning_rate !== undefined ? `lr ${formatLearningRate(hp.learning_rate)}` : null,
    hp.lora_r !== undefined ? `r ${hp.lora_r}` : null,
  ].filter(Boolean) as string[];
  return (
    <button
      type="button"
      className={`tr-preset${selected ? " is-selected" : ""}`}
      data-testid={`preset-${preset.id}`}
      aria-pressed={selected}
      disabled={!!disabledReason}
      title={disabledReason ?? undefined}
      onClick={onApply}
    >
      <span className="tr-preset__head">
        <span className="tr-preset__name">{preset.name}</span>
        {selected && <Icon name="check" size={15} className="tr-preset__check" />}
      </span>
      <span className="tr-preset__description">{disabledReason ?? preset.description}</span>
      <span className="tr-preset__chips">
        {chips.map((c) => (
          <span key={c} className="tr-chip">
            {c}
          </span>
        ))}
      </span>
    </button>
  );
}

/** A dataset's validation verdict as a small badge (nothing when it has none). */
export function VerdictTag({ verdict }: { verdict: string | null | undefined }) {
  if (!verdict) return null;
  const tone = verdict === "ok" ? "success" : verdict === "warnings" ? "warning" : "danger";
  const label = verdict === "ok" ? "OK" : verdict === "warnings" ? "Warnings" : verdict;
  return <span className={`tr-badge tr-badge--${tone}`}>{label}</span>;
}
