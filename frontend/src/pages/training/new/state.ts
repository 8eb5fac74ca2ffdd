// The wizard's whole state (what was chosen, the current step, the server's answer to a launch) and the one
// reducer that changes it. Every change a step can make is an action here, so each step is a plain view.
import type { FieldErrors } from "../../../api/client";
import { isKtoFormat, isPreferenceFormat } from "../../../api/training";
import type { Dataset, TrainingBackend, TrainingJob, TrainingMethod, TrainingPreset, TrainingWeights } from "../../../api/types";
import { HP_DEFAULTS, valuesFromPreset, type HpKey, type HpValues, type TrainBy } from "../../../components/training/hyperparameters";
import { datasetFormatLabel } from "../../../components/training/labels";

export const STEPS = ["Base model", "Dataset", "Method", "Hyperparameters", "Where to run", "Review"] as const;
export const LAST_STEP = STEPS.length - 1;
/** Step indexes, for readability where a step is named. */
export const STEP = { baseModel: 0, dataset: 1, method: 2, hyperparameters: 3, backend: 4, review: 5 } as const;

export const DEFAULT_PRESET = "quick-lora";
/** Held-out prompts the evaluation report compares by default (the API's default is 0). */
export const DEFAULT_COMPARE_PROMPTS = 5;
export const MAX_COMPARE_PROMPTS = 100;

/** The typed number of evaluation prompts, or null when it is not a whole number in 0..100. */
export function parseComparePrompts(text: string): number | null {
  const trimmed = text.trim();
  if (!/^\d+$/.test(trimmed)) return null;
  const n = Number(trimmed);
  return n <= MAX_COMPARE_PROMPTS ? n : null;
}

export interface ServerDetail {
  title: string;
  text: string;
  status: number;
}

export interface WizardState {
  // What was chosen: the request body is built from these alone (see request.ts).
  baseModel: number | null;
  /** The dataset lineage (its first version's id); `datasetId` is the version picked in it. */
  datasetRoot: number | null;
  datasetId: number | null;
  method: TrainingMethod;
  weights: TrainingWeights;
  presetId: string | null;
  /** A hyperparameter was changed by hand after the preset was applied. */
  presetEdited: boolean;
  hp: HpValues;
  trainBy: TrainBy;
  backend: TrainingBackend;
  modalGpu: string;
  name: string;
  /** Evaluation report: held-out prompts both models answer after training ("0": none), as typed. */
  comparePrompts: string;
  /** The dataset version evaluated on; null: the training dataset's validation split. */
  evalDatasetId: number | null;

  // Where the user is.
  step: number;
  /** Next was pressed on an invalid step: its hint and its "Required." errors show. */
  attempted: boolean;
  advancedOpen: boolean;

  // The server's answer to the last launch.
  /** Field errors by API key ("dataset_version", "hyperparameters.learning_rate"); cleared as fields change. */
  serverErrors: FieldErrors;
  serverDetail: ServerDetail | null;
  /** A field to scroll to and focus after a jump to its step: a hyperparameter key or an element id. */
  focusKey: string | null;
}

/** The choices a step may set directly (the others have their own actions). */
export type WizardPatch = Partial<Pick<WizardState, "baseModel" | "datasetRoot" | "datasetId" | "method" | "weights" | "backend" | "modalGpu" | "name" | "comparePrompts" | "evalDatasetId">>;

export type WizardAction =
  /** A plain change; `clear` names the server errors it answers. */
  | { type: "set"; patch: WizardPatch; clear?: string[] }
  | { type: "setHp"; key: HpKey; value: string }
  | { type: "setTrainBy"; trainBy: TrainBy }
  /** A preset card was clicked. */
  | { type: "applyPreset"; preset: TrainingPreset; dataset: Dataset | undefined }
  // Automatic choices, each applied only while the user has not chosen.
  | { type: "defaultPreset"; preset: TrainingPreset }
  | { type: "preselectDataset"; dataset: Dataset }
  | { type: "preselectModel"; id: number }
  /** "Clone this job" (?clone=<id>): every choice of that job, ready to change and launch again. */
  | { type: "clone"; job: TrainingJob }
  /** The dataset cannot train with the current method: switch (and swap the preset unless it was edited). */
  | { type: "fitMethod"; method: TrainingMethod; presets: TrainingPreset[] | undefined }
  | { type: "go"; step: number }
  | { type: "attempt" }
  | { type: "setAdvanced"; open: boolean }
  | { type: "launching" }
  | { type: "launchFailed"; detail: ServerDetail; errors?: FieldErrors; step?: number; focusKey?: string | null }
  | { type: "focused" };

/** `?dataset=<id>` and `?base_model=<id>` preselect a dataset version and a base model. */
export function initialState(params: URLSearchParams): WizardState {
  return {
    baseModel: Number(params.get("base_model")) || null,
    datasetRoot: null,
    datasetId: Number(params.get("dataset")) || null,
    method: "sft",
    weights: "lora",
    presetId: null,
    presetEdited: false,
    hp: { ...HP_DEFAULTS },
    trainBy: "epochs",
    backend: "local",
    modalGpu: "A10G",
    name: "",
    comparePrompts: String(DEFAULT_COMPARE_PROMPTS),
    evalDatasetId: null,
    step: 0,
    attempted: false,
    advancedOpen: false,
    serverErrors: {},
    serverDetail: null,
    focusKey: null,
  };
}

