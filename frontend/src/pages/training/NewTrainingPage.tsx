// /training/new: the six-step wizard (base model, dataset, method, hyperparameters, where to run, review).
// `?dataset=<id>` and `?base_model=<id>` preselect a dataset and a base model.
import { useEffect, useMemo, useRef, useState } from "react";
import { Link, useNavigate, useSearchParams } from "react-router-dom";
import { ApiError, errorMessage, type FieldErrors } from "../../api/client";
import {
  isPreferenceFormat,
  MODAL_GPU_MEMORY_GB,
  MODAL_GPUS,
  useBaseModels,
  useCreateJob,
  useDatasetVersionsForTraining,
  useEstimate,
  usePresets,
  useReadyDatasets,
} from "../../api/training";
import type {
  BaseModelInfo,
  Dataset,
  JobCreateInput,
  TrainingBackend,
  TrainingMethod,
  TrainingPreset,
  TrainingWeights,
} from "../../api/types";
import { Icon } from "../../components/Icon";
import { Banner, Button, Card, EmptyState, Field, PageHeader, Spinner } from "../../components/ui";
import { EstimatePanel, estimateFor } from "../../components/training/EstimatePanel";
import {
  datasetFormatLabel,
  formatCompact,
  formatDuration,
  formatGb,
  formatInt,
  formatRelative,
  formatUsd,
  METHOD_LABEL,
  WEIGHTS_LABEL,
} from "../../components/training/format";
import {
  ADVANCED_KEYS,
  buildHyperparameters,
  HP_DEFAULTS,
  HP_FIELDS,
  hpKeyOf,
  stepForErrorKey,
  valuesFromPreset,
  visibleFields,
  type HpContext,
  type HpKey,
  type HpValues,
  type TrainBy,
} from "../../components/training/hyperparameters";
import { ChoiceCard, HpGrid, PresetCard, SelectField, Stepper, STEPS } from "../../components/training/WizardParts";

const METHODS: { value: TrainingMethod; title: string; text: string }[] = [
  {
    value: "sft",
    title: "SFT — supervised fine-tuning",
    text: "Learns to write the assistant answers of instruction or chat data. The usual first step.",
  },
  {
    value: "dpo",
    title: "DPO — direct preference optimization",
    text: "Learns from chosen vs rejected answers to the same prompt. Best on top of an SFT model.",
  },
  {
    value: "orpo",
    title: "ORPO — odds-ratio preference optimization",
    text: "SFT and preference alignment in one pass over chosen/rejected pairs; no separate SFT step.",
  },
];

const WEIGHTS: { value: TrainingWeights; title: string; text: string }[] = [
  { value: "lora", title: "LoRA", text: "Trains small adapters on a frozen model: fast and light on memory. The best first choice." },
  { value: "qlora", title: "QLoRA", text: "LoRA on a 4-bit quantised base: the least memory, for large models (needs bitsandbytes)." },
  { value: "full", title: "Full fine-tune", text: "Updates every weight: the most capacity and the most memory. Best for small models." },
];

const DEFAULT_PRESET = "quick-lora";
const ESTIMATE_DEBOUNCE_MS = 450;

interface WizardState {
  baseModel: number | null;
  datasetRoot: number | null;
  datasetId: number | null;
  method: TrainingMethod;
  weights: TrainingWeights;
  presetId: string | null;
  presetEdited: boolean;
  hp: HpValues;
  trainBy: TrainBy;
  backend: TrainingBackend;
  modalGpu: string;
  name: string;
}

function initialState(params: URLSearchParams): WizardState {
  const dataset = Number(params.get("dataset")) || null;
  return {
    baseModel: Number(params.get("base_model")) || null,
    datasetRoot: null,
    datasetId: dataset,
    method: "sft",
    weights: "lora",
    presetId: null,
    presetEdited: false,
    hp: { ...HP_DEFAULTS },
    trainBy: "epochs",
    backend: "local",
    modalGpu: "A10G",
    name: "",
  };
}

/** Why a method cannot train this dataset, or null. */
function methodBlocked(method: TrainingMethod, dataset: Dataset | undefined): string | null {
  if (!dataset) return null;
  const pref = isPreferenceFormat(dataset.format);
  if (method !== "sft" && !pref) {
    return `Needs preference data (prompt, chosen, rejected); "${dataset.name}" is ${datasetFormatLabel(dataset.format).toLowerCase()} data. Use SFT, or upload preference pairs.`;
  }
  if (method === "sft" && pref) return `"${dataset.name}" holds preference pairs; train it with DPO or ORPO.`;
  return null;
}

