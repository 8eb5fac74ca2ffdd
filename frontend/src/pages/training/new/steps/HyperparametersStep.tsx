// Step 4: a preset, then the hyperparameters (epochs or max steps; the rarely changed ones under Advanced).
import type { Dataset, TrainingPreset } from "../../../../api/types";
import { ADVANCED_KEYS, visibleFields, type HpKey } from "../../../../components/training/hyperparameters";
import { METHOD_LABEL, WEIGHTS_LABEL } from "../../../../components/training/labels";
import { Banner } from "../../../../components/ui";
import { hpContext } from "../request";
import { methodBlocked, type WizardAction, type WizardState } from "../state";
import { HpGrid, PresetCard } from "../WizardParts";

function presetDisabledReason(preset: TrainingPreset, dataset: Dataset | undefined): string | null {
  if (!methodBlocked(preset.method, dataset)) return null;
  if (preset.method === "sft") return "For instruction, chat or raw text data, not preference or labelled data.";
  if (preset.method === "kto") return "Needs answers labelled desirable or undesirable (KTO data).";
  return "Needs preference data (chosen/rejected pairs).";
}

export function HyperparametersStep({
  state,
  dispatch,
  presets,
  dataset,
  errors,
}: {
  state: WizardState;
  dispatch: (action: WizardAction) => void;
  presets: TrainingPreset[] | undefined;
  dataset: Dataset | undefined;
  errors: Partial<Record<HpKey, string>>;
}) {
  const ctx = hpContext(state);
  const advancedErrors = Object.keys(errors).filter((k) => ADVANCED_KEYS.has(k as HpKey)).length;
  const generalError = state.serverErrors.hyperparameters?.[0];
  const onChange = (key: HpKey, value: string) => dispatch({ type: "setHp", key, value });
  return (
    <div className="tr-step">
      <h3 className="tr-step__subtitle">Start from a preset</h3>
      <div className="tr-presets">
        {(presets ?? []).map((p) => (
          <PresetCard
            key={p.id}
            preset={p}
            selected={state.presetId === p.id}
            disabledReason={presetDisabledReason(p, dataset)}
            onApply={() => dispatch({ type: "applyPreset", preset: p, dataset })}
          />
        ))}
      </div>
      {state.presetId && state.presetEdited && <p className="muted small">Preset values edited below.</p>}
      {generalError && <Banner tone="error">{generalError}</Banner>}
      <div className="tr-hp-head">
        <h3 className="tr-step__subtitle">
          {METHOD_LABEL[state.method]} with {WEIGHTS_LABEL[state.weights]}
        </h3>
        <div className="tr-segmented" role="radiogroup" aria-label="Train for">
          {(["epochs", "steps"] as const).map((v) => (
            <button
              key={v}
              type="button"
              role="radio"
              aria-checked={state.trainBy === v}
              className={`tr-segmented__item${state.trainBy === v ? " is-active" : ""}`}
              onClick={() => dispatch({ type: "setTrainBy", trainBy: v })}
            >
              {v === "epochs" ? "Epochs" : "Max steps"}
            </button>
          ))}
        </div>
      </div>
      <HpGrid fields={visibleFields(ctx, false)} values={state.hp} errors={errors} onChange={onChange} />
      <details
        className="tr-advanced"
        open={state.advancedOpen}
        onToggle={(e) => dispatch({ type: "setAdvanced", open: (e.target as HTMLDetailsElement).open })}
        data-testid="advanced"
      >
        <summary>
          <span>Advanced</span>
          <span className="muted small">warmup, scheduler, target modules, seed, evaluation, checkpoints, early stopping, packing, chat template, precision, experiment tracking</span>
          {advancedErrors > 0 && <span className="tr-badge tr-badge--danger">{advancedErrors} to fix</span>}
        </summary>
        <div className="tr-advanced__body">
          <HpGrid fields={visibleFields(ctx, true)} values={state.hp} errors={errors} onChange={onChange} />
        </div>
      </details>
    </div>
  );
}
