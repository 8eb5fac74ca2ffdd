// /models/:id: one fine-tuned model version. Header with actions (playground, compare, Push to Hugging Face,
// Import to Ollama, delete), versions of the same name, tag and notes, final metrics, exports and the history of
// pushes and Ollama imports.
import { useEffect, useState, type FormEvent } from "react";
import { Link, useNavigate, useParams } from "react-router-dom";
import { ApiError, errorMessage } from "../../api/client";
import {
  finalLoss,
  isLatest,
  useDeleteModel,
  useModel,
  useModelVersions,
  useOllamaImports,
  usePushes,
  useUpdateModel,
  type FineTunedModel,
} from "../../api/models";
import type { MetricPoint } from "../../api/types";
import { Icon } from "../../components/Icon";
import { EvaluationCard } from "../../components/models/EvaluationCard";
import { ExportsCard } from "../../components/models/ExportsCard";
import { OllamaDialog } from "../../components/models/OllamaDialog";
import { PushHubDialog } from "../../components/models/PushHubDialog";
import { CommandLine, LatestBadge, TaskProgress, TaskStatusBadge } from "../../components/models/TaskBits";
import { LossChart } from "../../components/training/Charts";
import { Dialog } from "../../components/Dialog";
import { METRIC_ROWS } from "../../components/models/metrics";
import { METHOD_LABEL, WEIGHTS_LABEL } from "../../components/training/labels";
import { Banner, Button, Card, EmptyState, Field, Spinner } from "../../components/ui";
import { mergeLive, useTaskFeed, type LiveTask } from "../../hooks/useTaskFeed";
import { formatDateTime, formatFloat, formatRelative } from "../../lib/format";
import "../../styles/models.css";
import { ModelReproducibility } from "../../components/training/ReproducibilityCard";


function methodText(model: FineTunedModel): string {
  const method = METHOD_LABEL[model.method as keyof typeof METHOD_LABEL] ?? model.method;
  const weights = WEIGHTS_LABEL[model.weights as keyof typeof WEIGHTS_LABEL] ?? model.weights;
  return `${method} · ${weights}`;
}

