// The wizard's controller: the reducer, the queries it reads, the automatic choices, the estimate and the launch.
import { useEffect, useMemo, useReducer, useRef, useState } from "react";
import { useNavigate, useSearchParams } from "react-router-dom";
import { ApiError, errorMessage } from "../../../api/client";
import {
  isKtoFormat,
  isPreferenceFormat,
  useBaseModels,
  useCreateJob,
  useDatasetVersionsForTraining,
  useEstimate,
  usePresets,
  useJob,
  useReadyDatasets,
} from "../../../api/training";
import type { JobCreateInput, TrainingMethod } from "../../../api/types";
import { ADVANCED_KEYS, hpKeyOf, stepForErrorKey, type HpKey } from "../../../components/training/hyperparameters";
import { buildRequest, checkWizard, type WizardRefs } from "./request";
import { DEFAULT_PRESET, initialState, methodBlocked, STEP, wizardReducer, type WizardAction, type WizardState } from "./state";

const ESTIMATE_DEBOUNCE_MS = 450;

function useDebounced<T>(value: T, ms: number): T {
  const [debounced, setDebounced] = useState(value);
  useEffect(() => {
    const timer = window.setTimeout(() => setDebounced(value), ms);
    return () => window.clearTimeout(timer);
  }, [value, ms]);
  return debounced;
}

/** What a failed launch does to the wizard: a banner, and for a 400 the step and field of the first error. */
function launchFailure(error: unknown): WizardAction {
  if (error instanceof ApiError && error.status === 429) {
    return {
      type: "launchFailed",
      detail: {
        status: 429,
        title: "You have reached your limit of concurrent training jobs",
        text: `${error.detail} Jobs still queued or running count towards the limit; when one finishes (or you cancel it), launch this one again — your settings stay here.`,
      },
    };
  }
  if (error instanceof ApiError && error.status === 400) {
    const keys = Object.keys(error.fieldErrors);
    const target = keys.length ? Math.min(...keys.map(stepForErrorKey)) : STEP.review;
    const firstHp = keys.map(hpKeyOf).find((k): k is HpKey => k !== null);
    const focusKey =
      target === STEP.hyperparameters && firstHp
        ? firstHp
        : keys.includes("modal_gpu")
          ? "modal-gpu"
          : keys.includes("dataset_version")
            ? "dataset-version"
            : keys.includes("name")
              ? "job-name"
              : null;
    return {
      type: "launchFailed",
      detail: { status: 400, title: "The server refused this job", text: error.detail },
      errors: error.fieldErrors,
      step: target,
      focusKey,
    };
  }
  return {
    type: "launchFailed",
    detail: { status: error instanceof ApiError ? error.status : 0, title: "Could not launch the job", text: errorMessage(error) },
  };
}

/** Fill what the user has not chosen yet, and keep the method compatible with the dataset. */
function useAutomaticChoices(state: WizardState, dispatch: (action: WizardAction) => void, data: ReturnType<typeof useWizardData>) {
  const { models, datasets, presets, refs } = data;
  const { dataset } = refs;

  // Apply the default preset once presets arrive.
  useEffect(() => {
    if (!presets.data || state.presetId) return;
    const preset = presets.data.find((p) => p.id === DEFAULT_PRESET) ?? presets.data[0];
    if (preset) dispatch({ type: "defaultPreset", preset });
  }, [presets.data, state.presetId, dispatch]);

  // A preselected dataset (?dataset=) or a single one: fill its lineage root.
  useEffect(() => {
    if (!datasets.data || state.datasetRoot !== null) return;
    const chosen =
      state.datasetId !== null ? datasets.data.find((d) => d.id === state.datasetId) : datasets.data.length === 1 ? datasets.data[0] : undefined;
    if (chosen) dispatch({ type: "preselectDataset", dataset: chosen });
  }, [datasets.data, state.datasetRoot, state.datasetId, dispatch]);

  // The only available base model is selected for you.
  useEffect(() => {
    if (!models.data || state.baseModel !== null) return;
    const available = models.data.filter((m) => m.status === "available");
    if (available.length === 1) dispatch({ type: "preselectModel", id: available[0].id });
  }, [models.data, state.baseModel, dispatch]);

  // Keep the method compatible with the dataset's format.
  useEffect(() => {
    if (!dataset || !methodBlocked(state.method, dataset)) return;
    const method: TrainingMethod = isKtoFormat(dataset.format) ? "kto" : isPreferenceFormat(dataset.format) ? "dpo" : "sft";
    dispatch({ type: "fitMethod", method, presets: presets.data });
  }, [dataset, state.method, presets.data, dispatch]);
}

