// /training/jobs/:id: one job, live. Status, progress and ETA, actions, the error, live charts, the log tail, the result.
import { useCallback, useEffect, useMemo, useState } from "react";
import { useQueryClient } from "@tanstack/react-query";
import { Link, useNavigate, useParams } from "react-router-dom";
import { ApiError, errorMessage } from "../../api/client";
import {
  isActive,
  trainingKeys,
  useContinueJob,
  useFineTunedModel,
  useJob,
} from "../../api/training";
import type { MetricPoint, TrainingJob } from "../../api/types";
import { Banner, Button, Card, EmptyState, Field, Spinner, StatusDot } from "../../components/ui";
import { LossChart, MetricChart } from "../../components/training/Charts";
import { JobActions } from "../../components/training/JobActions";
import { ReproducibilityCard } from "../../components/training/ReproducibilityCard";
import { TrackingCard } from "../../components/training/TrackingCard";
import { JobProgress, JobStatusBadge } from "../../components/training/JobBits";
import { HP_FIELDS } from "../../components/training/hyperparameters";
import { LogTail } from "../../components/training/LogTail";
import { Dialog } from "../../components/Dialog";
import { METRIC_ROWS } from "../../components/models/metrics";
import { METHOD_LABEL, phaseLabel, WEIGHTS_LABEL } from "../../components/training/labels";
import { useJobSocket, type JobSocketState, type JobStatusMessage } from "../../hooks/useJobSocket";
import { formatDateTime, formatNumber, formatUsd } from "../../lib/format";

const ERROR_HINTS: Record<string, string> = {
  oom: "The run ran out of memory. Try QLoRA, a smaller batch size or max length, or a larger GPU.",
  out_of_memory: "The run ran out of memory. Try QLoRA, a smaller batch size or max length, or a larger GPU.",
  data: "The data could not be used for this method. Check the dataset's validation report.",
  config: "A setting was refused. Start a new job with corrected hyperparameters.",
  infrastructure: "The worker was interrupted several times. Resume continues from the last checkpoint.",
  quota: "A monthly quota ran out. Resume once it resets, or ask an operator to raise it (Settings shows your usage).",
};

const HP_ORDER = new Map(HP_FIELDS.map((f, i) => [f.key as string, i]));
/** The wizard's field order first (epochs, steps, learning rate, ...), then the engine's other settings. */
function hpOrder(key: string): number {
  return HP_ORDER.get(key) ?? 1000;
}

function SocketPill({ state, active }: { state: JobSocketState; active: boolean }) {
  if (!active) return null;
  const [tone, text] =
    state === "open" ? (["ok", "Live"] as const) : state === "connecting" ? (["idle", "Connecting…"] as const) : state === "reconnecting" ? (["warn", "Reconnecting…"] as const) : (["idle", "Polling"] as const);
  return (
    <span className="pill tr-live" data-testid="job-socket" data-state={state}>
      <StatusDot tone={tone} />
      {text}
    </span>
  );
}

function lastMetric(points: MetricPoint[]): MetricPoint | undefined {
  for (let i = points.length - 1; i >= 0; i -= 1) if (points[i].kind === "metric") return points[i];
  return undefined;
}

function ContinueDialog({ job, open, onClose }: { job: TrainingJob; open: boolean; onClose: () => void }) {
  const navigate = useNavigate();
  const cont = useContinueJob();
  const [epochs, setEpochs] = useState("1");
  const value = Number(epochs);
  const invalid = !Number.isFinite(value) || value <= 0 || value > 100;
  return (
    <Dialog
      size="sm"
      open={open}
      onClose={onClose}
      title="Continue training"
      description={`A new job starts from this run's model and trains ${job.dataset_name} for more epochs, with the same settings.`}
      testId="continue-dialog"
      footer={
        <>
          <Button variant="ghost" onClick={onClose}>
            Close
          </Button>
          <Button
            variant="primary"
            loading={cont.isPending}
            disabled={invalid}
            onClick={() => cont.mutate({ id: job.id, extraEpochs: value }, { onSuccess: (next) => navigate(`/training/jobs/${next.id}`) })}
          >
            Start training
          </Button>
        </>
      }
    >
      <Field
        label="Extra epochs"
        id="extra-epochs"
        inputMode="decimal"
        value={epochs}
        onChange={(e) => setEpochs(e.target.value)}
        hint="Fractions train part of an epoch (0.5). Up to 100."
        error={epochs.trim() && invalid ? "Enter a number above 0 and at most 100." : undefined}
        autoFocus
      />
      {cont.isError && <Banner tone="error">{errorMessage(cont.error)}</Banner>}
    </Dialog>
  );
}

