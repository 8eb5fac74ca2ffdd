// What it takes to train the same job again: the exact inputs (base model, dataset version and its SHA-256), the full
// configuration (every hyperparameter with the engine's defaults filled in, seed and chat template included) and the
// package versions the run used. The config can be copied as JSON (the API's job body).
import { useState } from "react";
import { useJob } from "../../api/training";
import type { TrainingJob } from "../../api/types";
import { Button, Card } from "../ui";

export function reproducibleConfig(job: TrainingJob): Record<string, unknown> {
  return {
    name: job.name,
    base_model: job.base_model,
    dataset: job.dataset,
    dataset_version: job.dataset_version,
    method: job.method,
    weights: job.weights,
    backend: job.backend,
    ...(job.backend === "modal" ? { modal_gpu: job.modal_gpu } : {}),
    hyperparameters: job.hyperparameters,
  };
}

/** The card for a model: its training job's record (nothing when the model came from elsewhere). */
export function ModelReproducibility({ jobId }: { jobId: number | null }) {
  const job = useJob(jobId ?? 0, { enabled: !!jobId });
  return job.data ? <ReproducibilityCard job={job.data} /> : null;
}

export function ReproducibilityCard({ job }: { job: TrainingJob }) {
  const [copied, setCopied] = useState(false);
  const config = JSON.stringify(reproducibleConfig(job), null, 2);
  const versions = Object.entries(job.versions ?? {}).sort(([a], [b]) => a.localeCompare(b));
  const hp = job.hyperparameters ?? {};
  const copy = () => {
    void navigator.clipboard?.writeText(config).then(() => setCopied(true));
  };
  return (
    <Card title="Reproducibility" icon="lock" testId="reproducibility-card" description="Everything needed to train this job again and get the same run.">
      <dl className="tr-repro__facts" data-testid="reproducibility-facts">
        <div>
          <dt>Base model</dt>
          <dd>{job.base_model_name}</dd>
        </div>
        <div>
          <dt>Dataset</dt>
          <dd>
            {job.dataset_name} v{job.dataset_version}
          </dd>
        </div>
        <div>
          <dt>Dataset SHA-256</dt>
          <dd className="mono" title={job.dataset_sha256}>
            {job.dataset_sha256 ? `${job.dataset_sha256.slice(0, 16)}…` : "—"}
          </dd>
        </div>
        <div>
          <dt>Seed</dt>
          <dd>{String(hp.seed ?? 42)}</dd>
        </div>
        <div>
          <dt>Chat template</dt>
          <dd>{hp.chat_template ? String(hp.chat_template) : "the model's own (saved with the model)"}</dd>
        </div>
      </dl>
      <details className="tr-repro">
        <summary>Full configuration (JSON, the job API's body)</summary>
        <pre className="tr-repro__config" data-testid="reproducibility-config">{config}</pre>
        <Button size="sm" icon="copy" onClick={copy}>
          {copied ? "Copied" : "Copy"}
        </Button>
      </details>
      <details className="tr-repro">
        <summary>Package versions ({versions.length || "recorded when the run starts"})</summary>
        {versions.length > 0 && (
          <table className="tr-repro__versions" data-testid="reproducibility-versions">
            <tbody>
              {versions.map(([name, version]) => (
                <tr key={name}>
                  <td className="mono">{name}</td>
                  <td className="mono">{version}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </details>
    </Card>
  );
}