function useDebounced<T>(value: T, ms: number): T {
  const [debounced, setDebounced] = useState(value);
  useEffect(() => {
    const timer = window.setTimeout(() => setDebounced(value), ms);
    return () => window.clearTimeout(timer);
  }, [value, ms]);
  return debounced;
}

function VerdictTag({ verdict }: { verdict: string | null | undefined }) {
  if (!verdict) return null;
  const tone = verdict === "ok" ? "success" : verdict === "warnings" ? "warning" : "danger";
  const label = verdict === "ok" ? "OK" : verdict === "warnings" ? "Warnings" : verdict;
  return <span className={`tr-badge tr-badge--${tone}`}>{label}</span>;
}

// ---------- steps ----------

function BaseModelStep({ models, selected, onSelect, error }: { models: BaseModelInfo[]; selected: number | null; onSelect: (id: number) => void; error?: string }) {
  if (!models.length) {
    return (
      <EmptyState icon="models" title="No base models yet">
        Download a model from the Hugging Face Hub on the Models page, or ask an administrator to install the embedded default model.
      </EmptyState>
    );
  }
  return (
    <div className="tr-step">
      <p className="tr-step__lead">The model you fine-tune. Small models train fast on this machine; large ones want a GPU and QLoRA.</p>
      {error && <Banner tone="error">{error}</Banner>}
      <div className="tr-choices tr-choices--models" role="radiogroup" aria-label="Base model">
        {models.map((m) => {
          const available = m.status === "available";
          return (
            <ChoiceCard
              key={m.id}
              name="base_model"
              value={String(m.id)}
              checked={selected === m.id}
              disabled={!available}
              onSelect={() => onSelect(m.id)}
              title={m.name}
              aside={
                <>
                  {m.source === "embedded" && <span className="tr-badge tr-badge--accent">Built in</span>}
                  {!available && <span className="tr-badge tr-badge--warning">{m.status}</span>}
                </>
              }
              testId={`base-model-${m.id}`}
            >
              <span className="tr-model-meta">
                <span>
                  <strong>{formatCompact(m.parameters)}</strong> params
                </span>
                {m.architecture && <span>{m.architecture}</span>}
                {m.context_length ? <span>{formatInt(m.context_length)} ctx</span> : null}
                {m.license && <span>{m.license}</span>}
                <span>{m.has_chat_template ? "chat template" : "no chat template"}</span>
              </span>
              {m.description && <span className="tr-choice__text">{m.description}</span>}
              <span className="tr-choice__repo">{m.repo_id}</span>
            </ChoiceCard>
          );
        })}
      </div>
    </div>
  );
}

interface Lineage {
  root: number;
  latest: Dataset;
  count: number;
}