function ResultCard({ job }: { job: TrainingJob }) {
  const model = useFineTunedModel(job.model);
  const metrics = (job.result?.metrics ?? model.data?.metrics ?? {}) as Record<string, unknown>;
  const rows = METRIC_ROWS.filter((m) => typeof metrics[m.key] === "number");
  return (
    <Card
      title="Result"
      icon="models"
      testId="job-result"
      actions={
        job.model !== null ? (
          <Link to={`/models/${job.model}`} className="btn btn--primary btn--sm tr-link-btn" data-testid="job-model-link">
            <span>Open model</span>
          </Link>
        ) : undefined
      }
    >
      <p className="small">
        {job.model !== null ? (
          <>
            The run produced{" "}
            <Link to={`/models/${job.model}`}>
              {model.data ? `${model.data.name} v${model.data.version}` : `model #${job.model}`}
            </Link>
            . Try it in the playground, compare it with its base model, or export it.
          </>
        ) : (
          "The run finished; its model is being registered."
        )}
      </p>
      {rows.length > 0 && (
        <dl className="tr-result">
          {rows.map((m) => (
            <div key={m.key} className="tr-result__item">
              <dt>{m.label}</dt>
              <dd>{m.format(metrics[m.key] as number)}</dd>
            </div>
          ))}
        </dl>
      )}
    </Card>
  );
}

function ErrorPanel({ job }: { job: TrainingJob }) {
  const hint = ERROR_HINTS[job.error_kind] ?? null;
  return (
    <Banner tone="error" title={`The run failed${job.error_kind ? ` (${job.error_kind.replace(/_/g, " ")})` : ""}`} testId="job-error">
      <p className="tr-error-text">{job.error || "No error message was recorded."}</p>
      {hint && <p>{hint}</p>}
      <ResumeHint job={job} />
    </Banner>
  );
}

function ResumeHint({ job }: { job: TrainingJob }) {
  return (
    <p className="muted small">
      {job.last_checkpoint_step > 0
        ? `Resume restarts from the checkpoint at step ${formatNumber(job.last_checkpoint_step)}.`
        : "No checkpoint was saved: Resume starts the run again from the beginning."}
    </p>
  );
}