function VersionsCard({ model }: { model: FineTunedModel }) {
  const versions = useModelVersions(model.id);
  const list = versions.data ?? [];
  return (
    <Card title="Versions" icon="models" testId="versions-card" description={`Every model trained under the name “${model.name}”.`}>
      {versions.isPending ? (
        <Spinner label="Loading versions" />
      ) : versions.isError ? (
        <Banner tone="error">{errorMessage(versions.error)}</Banner>
      ) : (
        <div className="table-wrap">
          <table className="table md-table md-versions" data-testid="versions-table">
            <thead>
              <tr>
                <th scope="col">Version</th>
                <th scope="col">Tag</th>
                <th scope="col" className="num">
                  Loss
                </th>
                <th scope="col" className="table__actions">
                  <span className="sr-only">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {list.map((v) => {
                const loss = finalLoss(v);
                const current = v.id === model.id;
                return (
                  <tr key={v.id} data-testid="version-row" className={current ? "md-current" : undefined}>
                    <td className="strong">
                      <span className="md-version-cell">
                        {current ? <span>v{v.version}</span> : <Link to={`/models/${v.id}`}>v{v.version}</Link>}
                        {isLatest(v) && <LatestBadge />}
                      </span>
                    </td>
                    <td className="md-ellipsis" title={`Created ${new Date(v.created).toLocaleString()}`}>
                      {v.tag || <span className="muted">—</span>}
                    </td>
                    <td className="num">{loss !== null ? formatFloat(loss) : "—"}</td>
                    <td className="table__actions">
                      {!current && (
                        <Link className="btn btn--ghost btn--sm tr-link-btn" to={`/models/compare?a=${v.id}&b=${model.id}`}>
                          <span>Compare</span>
                        </Link>
                      )}
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      )}
    </Card>
  );
}

function TagNotesCard({ model }: { model: FineTunedModel }) {
  const update = useUpdateModel(model.id);
  const [tag, setTag] = useState(model.tag);
  const [notes, setNotes] = useState(model.notes);
  useEffect(() => {
    setTag(model.tag);
    setNotes(model.notes);
  }, [model.id, model.tag, model.notes]);
  const dirty = tag !== model.tag || notes !== model.notes;
  const fieldError = (name: string) => (update.error instanceof ApiError ? update.error.field(name) : undefined);
  const submit = (event: FormEvent) => {
    event.preventDefault();
    update.mutate({ tag: tag.trim(), notes });
  };
  return (
    <Card title="Tag and notes" testId="tag-notes-card">
      <form className="md-form" onSubmit={submit}>
        <Field label="Tag" id="model-tag" value={tag} maxLength={100} onChange={(e) => setTag(e.target.value)} placeholder="e.g. production, baseline" error={fieldError("tag")} />
        <div className={`field${fieldError("notes") ? " field--invalid" : ""}`}>
          <label htmlFor="model-notes" className="field__label">
            Notes
          </label>
          <textarea id="model-notes" className="input md-textarea" rows={4} value={notes} onChange={(e) => setNotes(e.target.value)} placeholder="What changed in this version, what it is good at…" />
          {fieldError("notes") && <p className="field__error">{fieldError("notes")}</p>}
        </div>
        <div className="md-form__actions">
          {update.isSuccess && !dirty && <span className="muted small" data-testid="tag-notes-saved">Saved</span>}
          <Button type="submit" variant="primary" size="sm" disabled={!dirty} loading={update.isPending}>
            Save
          </Button>
        </div>
        {update.isError && !fieldError("tag") && !fieldError("notes") && <Banner tone="error">{errorMessage(update.error)}</Banner>}
      </form>
    </Card>
  );
}

function MetricsCard({ model }: { model: FineTunedModel }) {
  const metrics = model.metrics ?? {};
  const rows = METRIC_ROWS.filter((m) => typeof metrics[m.key] === "number");
  const hp = Object.entries(model.hyperparameters ?? {}).filter(([, v]) => v !== null && v !== undefined && v !== "");
  const curve = (model.loss_curve ?? []) as unknown as MetricPoint[];
  return (
    <Card title="Training result" icon="training" testId="metrics-card">
      {curve.length > 0 && (
        <div className="md-model-curve">
          <LossChart points={curve} height={200} />
        </div>
      )}
      {rows.length > 0 ? (
        <dl className="tr-result">
          {rows.map((m) => (
            <div key={m.key} className="tr-result__item">
              <dt>{m.label}</dt>
              <dd>{m.format(metrics[m.key] as number)}</dd>
            </div>
          ))}
        </dl>
      ) : (
        <p className="muted small">No metrics were recorded for this model.</p>
      )}
      {hp.length > 0 && (
        <details className="md-details">
          <summary>Hyperparameters ({hp.length})</summary>
          <dl className="md-kv">
            {hp.map(([key, value]) => (
              <div key={key}>
                <dt className="mono">{key}</dt>
                <dd>{typeof value === "object" ? JSON.stringify(value) : String(value)}</dd>
              </div>
            ))}
          </dl>
        </details>
      )}
    </Card>
  );
}

function SharingCard({ model, live }: { model: FineTunedModel; live: (kind: string, id: number) => LiveTask | undefined }) {
  const pushes = usePushes(model.id);
  const imports = useOllamaImports(model.id);
  const pushRows = pushes.data ?? [];
  const importRows = imports.data ?? [];
  if (!pushRows.length && !importRows.length) return null;
  return (
    <Card title="Shared" icon="send" testId="sharing-card" description="Pushes to the Hugging Face Hub and imports into Ollama.">
      <ul className="md-history">
        {pushRows.map((raw) => {
          const p = mergeLive({ ...raw, progress: raw.progress ?? 0 }, live("push", raw.id));
          return (
            <li key={`push-${p.id}`} className="md-history__item" data-testid="push-history-row" data-status={p.status}>
              <Icon name="hf" size={16} className="md-history__icon" />
              <div className="md-history__body">
                <div className="md-history__head">
                  <span className="strong mono md-break">{p.repo_id || p.repo_name || "Hugging Face"}</span>
                  <TaskStatusBadge status={p.status} />
                  {p.created && <span className="muted small">{formatRelative(p.created)}</span>}
                </div>
                {(p.status === "queued" || p.status === "running") && <TaskProgress progress={p.progress} status={p.status} stage={p.stage} label="Push progress" />}
                {p.status === "succeeded" && p.repo_url && (
                  <a href={p.repo_url} target="_blank" rel="noreferrer" className="small md-break">
                    {p.repo_url}
                  </a>
                )}
                {p.status === "failed" && <p className="md-error-text small">{p.error}</p>}
              </div>
            </li>
          );
        })}
        {importRows.map((raw) => {
          const o = mergeLive({ ...raw, progress: raw.progress ?? 0 }, live("ollama", raw.id));
          return (
            <li key={`ollama-${o.id}`} className="md-history__item" data-testid="ollama-history-row" data-status={o.status}>
              <Icon name="models" size={16} className="md-history__icon" />
              <div className="md-history__body">
                <div className="md-history__head">
                  <span className="strong mono">Ollama · {o.ollama_name}</span>
                  <TaskStatusBadge status={o.status} />
                  {o.created && <span className="muted small">{formatRelative(o.created)}</span>}
                </div>
                {(o.status === "queued" || o.status === "running") && <TaskProgress progress={o.progress} status={o.status} stage={o.stage} label="Import progress" />}
                {o.status === "succeeded" && <CommandLine command={o.run_command || `ollama run ${o.ollama_name}`} />}
                {o.status === "failed" && <p className="md-error-text small">{o.error}</p>}
              </div>
            </li>
          );
        })}
      </ul>
    </Card>
  );
}

function DeleteDialog({ model, open, onClose }: { model: FineTunedModel; open: boolean; onClose: () => void }) {
  const navigate = useNavigate();
  const remove = useDeleteModel();
  return (
    <Dialog
      size="sm"
      open={open}
      onClose={onClose}
      title={`Delete ${model.name} v${model.version}?`}
      description="The model's weights, its exports and their download links are deleted for good. Copies already pushed to Hugging Face or imported into Ollama stay where they are."
      testId="delete-dialog"
      footer={
        <>
          <Button variant="ghost" onClick={onClose}>
            Keep it
          </Button>
          <Button variant="danger" loading={remove.isPending} onClick={() => remove.mutate(model.id, { onSuccess: () => navigate("/models", { replace: true }) })} data-testid="delete-confirm">
            Delete model
          </Button>
        </>
      }
    >
      {remove.isError ? <Banner tone="error">{errorMessage(remove.error)}</Banner> : <p className="small">This cannot be undone.</p>}
    </Dialog>
  );
}

export default function ModelDetailPage() {
  const { id } = useParams();
  const modelId = Number(id);
  const model = useModel(modelId);
  const feed = useTaskFeed(modelId);
  const [dialog, setDialog] = useState<"push" | "ollama" | "delete" | null>(null);

  if (!Number.isFinite(modelId)) {
    return <EmptyState icon="models" title="Not a model">This address does not name a model.</EmptyState>;
  }
  if (model.isPending) {
    return (
      <div className="center-pad">
        <Spinner label="Loading the model" />
      </div>
    );
  }
  if (model.isError || !model.data) {
    const notFound = model.error instanceof ApiError && model.error.status === 404;
    return (
      <Card>
        <EmptyState
          icon="models"
          title={notFound ? "Model not found" : "Could not load the model"}
          action={
            <Link to="/models" className="btn btn--secondary btn--md tr-link-btn">
              <span>All models</span>
            </Link>
          }
        >
          {notFound ? "It was deleted, or it belongs to another account." : errorMessage(model.error)}
        </EmptyState>
      </Card>
    );
  }
  const data = model.data;
  const loss = finalLoss(data);
  return (
    <>
      <nav className="tr-crumbs" aria-label="Breadcrumb">
        <Link to="/models">Models</Link>
        <span aria-hidden="true">/</span>
        <span>
          {data.name} v{data.version}
        </span>
      </nav>
      <div className="tr-job-head md-head">
        <div className="tr-job-head__main">
          <div className="tr-job-head__title-row">
            <h1 className="tr-job-head__title" data-testid="model-name">
              {data.name}
            </h1>
            <span className="tr-badge tr-badge--neutral" data-testid="model-version">
              v{data.version}
            </span>
            {isLatest(data) && <LatestBadge />}
            {data.tag && <span className="tr-badge tr-badge--info">{data.tag}</span>}
          </div>
          <dl className="tr-job-meta">
            <div>
              <dt>Base model</dt>
              <dd>{data.base_model_name}</dd>
            </div>
            <div>
              <dt>Method</dt>
              <dd>{methodText(data)}</dd>
            </div>
            {data.dataset_name && (
              <div>
                <dt>Dataset</dt>
                <dd>
                  {data.dataset ? <Link to={`/datasets/${data.dataset}`}>{data.dataset_name}{data.dataset_version ? ` v${data.dataset_version}` : ""}</Link> : data.dataset_name}
                </dd>
              </div>
            )}
            {data.job !== null && (
              <div>
                <dt>Training job</dt>
                <dd>
                  <Link to={`/training/jobs/${data.job}`}>#{data.job}</Link>
                </dd>
              </div>
            )}
            <div>
              <dt>Final loss</dt>
              <dd>{loss !== null ? formatFloat(loss) : "—"}</dd>
            </div>
            <div>
              <dt>Created</dt>
              <dd>{formatDateTime(data.created)}</dd>
            </div>
          </dl>
          {data.notes && <p className="md-notes">{data.notes}</p>}
        </div>
        <div className="tr-job-head__actions md-head__actions">
          <Link to={`/playground?model=${data.id}`} className="btn btn--primary btn--md tr-link-btn" data-testid="open-playground">
            <Icon name="spark" size={16} />
            <span>Playground</span>
          </Link>
          <Button icon="hf" onClick={() => setDialog("push")} data-testid="push-hub-button">
            Push to Hugging Face
          </Button>
          <Button icon="upload" onClick={() => setDialog("ollama")} data-testid="ollama-button">
            Import to Ollama
          </Button>
          <Button variant="danger" icon="x" onClick={() => setDialog("delete")} data-testid="delete-model">
            Delete
          </Button>
        </div>
      </div>

      <div className="md-detail-grid">
        <div className="md-detail-grid__main">
          <ExportsCard model={data} live={feed.lookup} />
          <SharingCard model={data} live={feed.lookup} />
          <MetricsCard model={data} />
          <EvaluationCard model={data} />
          <ModelReproducibility jobId={data.job} />
        </div>
        <div className="md-detail-grid__side">
          <VersionsCard model={data} />
          <TagNotesCard model={data} />
        </div>
      </div>

      <PushHubDialog model={data} open={dialog === "push"} onClose={() => setDialog(null)} live={feed.lookup} />
      <OllamaDialog model={data} open={dialog === "ollama"} onClose={() => setDialog(null)} live={feed.lookup} />
      <DeleteDialog model={data} open={dialog === "delete"} onClose={() => setDialog(null)} />
    </>
  );
}
