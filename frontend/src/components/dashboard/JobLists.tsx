// Running jobs with live progress (one socket per job) and the recent jobs table.
import { useCallback } from "react";
import { Link } from "react-router-dom";
import type { DashboardJob } from "../../api/dashboard";
import type { JobStatus } from "../../api/types";
import { useJobProgress } from "../../hooks/useJobProgress";
import { JobProgress, JobStatusBadge } from "../training/JobBits";
import { METHOD_LABEL, phaseLabel, WEIGHTS_LABEL } from "../training/labels";
import { formatFloat, formatRelative } from "../../lib/format";
import type { TrainingWeights } from "../../api/types";

function RunningJobRow({ job, onStatus }: { job: DashboardJob; onStatus: () => void }) {
  const handleStatus = useCallback((_status: JobStatus) => onStatus(), [onStatus]);
  const { live, state } = useJobProgress(job.id, true, handleStatus);
  const status = live.status ?? job.status;
  const total = live.totalSteps ?? job.total_steps;
  const step = live.step !== null ? Math.max(live.step, job.current_step) : job.current_step;
  const progress = total ? Math.min(1, step / total) : job.progress;
  const phase = live.phase ?? job.phase;
  return (
    <li className="db-running" data-testid="running-job" data-job-id={job.id} data-step={step} data-live-updates={live.updates}>
      <div className="db-running__head">
        <Link to={`/training/jobs/${job.id}`} className="db-running__name">
          {job.name}
        </Link>
        <JobStatusBadge status={status} />
      </div>
      <div className="db-running__meta muted small">
        {METHOD_LABEL[job.method] ?? job.method} · {WEIGHTS_LABEL[job.weights as TrainingWeights] ?? job.weights} · {job.backend}
        {phase ? ` · ${phaseLabel(phase)}` : ""}
        {live.loss !== null ? ` · loss ${formatFloat(live.loss)}` : ""}
        <span className={`db-live db-live--${state}`} title={`Live updates: ${state}`} data-testid="live-state" data-state={state}>
          {state === "open" ? "live" : state}
        </span>
      </div>
      <JobProgress
        progress={progress}
        step={step}
        total={total}
        etaS={live.etaS ?? job.eta_s}
        status={status}
        testId="running-job-progress"
      />
    </li>
  );
}

export function RunningJobs({ jobs, onStatus }: { jobs: DashboardJob[]; onStatus: () => void }) {
  return (
    <ul className="db-running-list" data-testid="running-jobs">
      {jobs.map((job) => (
        <RunningJobRow key={job.id} job={job} onStatus={onStatus} />
      ))}
    </ul>
  );
}

export function RecentJobs({ jobs }: { jobs: DashboardJob[] }) {
  return (
    <div className="table-wrap">
      <table className="table db-recent" data-testid="recent-jobs">
        <thead>
          <tr>
            <th>Job</th>
            <th>Status</th>
            <th>Method</th>
            <th>Backend</th>
            <th className="num">Final loss</th>
            <th>Created</th>
          </tr>
        </thead>
        <tbody>
          {jobs.map((job) => (
            <tr key={job.id} data-testid="recent-job" data-job-id={job.id}>
              <td>
                <Link to={`/training/jobs/${job.id}`}>{job.name}</Link>
              </td>
              <td>
                <JobStatusBadge status={job.status} />
              </td>
              <td>
                {METHOD_LABEL[job.method] ?? job.method} · {WEIGHTS_LABEL[job.weights as TrainingWeights] ?? job.weights}
              </td>
              <td>{job.backend}</td>
              <td className="num">{job.final_loss !== null ? formatFloat(job.final_loss) : "—"}</td>
              <td title={job.created}>{formatRelative(job.created)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