export default function TrainingJobPage() {
  const { id } = useParams();
  const jobId = Number(id);
  const queryClient = useQueryClient();
  const job = useJob(jobId);
  const data = job.data;
  const active = isActive(data?.status);
  const [continueOpen, setContinueOpen] = useState(false);

  const onStatus = useCallback(
    (message: JobStatusMessage) => {
      queryClient.setQueryData<TrainingJob>(trainingKeys.job(jobId), (old) =>
        old
          ? {
              ...old,
              status: (message.status as TrainingJob["status"]) || old.status,
              phase: message.phase || old.phase,
              error: typeof message.error === "string" ? message.error : old.error,
              model: typeof message.model === "number" ? message.model : old.model,
            }
          : old,
      );
      void queryClient.invalidateQueries({ queryKey: trainingKeys.job(jobId) });
      void queryClient.invalidateQueries({ queryKey: ["training", "jobs"] });
    },
    [queryClient, jobId],
  );

  const live = useJobSocket(jobId, active, onStatus);
  const { points, logs, backfill } = live;
  const heldMetric = points.length ? points[points.length - 1].seq : 0;
  const heldLog = logs.length ? logs[logs.length - 1].seq : 0;

  // The job says the server holds more than we do (e.g. pushes lost while the tab slept): fetch the rest.
  useEffect(() => {
    if (!data || !live.loaded) return;
    if ((data.metric_seq ?? 0) > heldMetric || (data.log_seq ?? 0) > heldLog) void backfill();
  }, [data?.metric_seq, data?.log_seq, heldMetric, heldLog, live.loaded, backfill]); // eslint-disable-line react-hooks/exhaustive-deps

  const latest = useMemo(() => lastMetric(points), [points]);
  const checkpointStep = Math.max(data?.last_checkpoint_step ?? 0, live.checkpointStep ?? 0);

  if (!Number.isFinite(jobId)) {
    return <EmptyState icon="training" title="Not a job">This address does not name a training job.</EmptyState>;
  }
  if (job.isPending) {
    return (
      <div className="center-pad">
        <Spinner label="Loading the job" />
      </div>
    );
  }
  if (job.isError || !data) {
    const notFound = job.error instanceof ApiError && job.error.status === 404;
    return (
      <Card>
        <EmptyState
          icon="training"
          title={notFound ? "Job not found" : "Could not load the job"}
          action={
            <Link to="/training" className="btn btn--secondary btn--md tr-link-btn">
              <span>All jobs</span>
            </Link>
          }
        >
          {notFound ? "It was deleted, or it belongs to another account." : errorMessage(job.error)}
        </EmptyState>
      </Card>
    );
  }

  const fromLive = active && !!latest && latest.step >= (data.current_step ?? 0);
  const step = fromLive ? latest!.step : data.current_step;
  const total = (fromLive && typeof latest!.total_steps === "number" ? latest!.total_steps : 0) || data.total_steps;
  const progress = data.status === "succeeded" ? 1 : total ? Math.min(1, step / total) : data.progress;
  const eta = fromLive && latest!.eta_s !== null && latest!.eta_s !== undefined ? latest!.eta_s : data.eta_s;

  return (
    <>
      <nav className="tr-crumbs" aria-label="Breadcrumb">
        <Link to="/training">Training</Link>
        <span aria-hidden="true">/</span>
        <span>Job #{data.id}</span>
      </nav>
      <div className="tr-job-head">
        <div className="tr-job-head__main">
          <div className="tr-job-head__title-row">
            <h1 className="tr-job-head__title">{data.name}</h1>
            <JobStatusBadge status={data.status} testId="job-status" />
            {data.phase && active && (
              <span className="pill tr-phase" data-testid="job-phase">
                {phaseLabel(data.phase)}
              </span>
            )}
            <SocketPill state={live.state} active={active} />
          </div>
          <dl className="tr-job-meta">
            <div>
              <dt>Method</dt>
              <dd>
                {METHOD_LABEL[data.method] ?? data.method} · {WEIGHTS_LABEL[data.weights] ?? data.weights}
              </dd>
            </div>
            <div>
              <dt>Base model</dt>
              <dd>{data.base_model_name}</dd>
            </div>
            <div>
              <dt>Dataset</dt>
              <dd>
                <Link to={`/datasets/${data.dataset}`}>
                  {data.dataset_name} v{data.dataset_version}
                </Link>
              </dd>
            </div>
            <div>
              <dt>Backend</dt>
              <dd>
                {data.backend === "modal" ? `Modal ${data.modal_gpu}` : "Local"}
                {data.backend === "modal" && typeof data.cost_usd === "number" ? ` · ${formatUsd(data.cost_usd)}` : ""}
              </dd>
            </div>
            <div>
              <dt>Attempts</dt>
              <dd data-testid="job-attempts">{data.attempts}</dd>
            </div>
            <div>
              <dt>Checkpoint</dt>
              <dd>{checkpointStep > 0 ? `step ${formatNumber(checkpointStep)}` : "—"}</dd>
            </div>
            <div>
              <dt>Created</dt>
              <dd>{formatDateTime(data.created)}</dd>
            </div>
            {data.finished && (
              <div>
                <dt>Finished</dt>
                <dd>{formatDateTime(data.finished)}</dd>
              </div>
            )}
            {(data as typeof data & { sweep?: number | null }).sweep && (
              <div>
                <dt>Sweep</dt>
                <dd>
                  <Link to={`/training/sweeps/${(data as typeof data & { sweep?: number }).sweep}`} data-testid="job-sweep-link">
                    sweep #{(data as typeof data & { sweep?: number }).sweep}
                  </Link>
                </dd>
              </div>
            )}
            {data.init_from_job && (
              <div>
                <dt>Continues</dt>
                <dd>
                  <Link to={`/training/jobs/${data.init_from_job}`}>job #{data.init_from_job}</Link>
                </dd>
              </div>
            )}
          </dl>
        </div>
        <JobActions job={data} onContinue={() => setContinueOpen(true)} />
      </div>

      {data.cancel_requested && active && (
        <Banner tone="info">Cancelling: the run stops within one step and saves a checkpoint.</Banner>
      )}
      {data.status === "recovering" && (
        <Banner tone="warning">The worker running this job stopped. It is queued again and will resume from its last checkpoint.</Banner>
      )}
      {data.status === "failed" && <ErrorPanel job={data} />}
      {data.status === "cancelled" && data.error_kind === "quota" && (
        <Banner tone="warning" title="Stopped by quota" testId="job-quota-stop">
          <p className="tr-error-text">{data.error}</p>
          <ResumeHint job={data} />
        </Banner>
      )}

      <div className="tr-job-grid">
        <Card className="tr-progress-card">
          <JobProgress progress={progress} step={step} total={total} etaS={eta} status={data.status} testId="job-progress" />
          {data.status === "queued" && <p className="muted small">Waiting for a training worker to pick the job up.</p>}
          {data.status === "waiting" && (
            <p className="muted small" data-testid="job-waiting-note">
              A sweep variant waiting for one of your concurrent-job slots: it is queued as soon as one of your running jobs finishes.
            </p>
          )}
        </Card>

        {data.status === "succeeded" && <ResultCard job={data} />}

        <Card title="Metrics" icon="activity" testId="job-charts" description={active ? "Streamed live while the run trains; x axis is the optimizer step." : "x axis is the optimizer step."}>
          {live.backfillError && <Banner tone="warning">Some metric points could not be loaded: {live.backfillError}. Retrying.</Banner>}
          {!live.loaded ? (
            <div className="center-pad">
              <Spinner label="Loading metrics" />
            </div>
          ) : (
            <>
              <LossChart points={points} />
              <div className="tr-charts-grid">
                <MetricChart points={points} metric="learning_rate" />
                <MetricChart points={points} metric="grad_norm" />
                <MetricChart points={points} metric="memory_mb" />
                <MetricChart points={points} metric="tokens_per_s" />
              </div>
            </>
          )}
        </Card>

        <Card title="Log" icon="send" description={active ? "Newest at the bottom; follows new lines while you are at the bottom." : undefined}>
          <LogTail logs={logs} live={active} />
        </Card>

        <Card title="Hyperparameters" icon="settings">
          <dl className="tr-hp-list tr-hp-list--wide">
            {Object.entries(data.hyperparameters ?? {})
              .sort(([a], [b]) => hpOrder(a) - hpOrder(b) || a.localeCompare(b))
              .filter(([, v]) => v !== null && v !== undefined && (typeof v !== "object" || Array.isArray(v)))
              .map(([k, v]) => (
                <div key={k}>
                  <dt>{k}</dt>
                  <dd>{Array.isArray(v) ? v.join(", ") : String(v)}</dd>
                </div>
              ))}
          </dl>
        </Card>

        <TrackingCard job={data} />
        <ReproducibilityCard job={data} />
      </div>

      {data.status === "succeeded" && <ContinueDialog job={data} open={continueOpen} onClose={() => setContinueOpen(false)} />}
    </>
  );
}

