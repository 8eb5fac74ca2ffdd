// /training: the user's training jobs with status, progress and final loss; filters by status, method and backend.
import { Link, useNavigate, useSearchParams } from "react-router-dom";
import { errorMessage } from "../../api/client";
import { isActive, useJobs, useModelsByJob } from "../../api/training";
import type { FineTunedModelInfo, TrainingJob } from "../../api/types";
import { Icon } from "../../components/Icon";
import { Banner, Button, Card, EmptyState, PageHeader, Spinner } from "../../components/ui";
import { JobProgress, JobStatusBadge } from "../../components/training/JobBits";
import { METHOD_LABEL, STATUS_LABEL, WEIGHTS_LABEL } from "../../components/training/labels";
import { formatFloat, formatNumber, formatRelative } from "../../lib/format";

const FILTERS = {
  status: { label: "Status", options: Object.entries(STATUS_LABEL) },
  method: { label: "Method", options: Object.entries(METHOD_LABEL) },
  backend: {
    label: "Backend",
    options: [
      ["local", "Local"],
      ["modal", "Modal"],
    ],
  },
} as const;

type FilterKey = keyof typeof FILTERS;

function NewJobLink() {
  return (
    <Link to="/training/new" className="btn btn--primary btn--md tr-link-btn">
      <Icon name="plus" size={16} />
      <span>New training job</span>
    </Link>
  );
}

/** The run's final training loss: job.result when the API sends it, else the produced model's metrics. */
function finalLoss(job: TrainingJob, model: FineTunedModelInfo | undefined): number | null {
  const metrics = (job.result?.metrics ?? model?.metrics ?? {}) as Record<string, unknown>;
  for (const key of ["train_loss_last", "train_loss", "loss"]) {
    const value = metrics[key];
    if (typeof value === "number" && Number.isFinite(value)) return value;
  }
  return null;
}

/** The sweep a job is a variant of (the `sweep` field of the job API; see api/sweeps.ts). */
function sweepOf(job: TrainingJob): number | null {
  return (job as TrainingJob & { sweep?: number | null }).sweep ?? null;
}

function JobRow({ job, model }: { job: TrainingJob; model: FineTunedModelInfo | undefined }) {
  const navigate = useNavigate();
  const href = `/training/jobs/${job.id}`;
  const loss = finalLoss(job, model);
  const evalLoss = (job.result?.metrics ?? model?.metrics ?? {})["eval_loss_after"];
  return (
    <tr
      className="tr-row"
      data-testid="job-row"
      data-status={job.status}
      onClick={(e) => {
        if (!(e.target as HTMLElement).closest("a, button")) navigate(href);
      }}
    >
      <td className="strong tr-name-cell">
        <Link to={href} className="tr-name-link">
          {job.name}
        </Link>
        <span className="tr-sub">
          #{job.id}
          {job.backend === "modal" ? ` · Modal ${job.modal_gpu}` : " · Local"}
          {sweepOf(job) !== null && (
            <>
              {" · "}
              <Link to={`/training/sweeps/${sweepOf(job)}`} data-testid="job-sweep-link">
                sweep #{sweepOf(job)}
              </Link>
            </>
          )}
        </span>
      </td>
      <td>
        <JobStatusBadge status={job.status} />
      </td>
      <td>
        <span className="tr-method">
          {METHOD_LABEL[job.method] ?? job.method}
          <span className="tr-method__weights">{WEIGHTS_LABEL[job.weights] ?? job.weights}</span>
        </span>
      </td>
      <td className="tr-ellipsis" title={`${job.base_model_name} on ${job.dataset_name} v${job.dataset_version}`}>
        <span className="tr-cell-main">{job.base_model_name}</span>
        <span className="tr-sub">
          {job.dataset_name} <span className="tr-version">v{job.dataset_version}</span>
        </span>
      </td>
      <td className="tr-progress-cell">
        {isActive(job.status) || job.status === "failed" || job.status === "cancelled" ? (
          <JobProgress progress={job.progress} status={job.status} etaS={job.eta_s} compact />
        ) : job.status === "succeeded" ? (
          <span className="muted small">{formatNumber(job.total_steps || job.current_step)} steps</span>
        ) : (
          <span className="muted">—</span>
        )}
      </td>
      <td title={new Date(job.created).toLocaleString()}>{formatRelative(job.created)}</td>
      <td className="num">
        {loss !== null ? (
          <span title={typeof evalLoss === "number" ? `eval loss ${formatFloat(evalLoss)}` : undefined}>{formatFloat(loss)}</span>
        ) : (
          <span className="muted">—</span>
        )}
      </td>
    </tr>
  );
}