function DatasetStep({
  datasets,
  state,
  onPick,
  onVersion,
  errors,
}: {
  datasets: Dataset[];
  state: WizardState;
  onPick: (root: number, latestId: number) => void;
  onVersion: (id: number) => void;
  errors: FieldErrors;
}) {
  const lineages = useMemo(() => {
    const map = new Map<number, Lineage>();
    for (const d of datasets) {
      const root = d.root_id ?? d.id;
      const entry = map.get(root);
      if (!entry) map.set(root, { root, latest: d, count: 1 });
      else {
        entry.count += 1;
        if (d.version > entry.latest.version) entry.latest = d;
      }
    }
    return [...map.values()].sort((a, b) => (a.latest.updated < b.latest.updated ? 1 : -1));
  }, [datasets]);
  const versions = useDatasetVersionsForTraining(state.datasetRoot);
  const selected = versions.data?.find((v) => v.id === state.datasetId) ?? datasets.find((d) => d.id === state.datasetId);

  if (!lineages.length) {
    return (
      <EmptyState
        icon="datasets"
        title="No ready datasets"
        action={
          <Link to="/datasets/upload" className="btn btn--primary btn--md tr-link-btn">
            <Icon name="upload" size={16} />
            <span>Upload dataset</span>
          </Link>
        }
      >
        A dataset can train once it has been validated and is ready. Upload one, or wait for a running validation to finish.
      </EmptyState>
    );
  }
  const datasetError = errors.dataset?.[0];
  const versionError = errors.dataset_version?.[0];
  return (
    <div className="tr-step">
      <p className="tr-step__lead">Only datasets that passed validation (ready) are listed. Pick one, then the version to train on.</p>
      {datasetError && <Banner tone="error">{datasetError}</Banner>}
      <div className="tr-choices tr-choices--datasets" role="radiogroup" aria-label="Dataset">
        {lineages.map((l) => (
          <ChoiceCard
            key={l.root}
            name="dataset"
            value={String(l.root)}
            checked={state.datasetRoot === l.root}
            onSelect={() => onPick(l.root, l.latest.id)}
            title={l.latest.name}
            aside={<VerdictTag verdict={l.latest.verdict} />}
            testId={`dataset-${l.root}`}
          >
            <span className="tr-model-meta">
              <span>{datasetFormatLabel(l.latest.format)}</span>
              <span>
                <strong>{formatInt(l.latest.row_count)}</strong> rows
              </span>
              <span>
                {l.count} {l.count === 1 ? "version" : "versions"}
              </span>
              <span>{formatRelative(l.latest.updated)}</span>
            </span>
          </ChoiceCard>
        ))}
      </div>
      {state.datasetRoot !== null && (
        <div className="tr-version-row">
          <div className="tr-version-row__select">
            {versions.isPending ? (
              <Spinner label="Loading versions" />
            ) : versions.isError ? (
              <Banner tone="error">{errorMessage(versions.error)}</Banner>
            ) : (
              <SelectField
                label="Version"
                id="dataset-version"
                value={String(state.datasetId ?? "")}
                onChange={(v) => onVersion(Number(v))}
                options={(versions.data ?? []).map((v) => ({
                  value: String(v.id),
                  label: `v${v.version}${v.status !== "ready" ? ` (${v.status})` : ""}${v.operation && v.operation.type !== "upload" ? ` · ${v.operation.type}` : ""}${v.is_latest ? " · latest" : ""}`,
                  disabled: v.status !== "ready",
                }))}
                error={versionError}
                hint="Each preprocessing or split creates a new version."
              />
            )}
          </div>
          {selected && (
            <dl className="tr-facts" data-testid="dataset-facts">
              <div>
                <dt>Rows</dt>
                <dd>{formatInt(selected.row_count)}</dd>
              </div>
              <div>
                <dt>Format</dt>
                <dd>{datasetFormatLabel(selected.format)}</dd>
              </div>
              <div>
                <dt>Verdict</dt>
                <dd>
                  <VerdictTag verdict={selected.verdict} />
                  {!selected.verdict && "—"}
                </dd>
              </div>
              <div>
                <dt>Preference data</dt>
                <dd>{isPreferenceFormat(selected.format) ? "Yes (DPO / ORPO)" : "No (SFT)"}</dd>
              </div>
            </dl>
          )}
        </div>
      )}
      {selected?.verdict === "warnings" && (
        <Banner tone="warning">
          This version validated with warnings. It can train; <Link to={`/datasets/${selected.id}`}>look at its report</Link> to see what may hurt quality.
        </Banner>
      )}
    </div>
  );
}

function MethodStep({ state, dataset, set, errors }: { state: WizardState; dataset: Dataset | undefined; set: (patch: Partial<WizardState>) => void; errors: FieldErrors }) {
  return (
    <div className="tr-step">
      {(errors.method?.[0] || errors.weights?.[0]) && <Banner tone="error">{errors.method?.[0] ?? errors.weights?.[0]}</Banner>}
      <h3 className="tr-step__subtitle">Training method</h3>
      <p className="tr-step__lead">
        {dataset
          ? isPreferenceFormat(dataset.format)
            ? `"${dataset.name}" holds preference pairs (${datasetFormatLabel(dataset.format)}): train it with DPO or ORPO.`
            : `"${dataset.name}" is ${datasetFormatLabel(dataset.format).toLowerCase()} data: SFT teaches the model to answer like it.`
          : "Pick a dataset first."}
      </p>
      <div className="tr-choices tr-choices--three" role="radiogroup" aria-label="Method">
        {METHODS.map((m) => {
          const blocked = methodBlocked(m.value, dataset);
          return (
            <ChoiceCard
              key={m.value}
              name="method"
              value={m.value}
              checked={state.method === m.value}
              disabled={!!blocked}
              onSelect={() => set({ method: m.value })}
              title={m.title}
              reason={blocked}
              testId={`method-${m.value}`}
            >
              <span className="tr-choice__text">{m.text}</span>
            </ChoiceCard>
          );
        })}
      </div>
      <h3 className="tr-step__subtitle">Weights to train</h3>
      <div className="tr-choices tr-choices--three" role="radiogroup" aria-label="Weights">
        {WEIGHTS.map((w) => (
          <ChoiceCard
            key={w.value}
            name="weights"
            value={w.value}
            checked={state.weights === w.value}
            onSelect={() => set({ weights: w.value })}
            title={w.title}
            testId={`weights-${w.value}`}
          >
            <span className="tr-choice__text">{w.text}</span>
          </ChoiceCard>
        ))}
      </div>
    </div>
  );
}

