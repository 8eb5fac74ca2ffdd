// Step 3: the training method (limited by the dataset's format) and the weights to train.
import { isKtoFormat, isPreferenceFormat } from "../../../../api/training";
import type { Dataset, TrainingMethod, TrainingWeights } from "../../../../api/types";
import type { FieldErrors } from "../../../../api/client";
import { datasetFormatLabel } from "../../../../components/training/labels";
import { Banner } from "../../../../components/ui";
import { methodBlocked, type WizardPatch } from "../state";
import { ChoiceCard } from "../WizardParts";

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
  {
    value: "kto",
    title: "KTO — Kahneman-Tversky optimization",
    text: "Learns from single answers labelled desirable or undesirable; no pairs needed. Best on top of an SFT model.",
  },
];

const WEIGHTS: { value: TrainingWeights; title: string; text: string }[] = [
  { value: "lora", title: "LoRA", text: "Trains small adapters on a frozen model: fast and light on memory. The best first choice." },
  { value: "qlora", title: "QLoRA", text: "LoRA on a 4-bit quantised base: the least memory, for large models (needs bitsandbytes)." },
  { value: "full", title: "Full fine-tune", text: "Updates every weight: the most capacity and the most memory. Best for small models." },
];

function lead(dataset: Dataset | undefined): string {
  if (!dataset) return "Pick a dataset first.";
  if (isKtoFormat(dataset.format)) {
    return `"${dataset.name}" holds answers labelled desirable or undesirable (KTO data): train it with KTO.`;
  }
  return isPreferenceFormat(dataset.format)
    ? `"${dataset.name}" holds preference pairs (${datasetFormatLabel(dataset.format)}): train it with DPO or ORPO.`
    : `"${dataset.name}" is ${datasetFormatLabel(dataset.format).toLowerCase()} data: SFT teaches the model to answer like it.`;
}

export function MethodStep({
  method,
  weights,
  dataset,
  set,
  errors,
}: {
  method: TrainingMethod;
  weights: TrainingWeights;
  dataset: Dataset | undefined;
  set: (patch: WizardPatch) => void;
  errors: FieldErrors;
}) {
  const error = errors.method?.[0] ?? errors.weights?.[0];
  return (
    <div className="tr-step">
      {error && <Banner tone="error">{error}</Banner>}
      <h3 className="tr-step__subtitle">Training method</h3>
      <p className="tr-step__lead">{lead(dataset)}</p>
      <div className="tr-choices tr-choices--two" role="radiogroup" aria-label="Method">
        {METHODS.map((m) => {
          const blocked = methodBlocked(m.value, dataset);
          return (
            <ChoiceCard
              key={m.value}
              name="method"
              value={m.value}
              checked={method === m.value}
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
            checked={weights === w.value}
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