/** `?clone=<job id>`: once that job is loaded, take over all its choices (once). */
function useClone(jobId: number, dispatch: (action: WizardAction) => void) {
  const source = useJob(jobId, { enabled: jobId > 0 });
  const done = useRef(false);
  useEffect(() => {
    if (done.current || !source.data) return;
    done.current = true;
    dispatch({ type: "clone", job: source.data });
  }, [source.data, dispatch]);
}

/** The queries the wizard reads, and the records its ids point to. */
function useWizardData(state: WizardState) {
  const models = useBaseModels();
  const datasets = useReadyDatasets();
  const presets = usePresets();
  const versions = useDatasetVersionsForTraining(state.datasetRoot);
  const refs: WizardRefs = {
    model: models.data?.find((m) => m.id === state.baseModel),
    dataset: versions.data?.find((v) => v.id === state.datasetId) ?? datasets.data?.find((d) => d.id === state.datasetId),
  };
  return { models, datasets, presets, refs };
}

/** After a jump to a field with an error, focus it (opening the advanced panel when it lives there). */
function useFocusRequest(state: WizardState, dispatch: (action: WizardAction) => void) {
  const { focusKey, step } = state;
  useEffect(() => {
    if (!focusKey) return;
    if (ADVANCED_KEYS.has(focusKey as HpKey)) dispatch({ type: "setAdvanced", open: true });
    const timer = window.setTimeout(() => {
      const el = document.getElementById(focusKey.startsWith("hp-") ? focusKey : `hp-${focusKey}`) ?? document.getElementById(focusKey);
      if (el) {
        el.scrollIntoView({ block: "center", behavior: "smooth" });
        (el as HTMLInputElement).focus({ preventScroll: true });
      }
      dispatch({ type: "focused" });
    }, 60);
    return () => window.clearTimeout(timer);
  }, [focusKey, step, dispatch]);
}

export function useWizard() {
  const navigate = useNavigate();
  const [params] = useSearchParams();
  const [state, dispatch] = useReducer(wizardReducer, params, initialState);
  const data = useWizardData(state);
  const create = useCreateJob();
  const topRef = useRef<HTMLDivElement>(null);
  const { refs } = data;

  useAutomaticChoices(state, dispatch, data);
  useFocusRequest(state, dispatch);
  useClone(Number(params.get("clone")) || 0, dispatch);

  const check = checkWizard(state, refs);
  const body = buildRequest(state, refs);

  // The estimate follows the choices from step 5 on, once they settle.
  const estimateInput = state.step >= STEP.backend ? buildRequest(state, refs, { withName: false }) : null;
  const estimateKey = useDebounced(estimateInput ? JSON.stringify(estimateInput) : null, ESTIMATE_DEBOUNCE_MS);
  const estimate = useEstimate(useMemo(() => (estimateKey ? (JSON.parse(estimateKey) as JobCreateInput) : null), [estimateKey]));

  // Step 4's field errors: local parse errors first, then the server's `hyperparameters.<field>` errors.
  const hpErrors: Partial<Record<HpKey, string>> = { ...check.hpErrors };
  for (const [key, messages] of Object.entries(state.serverErrors)) {
    const hpKey = hpKeyOf(key);
    if (hpKey && !hpErrors[hpKey]) hpErrors[hpKey] = messages[0];
  }
  // "Required." shows only after a click on Next; a value that does not parse shows at once.
  const shownHpErrors = state.attempted
    ? hpErrors
    : (Object.fromEntries(
        Object.entries(hpErrors).filter(([k]) => !(check.hpErrors[k as HpKey] && (state.hp[k as HpKey] ?? "").trim() === "")),
      ) as Partial<Record<HpKey, string>>);

  const errorSteps = new Set(Object.keys(state.serverErrors).map(stepForErrorKey));
  if (Object.keys(check.hpErrors).length) errorSteps.add(STEP.hyperparameters);

  const go = (step: number) => {
    dispatch({ type: "go", step });
    topRef.current?.scrollIntoView({ block: "start", behavior: "smooth" });
  };

  const next = () => {
    if (!check.stepValid[state.step]) dispatch({ type: "attempt" });
    else go(state.step + 1);
  };

  const launch = () => {
    if (!body) return;
    dispatch({ type: "launching" });
    create.mutate(body, {
      onSuccess: (job) => navigate(`/training/jobs/${job.id}`),
      onError: (error) => dispatch(launchFailure(error)),
    });
  };

  return {
    state,
    dispatch,
    ...data,
    check,
    body,
    estimate,
    shownHpErrors,
    errorSteps,
    topRef,
    go,
    next,
    launch,
    launching: create.isPending,
  };
}

export type Wizard = ReturnType<typeof useWizard>;