function HyperparametersStep({
  state,
  presets,
  dataset,
  errors,
  onPreset,
  onChange,
  onTrainBy,
  advancedOpen,
  setAdvancedOpen,
  generalError,
}: {
  state: WizardState;
  presets: TrainingPreset[] | undefined;
  dataset: Dataset | undefined;
  errors: Partial<Record<HpKey, string>>;
  onPreset: (preset: TrainingPreset) => void;
  onChange: (key: HpKey, value: string) => void;
  onTrainBy: (value: TrainBy) => void;
  advancedOpen: boolean;
  setAdvancedOpen: (open: boolean) => void;
  generalError?: string;
}) {
  const ctx: HpContext = { method: state.method, weights: state.weights, trainBy: state.trainBy };
  const advancedErrors = Object.keys(errors).filter((k) => ADVANCED_KEYS.has(k as HpKey)).length;
  return (
    <div className="tr-step">
      <h3 className="tr-step__subtitle">Start from a preset</h3>
      <div className="tr-presets">
        {(presets ?? []).map((p) => (
          <PresetCard
            key={p.id}
            preset={p}
            selected={state.presetId === p.id}
            disabledReason={methodBlocked(p.method, dataset) ? (p.method === "sft" ? "For instruction or chat data, not preference pairs." : "Needs preference data (chosen/rejected pairs).") : null}
            onApply={() => onPreset(p)}
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
            <button key={v} type="button" role="radio" aria-checked={state.trainBy === v} className={`tr-segmented__item${state.trainBy === v ? " is-active" : ""}`} onClick={() => onTrainBy(v)}>
              {v === "epochs" ? "Epochs" : "Max steps"}
            </button>
          ))}
        </div>
      </div>
      <HpGrid fields={visibleFields(ctx, false)} values={state.hp} errors={errors} onChange={onChange} />
      <details className="tr-advanced" open={advancedOpen} onToggle={(e) => setAdvancedOpen((e.target as HTMLDetailsElement).open)} data-testid="advanced">
        <summary>
          <span>Advanced</span>
          <span className="muted small">warmup, weight decay, scheduler, target modules, seed, evaluation and checkpoints</span>
          {advancedErrors > 0 && <span className="tr-badge tr-badge--danger">{advancedErrors} to fix</span>}
        </summary>
        <div className="tr-advanced__body">
          <HpGrid fields={visibleFields(ctx, true)} values={state.hp} errors={errors} onChange={onChange} />
        </div>
      </details>
    </div>
  );
}

function BackendStep({
  state,
  set,
  errors,
  estimate,
}: {
  state: WizardState;
  set: (patch: Partial<WizardState>) => void;
  errors: FieldErrors;
  estimate: ReturnType<typeof useEstimate>;
}) {
  return (
    <div className="tr-step">
      {errors.backend?.[0] && <Banner tone="error">{errors.backend[0]}</Banner>}
      <div className="tr-choices tr-choices--two" role="radiogroup" aria-label="Where to run">
        <ChoiceCard name="backend" value="local" checked={state.backend === "local"} onSelect={() => set({ backend: "local" })} title="Local" testId="backend-local" aside={<Icon name="dashboard" size={16} />}>
          <span className="tr-choice__text">This server's training worker (its CPU, or its GPU when it has one). Free; one job at a time per worker.</span>
        </ChoiceCard>
        <ChoiceCard name="backend" value="modal" checked={state.backend === "modal"} onSelect={() => set({ backend: "modal" })} title="Modal" testId="backend-modal" aside={<Icon name="spark" size={16} />}>
          <span className="tr-choice__text">A serverless cloud GPU on Modal, billed per second while the job runs. Needs Modal configured on the server.</span>
        </ChoiceCard>
      </div>
      {state.backend === "modal" && (
        <div className="tr-gpu">
          <SelectField
            label="GPU"
            id="modal-gpu"
            value={state.modalGpu}
            onChange={(v) => set({ modalGpu: v })}
            options={MODAL_GPUS.map((g) => ({ value: g, label: `${g} · ${MODAL_GPU_MEMORY_GB[g]} GB` }))}
            error={errors.modal_gpu?.[0]}
            hint="Click a row of the cost table to compare."
          />
        </div>
      )}
      <EstimatePanel
        estimate={estimate.data}
        loading={estimate.isFetching}
        error={estimate.isError ? errorMessage(estimate.error) : null}
        weights={state.weights}
        backend={state.backend}
        gpu={state.modalGpu}
        onSelectGpu={(g) => set({ modalGpu: g })}
      />
    </div>
  );
}

