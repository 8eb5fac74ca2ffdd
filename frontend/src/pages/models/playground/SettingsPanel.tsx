// The playground's left column: the model, side-by-side mode, system prompt and sampling settings.
import type { BaseModel, FineTunedModel } from "../../../api/models";
import { modelLabel } from "../../../components/models/TaskBits";
import { Card } from "../../../components/ui";
import { parseTools, type GenerationSettings } from "./usePlaygroundChat";

const TOOLS_PLACEHOLDER = '[{"name": "get_weather", "description": "Current weather in a city", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]';

function Slider({
  id,
  label,
  value,
  min,
  max,
  step,
  onChange,
  hint,
}: {
  id: string;
  label: string;
  value: number;
  min: number;
  max: number;
  step: number;
  onChange: (v: number) => void;
  hint: string;
}) {
  return (
    <div className="field md-slider">
      <div className="field__label-row">
        <label htmlFor={id} className="field__label">
          {label}
        </label>
        <input
          type="number"
          className="input md-slider__number"
          aria-label={`${label} value`}
          value={value}
          min={min}
          max={max}
          step={step}
          onChange={(e) => {
            const v = Number(e.target.value);
            if (Number.isFinite(v)) onChange(Math.min(max, Math.max(min, v)));
          }}
        />
      </div>
      <input id={id} type="range" className="md-range" min={min} max={max} step={step} value={value} onChange={(e) => onChange(Number(e.target.value))} />
      <p className="field__hint">{hint}</p>
    </div>
  );
}

function ModelSelect({
  choice,
  onPick,
  fineTuned,
  baseList,
  selectedModel,
}: {
  choice: string;
  onPick: (value: string) => void;
  fineTuned: FineTunedModel[];
  baseList: BaseModel[];
  selectedModel: FineTunedModel | undefined;
}) {
  return (
    <div className="field">
      <label htmlFor="playground-model" className="field__label">
        Model
      </label>
      <select id="playground-model" className="input tr-select" value={choice} onChange={(e) => onPick(e.target.value)} data-testid="playground-model">
        {!choice && <option value="">Pick a model…</option>}
        {fineTuned.length > 0 && (
          <optgroup label="Your fine-tuned models">
            {fineTuned.map((m) => (
              <option key={m.id} value={`m:${m.id}`}>
                {modelLabel(m)}
                {m.tag ? ` (${m.tag})` : ""}
              </option>
            ))}
          </optgroup>
        )}
        {baseList.length > 0 && (
          <optgroup label="Base models">
            {baseList.map((b) => (
              <option key={b.id} value={`b:${b.id}`}>
                {b.name}
              </option>
            ))}
          </optgroup>
        )}
      </select>
      {selectedModel && <p className="field__hint">Fine-tuned from {selectedModel.base_model_name}.</p>}
    </div>
  );
}

export function SettingsPanel({
  choice,
  onPick,
  fineTuned,
  baseList,
  selectedModel,
  canCompare,
  compare,
  onCompare,
  settings,
  onSettings,
}: {
  choice: string;
  onPick: (value: string) => void;
  fineTuned: FineTunedModel[];
  baseList: BaseModel[];
  selectedModel: FineTunedModel | undefined;
  canCompare: boolean;
  compare: boolean;
  onCompare: (on: boolean) => void;
  settings: GenerationSettings;
  onSettings: (patch: Partial<GenerationSettings>) => void;
}) {
  const toolsError = parseTools(settings.tools).error;
  return (
    <Card title="Settings" className="md-playground__settings" testId="playground-settings">
      <div className="md-form">
        <ModelSelect choice={choice} onPick={onPick} fineTuned={fineTuned} baseList={baseList} selectedModel={selectedModel} />
        <label className={`md-check${canCompare ? "" : " is-disabled"}`}>
          <input type="checkbox" checked={compare} disabled={!canCompare} onChange={(e) => onCompare(e.target.checked)} data-testid="side-by-side" />
          <span>
            <span className="md-check__title">Side by side with the base model</span>
            <span className="md-check__hint">{canCompare ? "Each prompt is answered by both, in two columns." : "Pick a fine-tuned model to compare it with its base."}</span>
          </span>
        </label>
        <div className="field">
          <label htmlFor="playground-system" className="field__label">
            System prompt
          </label>
          <textarea id="playground-system" className="input md-textarea" rows={3} value={settings.system} onChange={(e) => onSettings({ system: e.target.value })} />
        </div>
        <Slider
          id="playground-temperature"
          label="Temperature"
          value={settings.temperature}
          min={0}
          max={2}
          step={0.05}
          onChange={(temperature) => onSettings({ temperature })}
          hint="0 always picks the likeliest token; higher is more varied."
        />
        <Slider
          id="playground-top-p"
          label="Top-p"
          value={settings.topP}
          min={0.05}
          max={1}
          step={0.05}
          onChange={(topP) => onSettings({ topP })}
          hint="Sample only from the most likely tokens making up this share."
        />
        <div className="field">
          <label htmlFor="playground-max-new" className="field__label">
            Max new tokens
          </label>
          <input
            id="playground-max-new"
            type="number"
            className="input"
            min={1}
            max={1024}
            value={settings.maxNew}
            onChange={(e) => onSettings({ maxNew: Math.max(1, Math.min(1024, Math.round(Number(e.target.value) || 1))) })}
          />
        </div>
        <div className="field">
          <label htmlFor="playground-tools" className="field__label">
            Tools (JSON)
          </label>
          <textarea
            id="playground-tools"
            className="input md-textarea"
            rows={4}
            spellCheck={false}
            placeholder={TOOLS_PLACEHOLDER}
            value={settings.tools}
            onChange={(e) => onSettings({ tools: e.target.value })}
            aria-invalid={!!toolsError}
            aria-describedby="playground-tools-hint"
            data-testid="playground-tools"
          />
          <span id="playground-tools-hint" className={`field__hint${toolsError ? " field__error" : ""}`}>
            {toolsError ?? "Optional function specs offered to the model; its <tool_call> blocks come back as calls."}
          </span>
        </div>
      </div>
    </Card>
  );
}
