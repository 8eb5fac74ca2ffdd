// The job page's actions: cancel (active), resume (failed/cancelled), continue (succeeded), clone (always: the
// wizard opens with every choice of this job) and delete (finished jobs; the model it produced is kept).
import { useNavigate } from "react-router-dom";
import { ApiError, errorMessage } from "../../api/client";
import { isActive, useCancelJob, useDeleteJob, useResumeJob } from "../../api/training";
import type { TrainingJob } from "../../api/types";
import { Banner, Button } from "../ui";

export function JobActions({ job, onContinue }: { job: TrainingJob; onContinue: () => void }) {
  const navigate = useNavigate();
  const cancel = useCancelJob();
  const resume = useResumeJob();
  const remove = useDeleteJob();
  const active = isActive(job.status);
  const error = cancel.error ?? resume.error ?? remove.error;

  const onCancel = () => {
    if (!window.confirm("Cancel this training job? It stops within one step and keeps a checkpoint, so you can resume it later.")) return;
    cancel.mutate(job.id);
  };
  const onDelete = () => {
    const kept = job.model ? " The model it produced stays in Models." : "";
    if (!window.confirm(`Delete job #${job.id} "${job.name}" with its metrics, logs and checkpoints?${kept}`)) return;
    remove.mutate(job.id, { onSuccess: () => navigate("/training", { replace: true }) });
  };

  return (
    <>
      <div className="tr-job-head__actions">
        {active && (
          <Button variant="danger" icon="x" onClick={onCancel} loading={cancel.isPending} disabled={job.cancel_requested}>
            Cancel
          </Button>
        )}
        {(job.status === "failed" || job.status === "cancelled") && (
          <Button variant="primary" onClick={() => resume.mutate(job.id)} loading={resume.isPending}>
            Resume
          </Button>
        )}
        {job.status === "succeeded" && (
          <Button variant="primary" icon="plus" onClick={onContinue}>
            Continue training
          </Button>
        )}
        <Button icon="copy" onClick={() => navigate(`/training/new?clone=${job.id}`)} data-testid="job-clone" title="Open the wizard with this job's choices">
          Clone
        </Button>
        {!active && (
          <Button variant="danger" icon="x" onClick={onDelete} loading={remove.isPending} data-testid="job-delete">
            Delete
          </Button>
        )}
      </div>
      {error && (
        <Banner tone="error" title={error instanceof ApiError && error.status === 429 ? "Concurrent job limit reached" : undefined}>
          {errorMessage(error)}
        </Banner>
      )}
    </>
  );
}