function ReviewStep({
  state,
  set,
  model,
  dataset,
  hyperparameters,
  estimate,
  errors,
}: {
  state: WizardState;
  set: (patch: Partial<WizardState>) => void;
  model: BaseModelInfo | undefined;
  dataset: Dataset | undefined;
  hyperparameters: Record<string, unknown>;
  estimate: ReturnType<typeof useEstimate>;
  errors: FieldErrors;
}) {
  const view = estimate.data ? estimateFor(estimate.data, state.backend, state.modalGpu) : null;
  const defaultName = model && dataset ? `${model.name} on ${dataset.name}` : "";
  const hpRows = HP_FIELDS.filter((f) => hyperparameters[f.key] !== undefined && !(f.key === "max_steps" && hyperparameters.max_steps === -1));
  return (
    <div className="tr-step">
      <Field
        label="Job name"
        id="job-name"
        value={state.name}
        placeholder={defaultName}
        maxLength={200}
        onChange={(e) => set({ name: e.target.value })}
        hint="Also the name of the model it produces. Leave empty for the suggestion."
        error={errors.name?.[0]}
      />
      <div className="tr-review">
        <dl className="tr-review__list">
          <div>
            <dt>Base model</dt>
            <dd>{model?.name ?? "—"}</dd>
          </div>
          <div>
            <dt>Dataset</dt>
            <dd>
              {dataset ? `${dataset.name} v${dataset.version}` : "—"}
              {dataset && <span className="muted"> · {formatInt(dataset.row_count)} rows · {datasetFormatLabel(dataset.format)}</span>}
            </dd>
          </div>
          <div>
            <dt>Method</dt>
            <dd>
              {METHOD_LABEL[state.method]} · {WEIGHTS_LABEL[state.weights]}
            </dd>
          </div>
          <div>
            <dt>Runs on</dt>
            <dd>{state.backend === "modal" ? `Modal ${state.modalGpu}` : "Local worker"}</dd>
          </div>
          <div>
            <dt>Estimate</dt>
            <dd>
              {view && estimate.data ? (
                <>
                  {formatDuration(view.durationS)} · {formatInt(estimate.data.steps)} steps · {formatGb(estimate.data.peak_memory_gb)} peak
                  {state.backend === "modal" && view.cost !== null ? ` · ${formatUsd(view.cost)}` : ""}
                  {!view.fits && <span className="tr-no"> · will not fit</span>}
                </>
              ) : estimate.isFetching ? (
                <Spinner size={12} label="Estimating" />
              ) : (
                "—"
              )}
            </dd>
          </div>
        </dl>
        <div className="tr-review__hp">
          <h4 className="tr-estimate__subtitle">Hyperparameters</h4>
          <dl className="tr-hp-list">
            {hpRows.map((f) => (
              <div key={f.key}>
                <dt>{f.key}</dt>
                <dd>{Array.isArray(hyperparameters[f.key]) ? (hyperparameters[f.key] as string[]).join(", ") : String(hyperparameters[f.key])}</dd>
              </div>
            ))}
          </dl>
        </div>
      </div>
      {view && !view.fits && (
        <Banner tone="warning" title="The estimate says this will not fit">
          {view.notes.map((n) => (
            <p key={n}>{n}</p>
          ))}
          <p>You can still launch it; it will fail with an out-of-memory error if the estimate is right.</p>
        </Banner>
      )}
    </div>
  );
}

// ---------- page ----------

