// The job page's "Tracking" card: where the run's experiment tracking went (hyperparameters.report_to): the MLflow and
// W&B run links where a URL exists, and the TensorBoard event files as a download.
import type { ReactElement } from "react";
import type { TrainingJob } from "../../api/types";
import { Icon } from "../Icon";
import { Card } from "../ui";

interface TrackingResult {
  mlflow?: { url?: string | null; run_id?: string } | null;
  wandb?: { url?: string | null; mode?: string } | null;
  tensorboard_artifact?: { key: string } | null;
}

const NAMES: Record<string, string> = { tensorboard: "TensorBoard", mlflow: "MLflow", wandb: "Weights & Biases" };

export function TrackingCard({ job }: { job: TrainingJob }) {
  const reportTo = (job.hyperparameters?.report_to ?? []) as string[];
  if (!Array.isArray(reportTo) || reportTo.length === 0) return null;
  const tracking = (job.result?.tracking ?? {}) as TrackingResult;
  const finished = !!job.result;
  const links: ReactElement[] = [];
  if (tracking.mlflow?.url)
    links.push(
      <a key="mlflow" href={tracking.mlflow.url} target="_blank" rel="noreferrer" data-testid="tracking-mlflow">
        MLflow run
      </a>,
    );
  if (tracking.wandb?.url)
    links.push(
      <a key="wandb" href={tracking.wandb.url} target="_blank" rel="noreferrer" data-testid="tracking-wandb">
        W&B run
      </a>,
    );
  if (tracking.tensorboard_artifact)
    links.push(
      <a key="tb" href={`/api/training/jobs/${job.id}/tensorboard/`} download data-testid="tracking-tensorboard">
        <Icon name="download" size={14} /> TensorBoard events (.tar)
      </a>,
    );
  return (
    <Card title="Tracking" icon="activity" testId="tracking-card" description={`Reported to ${reportTo.map((n) => NAMES[n] ?? n).join(", ")}.`}>
      <p className="tr-tracking">
        {links.length > 0 ? links : <span className="muted">{finished ? "No tracking links for this run." : "Links appear when the run ends."}</span>}
      </p>
    </Card>
  );
}