/** Why a method cannot train this dataset, or null. */
export function methodBlocked(method: TrainingMethod, dataset: Dataset | undefined): string | null {
  if (!dataset) return null;
  const pref = isPreferenceFormat(dataset.format);
  const kto = isKtoFormat(dataset.format);
  if (kto && method !== "kto") {
    return method === "sft"
      ? `"${dataset.name}" is KTO data: its labels mark some answers undesirable, and SFT would learn those too. Train it with KTO, or make a version with "Keep only desirable rows" and train SFT on that.`
      : `Needs chosen/rejected pairs; "${dataset.name}" holds single answers labelled desirable or not. Train it with KTO.`;
  }
  if (method === "kto") {
    return kto ? null : `Needs answers labelled desirable or undesirable (a "label" column); "${dataset.name}" is ${datasetFormatLabel(dataset.format).toLowerCase()} data.`;
  }
  if (method !== "sft" && !pref) {
    return `Needs preference data (prompt, chosen, rejected); "${dataset.name}" is ${datasetFormatLabel(dataset.format).toLowerCase()} data. Use SFT, or upload preference pairs.`;
  }
  if (method === "sft" && pref) return `"${dataset.name}" holds preference pairs; train it with DPO or ORPO.`;
  return null;
}

function withoutErrors(errors: FieldErrors, drop: (key: string) => boolean): FieldErrors {
  if (!Object.keys(errors).some(drop)) return errors;
  return Object.fromEntries(Object.entries(errors).filter(([key]) => !drop(key)));
}

function presetValues(preset: TrainingPreset): Pick<WizardState, "presetId" | "hp" | "trainBy" | "weights"> {
  const { values, trainBy } = valuesFromPreset(preset.hyperparameters);
  return { presetId: preset.id, hp: values, trainBy, weights: preset.weights };
}

export function wizardReducer(state: WizardState, action: WizardAction): WizardState {
  switch (action.type) {
    case "set": {
      const clear = action.clear ?? [];
      const next = { ...state, ...action.patch, serverErrors: withoutErrors(state.serverErrors, (key) => clear.includes(key)) };
      // Another training dataset: the evaluation dataset picked for the old one may not fit it.
      if (action.patch.datasetId !== undefined && action.patch.datasetId !== state.datasetId && action.patch.evalDatasetId === undefined) {
        next.evalDatasetId = null;
      }
      return next;
    }
    case "setHp":
      return {
        ...state,
        hp: { ...state.hp, [action.key]: action.value },
        presetEdited: true,
        serverErrors: withoutErrors(state.serverErrors, (key) => key === `hyperparameters.${action.key}` || key === "hyperparameters"),
      };
    case "setTrainBy":
      return { ...state, trainBy: action.trainBy, presetEdited: true };
    case "applyPreset":
      return {
        ...state,
        ...presetValues(action.preset),
        presetEdited: false,
        method: methodBlocked(action.preset.method, action.dataset) ? state.method : action.preset.method,
        serverErrors: withoutErrors(state.serverErrors, (key) => key.startsWith("hyperparameters")),
      };
    case "defaultPreset":
      return state.presetId ? state : { ...state, ...presetValues(action.preset) };
    case "clone": {
      const { values, trainBy } = valuesFromPreset(action.job.hyperparameters);
      return {
        ...state,
        baseModel: action.job.base_model,
        datasetRoot: null,
        datasetId: action.job.dataset,
        method: action.job.method,
        weights: action.job.weights,
        presetId: "clone",
        presetEdited: true,
        hp: values,
        trainBy,
        backend: action.job.backend,
        modalGpu: action.job.modal_gpu || state.modalGpu,
        name: `${action.job.name} (copy)`,
        comparePrompts: String(action.job.compare_prompts ?? 0),
        evalDatasetId: action.job.eval_dataset ?? null,
      };
    }
    case "preselectDataset":
      if (state.datasetRoot !== null) return state;
      return { ...state, datasetRoot: action.dataset.root_id ?? action.dataset.id, datasetId: action.dataset.id };
    case "preselectModel":
      return state.baseModel !== null ? state : { ...state, baseModel: action.id };
    case "fitMethod": {
      const next = { ...state, method: action.method };
      // Swap in the matching preset when the hyperparameters were not edited by hand.
      const preset = !state.presetEdited ? action.presets?.find((p) => p.method === action.method) : undefined;
      return preset ? { ...next, ...presetValues(preset) } : next;
    }
    case "go":
      return { ...state, attempted: false, step: Math.max(0, Math.min(LAST_STEP, action.step)) };
    case "attempt":
      return { ...state, attempted: true };
    case "setAdvanced":
      return state.advancedOpen === action.open ? state : { ...state, advancedOpen: action.open };
    case "launching":
      return { ...state, serverDetail: null };
    case "launchFailed":
      return {
        ...state,
        serverDetail: action.detail,
        serverErrors: action.errors ?? state.serverErrors,
        step: action.step ?? state.step,
        focusKey: action.focusKey ?? state.focusKey,
      };
    case "focused":
      return { ...state, focusKey: null };
  }
}