export default function NewTrainingPage() {
  const navigate = useNavigate();
  const [params] = useSearchParams();
  const [state, setState] = useState<WizardState>(() => initialState(params));
  const [step, setStep] = useState(0);
  const [advancedOpen, setAdvancedOpen] = useState(false);
  const [serverErrors, setServerErrors] = useState<FieldErrors>({});
  const [serverDetail, setServerDetail] = useState<{ title: string; text: string; status: number } | null>(null);
  const [focusKey, setFocusKey] = useState<string | null>(null);
  const [attempted, setAttempted] = useState(false);
  const stepRef = useRef<HTMLDivElement>(null);

  const models = useBaseModels();
  const datasets = useReadyDatasets();
  const presets = usePresets();
  const create = useCreateJob();

  const set = (patch: Partial<WizardState>) => setState((s) => ({ ...s, ...patch }));

  // Apply the default preset once presets arrive.
  useEffect(() => {
    if (!presets.data || state.presetId) return;
    const preset = presets.data.find((p) => p.id === DEFAULT_PRESET) ?? presets.data[0];
    if (preset) {
      const { values, trainBy } = valuesFromPreset(preset.hyperparameters);
      setState((s) => (s.presetId ? s : { ...s, presetId: preset.id, hp: values, trainBy, weights: preset.weights }));
    }
  }, [presets.data, state.presetId]);

  // A preselected dataset (?dataset=) or a single one: fill its lineage root.
  useEffect(() => {
    if (!datasets.data || state.datasetRoot !== null) return;
    const chosen = state.datasetId !== null ? datasets.data.find((d) => d.id === state.datasetId) : datasets.data.length === 1 ? datasets.data[0] : undefined;
    if (chosen) setState((s) => ({ ...s, datasetRoot: chosen.root_id ?? chosen.id, datasetId: chosen.id }));
  }, [datasets.data, state.datasetRoot, state.datasetId]);

  // The only available base model is selected for you.
  useEffect(() => {
    if (!models.data || state.baseModel !== null) return;
    const available = models.data.filter((m) => m.status === "available");
    if (available.length === 1) setState((s) => ({ ...s, baseModel: available[0].id }));
  }, [models.data, state.baseModel]);

  const versions = useDatasetVersionsForTraining(state.datasetRoot);
  const dataset = versions.data?.find((v) => v.id === state.datasetId) ?? datasets.data?.find((d) => d.id === state.datasetId);
  const model = models.data?.find((m) => m.id === state.baseModel);

  // Keep the method compatible with the dataset's format.
  useEffect(() => {
    if (!dataset) return;
    if (methodBlocked(state.method, dataset)) {
      const method: TrainingMethod = isPreferenceFormat(dataset.format) ? "dpo" : "sft";
      setState((s) => {
        let next = { ...s, method };
        // Swap in the matching preset when the hyperparameters were not edited by hand.
        if (!s.presetEdited && presets.data) {
          const preset = presets.data.find((p) => p.method === method);
          if (preset) {
            const { values, trainBy } = valuesFromPreset(preset.hyperparameters);
            next = { ...next, presetId: preset.id, hp: values, trainBy, weights: preset.weights };
          }
        }
        return next;
      });
    }
  }, [dataset, state.method, presets.data]);

  const ctx: HpContext = { method: state.method, weights: state.weights, trainBy: state.trainBy };
  const built = useMemo(() => buildHyperparameters(state.hp, ctx), [state.hp, ctx.method, ctx.weights, ctx.trainBy]); // eslint-disable-line react-hooks/exhaustive-deps

  // Field errors of step 4: local parse errors first, then the server's `hyperparameters.<field>` errors.
  const hpErrors: Partial<Record<HpKey, string>> = { ...built.errors };
  for (const [key, messages] of Object.entries(serverErrors)) {
    const hpKey = hpKeyOf(key);
    if (hpKey && !hpErrors[hpKey]) hpErrors[hpKey] = messages[0];
  }

  // "Required." shows only after a click on Next; a value that does not parse shows at once.
  const shownHpErrors = attempted
    ? hpErrors
    : (Object.fromEntries(
        Object.entries(hpErrors).filter(([k]) => !(built.errors[k as HpKey] && (state.hp[k as HpKey] ?? "").trim() === "")),
      ) as Partial<Record<HpKey, string>>);

  const stepValid = [
    model?.status === "available",
    !!dataset && dataset.status === "ready",
    !!dataset && !methodBlocked(state.method, dataset),
    Object.keys(built.errors).length === 0,
    state.backend === "local" || !!state.modalGpu,
    true,
  ];
  const reachable = (() => {
    let i = 0;
    while (i < STEPS.length - 1 && stepValid[i]) i += 1;
    return i;
  })();

  const body: JobCreateInput | null =
    stepValid[0] && stepValid[1] && stepValid[2] && stepValid[3] && dataset && state.baseModel !== null
      ? {
          base_model: state.baseModel,
          dataset: dataset.id,
          dataset_version: dataset.version,
          method: state.method,
          weights: state.weights,
          hyperparameters: built.hyperparameters,
          backend: state.backend,
          ...(state.backend === "modal" ? { modal_gpu: state.modalGpu } : {}),
        }
      : null;
  const debouncedBody = useDebounced(step >= 4 ? body : null, ESTIMATE_DEBOUNCE_MS);
  const estimate = useEstimate(debouncedBody);

  const errorSteps = new Set(Object.keys(serverErrors).map(stepForErrorKey));
  if (Object.keys(built.errors).length) errorSteps.add(3);

  // After a jump to a field with an error, focus it (opening the advanced panel when it lives there).
  useEffect(() => {
    if (!focusKey) return;
    const hpKey = focusKey as HpKey;
    if (ADVANCED_KEYS.has(hpKey)) setAdvancedOpen(true);
    const timer = window.setTimeout(() => {
      const el = document.getElementById(focusKey.startsWith("hp-") ? focusKey : `hp-${focusKey}`) ?? document.getElementById(focusKey);
      if (el) {
        el.scrollIntoView({ block: "center", behavior: "smooth" });
        (el as HTMLInputElement).focus({ preventScroll: true });
      }
      setFocusKey(null);
    }, 60);
    return () => window.clearTimeout(timer);
  }, [focusKey, step]);

  const go = (next: number) => {
    setAttempted(false);
    setStep(Math.max(0, Math.min(STEPS.length - 1, next)));
    stepRef.current?.scrollIntoView({ block: "start", behavior: "smooth" });
  };

  const clearServerError = (key: string) => {
    if (!serverErrors[key]) return;
    setServerErrors((errs) => {
      const next = { ...errs };
      delete next[key];
      return next;
    });
  };

  const onHpChange = (key: HpKey, value: string) => {
    setState((s) => ({ ...s, hp: { ...s.hp, [key]: value }, presetEdited: true }));
    clearServerError(`hyperparameters.${key}`);
    clearServerError("hyperparameters");
  };

  const onPreset = (preset: TrainingPreset) => {
    const { values, trainBy } = valuesFromPreset(preset.hyperparameters);
    setState((s) => ({
      ...s,
      presetId: preset.id,
      presetEdited: false,
      hp: values,
      trainBy,
      weights: preset.weights,
      method: methodBlocked(preset.method, dataset) ? s.method : preset.method,
    }));
    setServerErrors((errs) => Object.fromEntries(Object.entries(errs).filter(([k]) => !k.startsWith("hyperparameters"))));
  };

  const launch = () => {
    if (!body) return;
    setServerDetail(null);
    create.mutate(
      { ...body, ...(state.name.trim() ? { name: state.name.trim() } : {}) },
      {
        onSuccess: (job) => navigate(`/training/jobs/${job.id}`),
        onError: (error) => {
          if (error instanceof ApiError && error.status === 429) {
            setServerDetail({
              status: 429,
              title: "You have reached your limit of concurrent training jobs",
              text: `${error.detail} Jobs still queued or running count towards the limit; when one finishes (or you cancel it), launch this one again — your settings stay here.`,
            });
            return;
          }
          if (error instanceof ApiError && error.status === 400) {
            setServerErrors(error.fieldErrors);
            const keys = Object.keys(error.fieldErrors);
            const target = keys.length ? Math.min(...keys.map(stepForErrorKey)) : 5;
            const firstHp = keys.map(hpKeyOf).find((k): k is HpKey => k !== null);
            setServerDetail({ status: 400, title: "The server refused this job", text: error.detail });
            if (target !== step) setStep(target);
            if (target === 3 && firstHp) setFocusKey(firstHp);
            else if (keys.includes("modal_gpu")) setFocusKey("modal-gpu");
            else if (keys.includes("dataset_version")) setFocusKey("dataset-version");
            else if (keys.includes("name")) setFocusKey("job-name");
            return;
          }
          setServerDetail({ status: error instanceof ApiError ? error.status : 0, title: "Could not launch the job", text: errorMessage(error) });
        },
      },
    );
  };

  const loading = models.isPending || datasets.isPending;
  const loadError = models.error ?? datasets.error;

  const preset = presets.data?.find((p) => p.id === state.presetId);
  const lengthText = state.trainBy === "epochs" ? `${state.hp.num_train_epochs || "?"} epoch(s)` : `${state.hp.max_steps || "?"} steps`;
  const summaries: (string | null)[] = [
    model?.name ?? null,
    dataset ? `${dataset.name} v${dataset.version}` : null,
    dataset ? `${METHOD_LABEL[state.method]} · ${WEIGHTS_LABEL[state.weights]}` : null,
    reachable >= 3 || step >= 3 ? `${preset ? `${preset.name}${state.presetEdited ? " (edited)" : ""} · ` : ""}${lengthText}, lr ${state.hp.learning_rate}` : null,
    step >= 4 || reachable >= 5 ? (state.backend === "modal" ? `Modal ${state.modalGpu}` : "Local worker") : null,
    null,
  ];

  const nextHint = !stepValid[step]
    ? [
        "Select an available base model.",
        "Select a ready dataset and version.",
        "This method cannot train the selected dataset.",
        "Fix the highlighted fields.",
        "Pick a GPU.",
        "",
      ][step]
    : "";

  return (
    <>
      <PageHeader
        title="New training job"
        description="Six short steps: what to train, on what, how, and where."
        actions={
          <Link to="/training" className="btn btn--ghost btn--md tr-link-btn">
            <span>All jobs</span>
          </Link>
        }
      />
      <div className="tr-wizard" ref={stepRef}>
        <nav className="tr-wizard__nav" aria-label="Wizard steps">
          <Stepper current={step} reachable={Math.max(reachable, step)} onGo={go} errorSteps={errorSteps} summaries={summaries} />
        </nav>
        <Card className="tr-wizard__card">
          <div className="tr-wizard__title-row">
            <h2 className="tr-wizard__title">
              <span className="tr-wizard__step-no">Step {step + 1} of {STEPS.length}</span>
              {STEPS[step]}
            </h2>
          </div>
          {serverDetail && (
            <Banner tone={serverDetail.status === 429 ? "warning" : "error"} title={serverDetail.title} testId="form-error">
              <p>{serverDetail.text}</p>
              {serverDetail.status === 429 && (
                <p>
                  <Link to="/training?status=running">See your running jobs</Link>
                </p>
              )}
            </Banner>
          )}
          {loading ? (
            <div className="center-pad">
              <Spinner label="Loading" />
            </div>
          ) : loadError ? (
            <Banner tone="error">{errorMessage(loadError)}</Banner>
          ) : (
            <div className="tr-wizard__body" data-step={step}>
              {step === 0 && (
                <BaseModelStep
                  models={models.data ?? []}
                  selected={state.baseModel}
                  onSelect={(id) => {
                    set({ baseModel: id });
                    clearServerError("base_model");
                  }}
                  error={serverErrors.base_model?.[0]}
                />
              )}
              {step === 1 && (
                <DatasetStep
                  datasets={datasets.data ?? []}
                  state={state}
                  onPick={(root, latestId) => {
                    set({ datasetRoot: root, datasetId: latestId });
                    clearServerError("dataset");
                    clearServerError("dataset_version");
                  }}
                  onVersion={(id) => {
                    set({ datasetId: id });
                    clearServerError("dataset_version");
                  }}
                  errors={serverErrors}
                />
              )}
              {step === 2 && (
                <MethodStep
                  state={state}
                  dataset={dataset}
                  set={(patch) => {
                    set(patch);
                    clearServerError("method");
                    clearServerError("weights");
                  }}
                  errors={serverErrors}
                />
              )}
              {step === 3 && (
                <HyperparametersStep
                  state={state}
                  presets={presets.data}
                  dataset={dataset}
                  errors={shownHpErrors}
                  onPreset={onPreset}
                  onChange={onHpChange}
                  onTrainBy={(v) => set({ trainBy: v, presetEdited: true })}
                  advancedOpen={advancedOpen}
                  setAdvancedOpen={setAdvancedOpen}
                  generalError={serverErrors.hyperparameters?.[0]}
                />
              )}
              {step === 4 && (
                <BackendStep
                  state={state}
                  set={(patch) => {
                    set(patch);
                    clearServerError("backend");
                    clearServerError("modal_gpu");
                  }}
                  errors={serverErrors}
                  estimate={estimate}
                />
              )}
              {step === 5 && (
                <ReviewStep
                  state={state}
                  set={(patch) => {
                    set(patch);
                    clearServerError("name");
                  }}
                  model={model}
                  dataset={dataset}
                  hyperparameters={built.hyperparameters}
                  estimate={estimate}
                  errors={serverErrors}
                />
              )}
            </div>
          )}
          <footer className="tr-wizard__footer">
            <Button onClick={() => go(step - 1)} disabled={step === 0} icon={undefined}>
              Back
            </Button>
            <div className="tr-wizard__footer-right">
              {nextHint && attempted && <span className="muted small">{nextHint}</span>}
              {step < STEPS.length - 1 ? (
                <Button
                  variant="primary"
                  onClick={() => {
                    if (!stepValid[step]) {
                      setAttempted(true);
                      return;
                    }
                    go(step + 1);
                  }}
                  aria-disabled={!stepValid[step] || undefined}
                  className={!stepValid[step] ? "is-soft-disabled" : undefined}
                >
                  Next
                </Button>
              ) : (
                <Button variant="primary" icon="training" onClick={launch} loading={create.isPending} disabled={!body}>
                  Launch training
                </Button>
              )}
            </div>
          </footer>
        </Card>
      </div>
    </>
  );
}
