// Step 1: the base model to fine-tune.
import type { BaseModelInfo } from "../../../../api/types";
import { Banner, EmptyState } from "../../../../components/ui";
import { formatCompact, formatNumber } from "../../../../lib/format";
import { ChoiceCard } from "../WizardParts";

export function BaseModelStep({
  models,
  selected,
  onSelect,
  error,
}: {
  models: BaseModelInfo[];
  selected: number | null;
  onSelect: (id: number) => void;
  error?: string;
}) {
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
                {m.context_length ? <span>{formatNumber(m.context_length)} ctx</span> : null}
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
