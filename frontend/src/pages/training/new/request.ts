// Pure functions of the wizard's state: which steps are complete, and the one place the job request body
// (POST /api/training/jobs/, and without its name POST estimate/) is built.
import type { BaseModelInfo, Dataset, Hyperparameters, JobCreateInput } from "../../../api/types";
import { buildHyperparameters, type HpContext, type HpKey } from "../../../components/training/hyperparameters";
import { LAST_STEP, methodBlocked, parseComparePrompts, type WizardState } from "./state";

/** The records the state's ids point to (the selected base model and dataset version), once loaded. */
export interface WizardRefs {
  model: BaseModelInfo | undefined;
  dataset: Dataset | undefined;
}

export interface WizardCheck {
  /** The hyperparameters as the API takes them (the fields that parse). */
  hyperparameters: Hyperparameters;
  /** Fields of step 4 that do not parse (or are required and empty). */
  hpErrors: Partial<Record<HpKey, string>>;
  /** Per step: can the user go on from it? */
  stepValid: boolean[];
  /** The furthest step that can be opened: the first invalid one (or the last). */
  reachable: number;
}

export function hpContext(state: WizardState): HpContext {
  return { method: state.method, weights: state.weights, trainBy: state.trainBy };
}

export function checkWizard(state: WizardState, { model, dataset }: WizardRefs): WizardCheck {
  const built = buildHyperparameters(state.hp, hpContext(state));
  const stepValid = [
    model?.status === "available",
    !!dataset && dataset.status === "ready" && parseComparePrompts(state.comparePrompts) !== null,
    !!dataset && !methodBlocked(state.method, dataset),
    Object.keys(built.errors).length === 0,
    state.backend === "local" || !!state.modalGpu,
    true,
  ];
  let reachable = 0;
  while (reachable < LAST_STEP && stepValid[reachable]) reachable += 1;
  return { hyperparameters: built.hyperparameters, hpErrors: built.errors, stepValid, reachable };
}

/**
 * The job request, or null while the choices up to the hyperparameters are incomplete.
 * `withName: false` leaves the job name out (the estimate does not depend on it).
 */
export function buildRequest(state: WizardState, refs: WizardRefs, { withName = true } = {}): JobCreateInput | null {
  const { dataset } = refs;
  const { stepValid, hyperparameters } = checkWizard(state, refs);
  if (!(stepValid[0] && stepValid[1] && stepValid[2] && stepValid[3]) || !dataset || state.baseModel === null) return null;
  const name = state.name.trim();
  return {
    base_model: state.baseModel,
    dataset: dataset.id,
    dataset_version: dataset.version,
    method: state.method,
    weights: state.weights,
    hyperparameters,
    backend: state.backend,
    compare_prompts: parseComparePrompts(state.comparePrompts) ?? 0,
    ...(state.evalDatasetId !== null ? { eval_dataset: state.evalDatasetId } : {}),
    ...(state.backend === "modal" ? { modal_gpu: state.modalGpu } : {}),
    ...(withName && name ? { name } : {}),
  };
}
