// Step 5: where to run (the local worker or a Modal GPU), with the estimate and the cost table.
import { errorMessage, type FieldErrors } from "../../../../api/client";
import { useModalGpus, type useEstimate } from "../../../../api/training";
import { Icon } from "../../../../components/Icon";
import { EstimatePanel } from "../../../../components/training/EstimatePanel";
import { Banner } from "../../../../components/ui";
import type { WizardPatch, WizardState } from "../state";
import { ChoiceCard, SelectField } from "../WizardParts";

export function BackendStep({
  state,
  set,
  errors,
  estimate,
}: {
  state: WizardState;
  set: (patch: WizardPatch) => void;
  errors: FieldErrors;
  estimate: ReturnType<typeof useEstimate>;
}) {
  const gpus = useModalGpus();
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
            options={(gpus.names.length ? gpus.names : [state.modalGpu]).map((g) => ({ value: g, label: gpus.memoryGb[g] ? `${g} · ${gpus.memoryGb[g]} GB` : g }))}
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
