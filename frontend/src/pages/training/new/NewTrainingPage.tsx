// /training/new: the six-step wizard (base model, dataset, method, hyperparameters, where to run, review).
// `?dataset=<id>` and `?base_model=<id>` preselect a dataset and a base model. State: one reducer (state.ts),
// driven by useWizard.ts; the request body is built only in request.ts.
import { Link } from "react-router-dom";
import { errorMessage } from "../../../api/client";
import { Banner, Button, Card, PageHeader, Spinner } from "../../../components/ui";
import { BackendStep } from "./steps/BackendStep";
import { BaseModelStep } from "./steps/BaseModelStep";
import { DatasetStep } from "./steps/DatasetStep";
import { HyperparametersStep } from "./steps/HyperparametersStep";
import { MethodStep } from "./steps/MethodStep";
import { ReviewStep } from "./steps/ReviewStep";
import { SweepOption } from "./steps/SweepOption";
import { LAST_STEP, STEP, STEPS, type ServerDetail, type WizardPatch } from "./state";
import { nextHint, stepSummaries } from "./summaries";
import { useWizard, type Wizard } from "./useWizard";
import { Stepper } from "./WizardParts";

/** The current step's form. */
function StepBody({ wizard }: { wizard: Wizard }) {
  const { state, dispatch, refs } = wizard;
  const errors = state.serverErrors;
  const set = (clear: string[]) => (patch: WizardPatch) => dispatch({ type: "set", patch, clear });
  switch (state.step) {
    case STEP.baseModel:
      return (
        <BaseModelStep
          models={wizard.models.data ?? []}
          selected={state.baseModel}
          onSelect={(id) => set(["base_model"])({ baseModel: id })}
          error={errors.base_model?.[0]}
        />
      );
    case STEP.dataset:
      return (
        <DatasetStep
          datasets={wizard.datasets.data ?? []}
          datasetRoot={state.datasetRoot}
          datasetId={state.datasetId}
          onPick={(root, latestId) => set(["dataset", "dataset_version"])({ datasetRoot: root, datasetId: latestId })}
          onVersion={(id) => set(["dataset_version"])({ datasetId: id })}
          errors={errors}
          comparePrompts={state.comparePrompts}
          evalDatasetId={state.evalDatasetId}
          onComparePrompts={(text) => set(["compare_prompts"])({ comparePrompts: text })}
          onEvalDataset={(id) => set(["eval_dataset", "eval_dataset_version", "compare_prompts"])({ evalDatasetId: id })}
        />
      );
    case STEP.method:
      return <MethodStep method={state.method} weights={state.weights} dataset={refs.dataset} set={set(["method", "weights"])} errors={errors} />;
    case STEP.hyperparameters:
      return <HyperparametersStep state={state} dispatch={dispatch} presets={wizard.presets.data} dataset={refs.dataset} errors={wizard.shownHpErrors} />;
    case STEP.backend:
      return <BackendStep state={state} set={set(["backend", "modal_gpu"])} errors={errors} estimate={wizard.estimate} />;
    default:
      return (
        <>
          <ReviewStep
            state={state}
            set={set(["name"])}
            model={refs.model}
            dataset={refs.dataset}
            hyperparameters={wizard.check.hyperparameters}
            estimate={wizard.estimate}
            errors={errors}
          />
          <SweepOption body={wizard.body} />
        </>
      );
  }
}

/** Why the last launch failed (a 429 is the concurrency limit: a warning with a link to the running jobs). */
function LaunchProblem({ detail }: { detail: ServerDetail }) {
  return (
    <Banner tone={detail.status === 429 ? "warning" : "error"} title={detail.title} testId="form-error">
      <p>{detail.text}</p>
      {detail.status === 429 && (
        <p>
          <Link to="/training?status=running">See your running jobs</Link>
        </p>
      )}
    </Banner>
  );
}

function WizardFooter({ wizard }: { wizard: Wizard }) {
  const { state, check } = wizard;
  const valid = check.stepValid[state.step];
  const hint = nextHint(state.step, valid);
  return (
    <footer className="tr-wizard__footer">
      <Button onClick={() => wizard.go(state.step - 1)} disabled={state.step === 0} icon={undefined}>
        Back
      </Button>
      <div className="tr-wizard__footer-right">
        {hint && state.attempted && <span className="muted small">{hint}</span>}
        {state.step < LAST_STEP ? (
          <Button variant="primary" onClick={wizard.next} aria-disabled={!valid || undefined} className={!valid ? "is-soft-disabled" : undefined}>
            Next
          </Button>
        ) : (
          <Button variant="primary" icon="training" onClick={wizard.launch} loading={wizard.launching} disabled={!wizard.body}>
            Launch training
          </Button>
        )}
      </div>
    </footer>
  );
}

export default function NewTrainingPage() {
  const wizard = useWizard();
  const { state, check, models, datasets, presets, refs } = wizard;
  const loading = models.isPending || datasets.isPending;
  const loadError = models.error ?? datasets.error;
  const preset = presets.data?.find((p) => p.id === state.presetId);
  const summaries = stepSummaries(state, refs, check.reachable, preset);

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
      <div className="tr-wizard" ref={wizard.topRef}>
        <nav className="tr-wizard__nav" aria-label="Wizard steps">
          <Stepper current={state.step} reachable={Math.max(check.reachable, state.step)} onGo={wizard.go} errorSteps={wizard.errorSteps} summaries={summaries} />
        </nav>
        <Card className="tr-wizard__card">
          <div className="tr-wizard__title-row">
            <h2 className="tr-wizard__title">
              <span className="tr-wizard__step-no">
                Step {state.step + 1} of {STEPS.length}
              </span>
              {STEPS[state.step]}
            </h2>
          </div>
          {state.serverDetail && <LaunchProblem detail={state.serverDetail} />}
          {loading ? (
            <div className="center-pad">
              <Spinner label="Loading" />
            </div>
          ) : loadError ? (
            <Banner tone="error">{errorMessage(loadError)}</Banner>
          ) : (
            <div className="tr-wizard__body" data-step={state.step}>
              <StepBody wizard={wizard} />
            </div>
          )}
          <WizardFooter wizard={wizard} />
        </Card>
      </div>
    </>
  );
}