export default function TrainingListPage() {
  const [params, setParams] = useSearchParams();
  const filters = {
    status: params.get("status") ?? "",
    method: params.get("method") ?? "",
    backend: params.get("backend") ?? "",
    page: Number(params.get("page") ?? "1") || 1,
  };
  const jobs = useJobs(filters);
  const page = jobs.data;
  const anySucceeded = !!page?.results.some((j) => j.status === "succeeded" && !j.result);
  const models = useModelsByJob(anySucceeded);
  const filtered = !!(filters.status || filters.method || filters.backend);

  const setFilter = (key: FilterKey | "page", value: string) => {
    const next = new URLSearchParams(params);
    if (value) next.set(key, value);
    else next.delete(key);
    if (key !== "page") next.delete("page");
    setParams(next, { replace: true });
  };

  const noJobsAtAll = page && page.count === 0 && !filtered;

  return (
    <>
      <PageHeader
        title="Training"
        description="Fine-tuning runs: queued, running and finished."
        actions={noJobsAtAll ? undefined : <NewJobLink />}
      />
      <Card>
        {!noJobsAtAll && (
          <div className="tr-filters" role="group" aria-label="Filter jobs">
            {(Object.keys(FILTERS) as FilterKey[]).map((key) => (
              <label key={key} className="tr-filter">
                <span className="tr-filter__label">{FILTERS[key].label}</span>
                <select
                  className="input tr-select tr-filter__select"
                  value={filters[key]}
                  onChange={(e) => setFilter(key, e.target.value)}
                  aria-label={`Filter by ${FILTERS[key].label.toLowerCase()}`}
                >
                  <option value="">All</option>
                  {FILTERS[key].options.map(([value, label]) => (
                    <option key={value} value={value}>
                      {label}
                    </option>
                  ))}
                </select>
              </label>
            ))}
            {filtered && (
              <Button variant="ghost" size="sm" onClick={() => setParams(new URLSearchParams(), { replace: true })}>
                Clear filters
              </Button>
            )}
            {jobs.isFetching && !jobs.isPending && <Spinner size={14} label="Refreshing" />}
          </div>
        )}
        {jobs.isPending ? (
          <div className="center-pad">
            <Spinner label="Loading training jobs" />
          </div>
        ) : jobs.isError ? (
          <Banner tone="error">{errorMessage(jobs.error)}</Banner>
        ) : noJobsAtAll ? (
          <EmptyState icon="training" title="No training jobs yet" action={<NewJobLink />}>
            Pick a base model and a ready dataset, choose SFT, DPO or ORPO with LoRA, QLoRA or full fine-tuning, and
            watch the loss live while it trains.
          </EmptyState>
        ) : page && page.results.length === 0 ? (
          <EmptyState icon="search" title="No jobs match these filters">
            Change or clear the filters to see your other jobs.
          </EmptyState>
        ) : (
          <>
            <div className="table-wrap">
              <table className="table tr-table" data-testid="jobs-table">
                <thead>
                  <tr>
                    <th scope="col">Name</th>
                    <th scope="col">Status</th>
                    <th scope="col">Method</th>
                    <th scope="col">Base model / dataset</th>
                    <th scope="col">Progress</th>
                    <th scope="col">Created</th>
                    <th scope="col" className="num">
                      Final loss
                    </th>
                  </tr>
                </thead>
                <tbody>
                  {page?.results.map((job) => (
                    <JobRow key={job.id} job={job} model={models.data?.get(job.id)} />
                  ))}
                </tbody>
              </table>
            </div>
            {page && (page.next || page.previous) && (
              <div className="tr-pager">
                <span className="muted small">{formatNumber(page.count)} jobs</span>
                <div className="tr-pager__buttons">
                  <Button size="sm" disabled={!page.previous} onClick={() => setFilter("page", String(filters.page - 1))}>
                    Previous page
                  </Button>
                  <Button size="sm" disabled={!page.next} onClick={() => setFilter("page", String(filters.page + 1))}>
                    Next page
                  </Button>
                </div>
              </div>
            )}
          </>
        )}
      </Card>
    </>
  );
}
