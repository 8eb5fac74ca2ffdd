// Step 6: the job name and everything chosen, with the estimate; Launch training is in the wizard's footer.
import type { FieldErrors } from "../../../../api/client";
import { useModalGpus, type useEstimate } from "../../../../api/training";
import type { BaseModelInfo, Dataset, Hyperparameters } from "../../../../api/types";
import { estimateFor } from "../../../../components/training/EstimatePanel";
import { HP_FIELDS } from "../../../../components/training/hyperparameters";
import { datasetFormatLabel, METHOD_LABEL, WEIGHTS_LABEL } from "../../../../components/training/labels";
import { Banner, Field, Spinner } from "../../../../components/ui";
import { formatDuration, formatGb, formatNumber, formatUsd } from "../../../../lib/format";
import type { WizardPatch, WizardState } from "../state";

type Estimate = ReturnType<typeof useEstimate>;
type EstimateView = ReturnType<typeof estimateFor>;

function EstimateText({ state, estimate, view }: { state: WizardState; estimate: Estimate; view: EstimateView | null }) {
  if (view && estimate.data) {
    return (
      <>
        {formatDuration(view.durationS)} · {formatNumber(estimate.data.steps)} steps · {formatGb(estimate.data.peak_memory_gb)} peak
        {state.backend === "modal" && view.cost !== null ? ` · ${formatUsd(view.cost)}` : ""}
        {!view.fits && <span className="tr-no"> · will not fit</span>}
      </>
    );
  }
  return estimate.isFetching ? <Spinner size={12} label="Estimating" /> : <>—</>;
}

function HyperparameterList({ hyperparameters }: { hyperparameters: Hyperparameters }) {
  const values = hyperparameters as Record<string, unknown>;
  const rows = HP_FIELDS.filter((f) => values[f.key] !== undefined && !(f.key === "max_steps" && values.max_steps === -1));
  return (
    <div className="tr-review__hp">
      <h4 className="tr-estimate__subtitle">Hyperparameters</h4>
      <dl className="tr-hp-list">
        {rows.map((f) => (
          <div key={f.key}>
            <dt>{f.key}</dt>
            <dd>{Array.isArray(values[f.key]) ? (values[f.key] as string[]).join(", ") : String(values[f.key])}</dd>
          </div>
        ))}
      </dl>
    </div>
  );
}

export function ReviewStep({
  state,
  set,
  model,
  dataset,
  hyperparameters,
  estimate,
  errors,
}: {
  state: WizardState;
  set: (patch: WizardPatch) => void;
  model: BaseModelInfo | undefined;
  dataset: Dataset | undefined;
  hyperparameters: Hyperparameters;
  estimate: Estimate;
  errors: FieldErrors;
}) {
  const gpuMemoryGb = useModalGpus().memoryGb;
  const view = estimate.data ? estimateFor(estimate.data, state.backend, state.modalGpu, gpuMemoryGb) : null;
  const defaultName = model && dataset ? `${model.name} on ${dataset.name}` : "";
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
              {dataset && <span className="muted"> · {formatNumber(dataset.row_count)} rows · {datasetFormatLabel(dataset.format)}</span>}
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
              <EstimateText state={state} estimate={estimate} view={view} />
            </dd>
          </div>
        </dl>
        <HyperparameterList hyperparameters={hyperparameters} />
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
