// What the stepper shows under each step, and why Next does not go on.
import type { TrainingPreset } from "../../../api/types";
import { METHOD_LABEL, WEIGHTS_LABEL } from "../../../components/training/labels";
import type { WizardRefs } from "./request";
import { STEP, type WizardState } from "./state";

const NEXT_HINTS = [
  "Select an available base model.",
  "Select a ready dataset and version, and a whole number of evaluation prompts.",
  "This method cannot train the selected dataset.",
  "Fix the highlighted fields.",
  "Pick a GPU.",
  "",
];

function evalText(state: WizardState): string {
  const n = Number(state.comparePrompts) || 0;
  return n > 0 ? ` · report on ${n} prompt${n === 1 ? "" : "s"}` : "";
}

/** The choice made in each step, once there is one to show. */
export function stepSummaries(state: WizardState, { model, dataset }: WizardRefs, reachable: number, preset: TrainingPreset | undefined): (string | null)[] {
  const { step, hp } = state;
  const lengthText = state.trainBy === "epochs" ? `${hp.num_train_epochs || "?"} epoch(s)` : `${hp.max_steps || "?"} steps`;
  const presetText = preset ? `${preset.name}${state.presetEdited ? " (edited)" : ""} · ` : "";
  return [
    model?.name ?? null,
    dataset ? `${dataset.name} v${dataset.version}${evalText(state)}` : null,
    dataset ? `${METHOD_LABEL[state.method]} · ${WEIGHTS_LABEL[state.weights]}` : null,
    reachable >= STEP.hyperparameters || step >= STEP.hyperparameters ? `${presetText}${lengthText}, lr ${hp.learning_rate}` : null,
    step >= STEP.backend || reachable >= STEP.review ? (state.backend === "modal" ? `Modal ${state.modalGpu}` : "Local worker") : null,
    null,
  ];
}

/** Shown next to Next after a click on it while the step is incomplete. */
export function nextHint(step: number, valid: boolean): string {
  return valid ? "" : NEXT_HINTS[step];
}
