// /datasets/:id: header with actions and versions, live progress while processing, then the report, a preview
// of the rendered rows and statistics; an invalid dataset also gets a form to fix its format or column mapping.
import { useEffect, useRef, useState, type KeyboardEvent } from "react";
import { Link, useNavigate, useParams, useSearchParams } from "react-router-dom";
import { useQueryClient } from "@tanstack/react-query";
import { ApiError, errorMessage } from "../../api/client";
import {
  datasetKeys,
  downloadUrl,
  isBusy,
  useDataset,
  useDatasetReport,
  useDatasetVersions,
  useDeleteDataset,
  useUpdateDataset,
  useValidateDataset,
} from "../../api/datasets";
import type { Dataset, DatasetStatus, TaskMessage } from "../../api/types";
import { Banner, Button, Card, EmptyState, Spinner } from "../../components/ui";
import { InlineProgress, StatusBadge, VerdictBadge } from "../../components/datasets/Badges";
import { InvalidPanel } from "../../components/datasets/InvalidPanel";
import { PreprocessDialog } from "../../components/datasets/PreprocessDialog";
import { PreviewTab } from "../../components/datasets/PreviewTab";
import { ReportView } from "../../components/datasets/ReportView";
import { SplitDialog } from "../../components/datasets/SplitDialog";
import { StatisticsTab } from "../../components/datasets/StatisticsTab";
import { formatLabel } from "../../components/datasets/labels";
import { useNotificationsSocket } from "../../hooks/useNotificationsSocket";
import { formatBytes, formatDate, formatNumber, toPercent } from "../../lib/format";

const TABS = [
  { id: "report", label: "Report" },
  { id: "preview", label: "Preview" },
  { id: "statistics", label: "Statistics" },
] as const;
type TabId = (typeof TABS)[number]["id"];

const STATUSES: DatasetStatus[] = ["uploaded", "processing", "ready", "invalid"];

function InlineName({ dataset }: { dataset: Dataset }) {
  const update = useUpdateDataset(dataset.id);
  const [editing, setEditing] = useState(false);
  const [value, setValue] = useState(dataset.name);
  const inputRef = useRef<HTMLInputElement>(null);

  useEffect(() => {
    if (editing) inputRef.current?.select();
  }, [editing]);

  const start = () => {
    setValue(dataset.name);
    update.reset();
    setEditing(true);
  };
  const save = () => {
    const name = value.trim();
    if (!name || name === dataset.name) {
      setEditing(false);
      return;
    }
    update.mutate({ name }, { onSuccess: () => setEditing(false) });
  };
  const onKey = (event: KeyboardEvent) => {
    if (event.key === "Enter") {
      event.preventDefault();
      save();
    } else if (event.key === "Escape") {
      event.preventDefault();
      setEditing(false);
    }
  };

  if (!editing) {
    return (
      <div className="ds-title">
        <h1 className="page-header__title" data-testid="dataset-name">
          {dataset.name}
        </h1>
        <button type="button" className="btn btn--ghost btn--sm ds-title__edit" onClick={start} aria-label="Rename dataset" title="Rename">
          <svg width="15" height="15" viewBox="0 0 24 24" fill="none" stroke="currentColor" strokeWidth="1.75" strokeLinecap="round" strokeLinejoin="round" aria-hidden="true">
            <path d="M12 20h9M16.5 3.5a2.1 2.1 0 013 3L7 19l-4 1 1-4 12.5-12.5z" />
          </svg>
        </button>
      </div>
    );
  }
  return (
    <div className="ds-title ds-title--editing">
      <div className="ds-title__form">
        <label htmlFor="dataset-name-input" className="sr-only">
          Dataset name
        </label>
        <input
          id="dataset-name-input"
          ref={inputRef}
          className="input ds-title__input"
          value={value}
          maxLength={200}
          onChange={(e) => setValue(e.target.value)}
          onKeyDown={onKey}
          aria-invalid={update.isError || undefined}
        />
        <Button size="sm" variant="primary" onClick={save} loading={update.isPending}>
          Save name
        </Button>
        <Button size="sm" variant="ghost" onClick={() => setEditing(false)} disabled={update.isPending}>
          Cancel
        </Button>
      </div>
      {update.isError && <p className="field__error">{errorMessage(update.error)}</p>}
    </div>
  );
}

function VersionSelect({ dataset }: { dataset: Dataset }) {
  const navigate = useNavigate();
  const versions = useDatasetVersions(dataset.id);
  const list = versions.data ?? [dataset];
  return (
    <label className="ds-version-select">
      <span className="ds-version-select__label">Version</span>
      <select
        className="input ds-select ds-input-sm"
        value={dataset.id}
        disabled={list.length < 2}
        onChange={(e) => navigate(`/datasets/${e.target.value}`)}
        data-testid="version-select"
      >
        {list.map((v) => (
          <option key={v.id} value={v.id}>
            v{v.version} · {v.operation?.type || "upload"}
            {v.is_latest ? " (latest)" : ""} · {formatDate(v.created)}
          </option>
        ))}
      </select>
    </label>
  );
}

function Origin({ dataset }: { dataset: Dataset }) {
  const versions = useDatasetVersions(dataset.id);
  const op = dataset.operation;
  if (!op?.type || op.type === "upload" || !dataset.parent_id) return null;
  const parent = versions.data?.find((v) => v.id === dataset.parent_id);
  const steps = op.type === "preprocess" ? op.steps?.map((s) => s.op).join(" → ") : "";
  return (
    <p className="ds-origin">
      {op.type === "split" ? "Split" : "Preprocessed"} from{" "}
      <Link to={`/datasets/${dataset.parent_id}`}>{parent ? `v${parent.version}` : "the previous version"}</Link>
      {steps ? (
        <>
          {" "}
          with <span className="mono">{steps}</span>
        </>
      ) : null}
    </p>
  );
}

function Meta({ dataset }: { dataset: Dataset }) {
  return (
    <div className="ds-meta">
      {dataset.format ? <span>{formatLabel(dataset.format)}</span> : isBusy(dataset.status) && <span>Detecting the format…</span>}
      {dataset.row_count != null && !isBusy(dataset.status) && <span>{formatNumber(dataset.row_count)} rows</span>}
      <span>{formatBytes(dataset.size_bytes)}</span>
      <span>Created {formatDate(dataset.created, true)}</span>
    </div>
  );
}

function Files({ dataset }: { dataset: Dataset }) {
  if (!dataset.files?.length) return null;
  return (
    <ul className="ds-chips" aria-label="Files">
      {dataset.files.map((f) => (
        <li key={f.id} className="ds-chip" title={f.sha256 ? `sha256 ${f.sha256}` : undefined}>
          {f.role !== "source" && <span className={`ds-chip__role ds-chip__role--${f.role}`}>{f.role}</span>}
          <span className="mono">{f.original_filename}</span>
          <span className="muted">{formatBytes(f.size_bytes)}</span>
        </li>
      ))}
    </ul>
  );
}

function Processing({ dataset }: { dataset: Dataset }) {
  const pct = toPercent(dataset.progress);
  const waiting = dataset.status === "uploaded" && !pct;
  return (
    <Card testId="processing" className="ds-processing">
      <div className="ds-processing__body">
        <Spinner size={20} />
        <div className="grow">
          <div className="ds-processing__title">
            {waiting ? "Waiting for a worker to pick up the dataset…" : "Validating the dataset…"}
          </div>
          <p className="muted small">
            Every row is checked: format, columns, duplicates, personal data and token lengths. This page updates by
            itself; you can leave it and come back.
          </p>
          <InlineProgress progress={waiting ? null : dataset.progress} label="Validation progress" />
        </div>
      </div>
    </Card>
  );
}

/** Progress pushed over /ws/notifications/ for this dataset: merge it in, refetch when it finishes. */
function useLiveProgress(dataset: Dataset | undefined) {
  const queryClient = useQueryClient();
  const busy = !!dataset && isBusy(dataset.status);
  const socket = useNotificationsSocket(busy);
  const id = dataset?.id;
  const entry = id ? socket.messages.find((m) => m.key === `task:dataset:${id}`) : undefined;
  const stamp = entry?.receivedAt.getTime();

  useEffect(() => {
    if (!entry || !id) return;
    const message = entry.message as TaskMessage;
    const status = STATUSES.includes(message.status as DatasetStatus) ? (message.status as DatasetStatus) : null;
    if (status === "ready" || status === "invalid") {
      void queryClient.invalidateQueries({ queryKey: datasetKeys.detail(id), exact: true });
      void queryClient.invalidateQueries({ queryKey: ["datasets", "list"] });
      return;
    }
    queryClient.setQueryData<Dataset>(datasetKeys.detail(id), (old) =>
      old && isBusy(old.status)
        ? { ...old, progress: typeof message.progress === "number" ? message.progress : old.progress, status: status ?? old.status }
        : old,
    );
    // Runs once per socket message (stamp); entry and queryClient are read as they are then.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [stamp, id]);
}

function triggerDownload(url: string) {
  const a = document.createElement("a");
  a.href = url;
  a.download = "";
  a.rel = "noopener";
  document.body.appendChild(a);
  a.click();
  a.remove();
}

export default function DatasetDetailPage() {
  const params = useParams();
  const id = Number(params.id);
  const valid = Number.isInteger(id) && id > 0;
  const dataset = useDataset(valid ? id : 0, valid);

  if (!valid || (dataset.isError && dataset.error instanceof ApiError && dataset.error.status === 404)) {
    return (
      <Card>
        <EmptyState icon="datasets" title="Dataset not found" action={<Link to="/datasets">Back to datasets</Link>}>
          It may have been deleted, or it belongs to someone else.
        </EmptyState>
      </Card>
    );
  }
  if (dataset.isPending) {
    return (
      <div className="center-pad">
        <Spinner size={20} label="Loading dataset" />
      </div>
    );
  }
  if (dataset.isError) return <Banner tone="error">{errorMessage(dataset.error)}</Banner>;
  return <DatasetDetail key={dataset.data.id} dataset={dataset.data} />;
}

function DatasetDetail({ dataset }: { dataset: Dataset }) {
  const navigate = useNavigate();
  const [params, setParams] = useSearchParams();
  const tabParam = params.get("tab");
  const tab: TabId = TABS.some((t) => t.id === tabParam) ? (tabParam as TabId) : "report";
  const [dialog, setDialog] = useState<"preprocess" | "split" | null>(null);

  const busy = isBusy(dataset.status);
  const report = useDatasetReport(dataset);
  const validate = useValidateDataset(dataset.id);
  const remove = useDeleteDataset();
  useLiveProgress(dataset);

  const setTab = (next: TabId) =>
    setParams(
      (p) => {
        const copy = new URLSearchParams(p);
        if (next === "report") copy.delete("tab");
        else copy.set("tab", next);
        return copy;
      },
      { replace: true },
    );

  const onDelete = () => {
    const message = `Delete “${dataset.name}” (version ${dataset.version})? Its files are removed for good. Other versions are kept.`;
    if (!window.confirm(message)) return;
    remove.mutate(dataset.id, { onSuccess: () => navigate("/datasets", { replace: true }) });
  };

  const onCreated = (created: Dataset) => {
    setDialog(null);
    navigate(`/datasets/${created.id}`);
  };

  const actionError = validate.error ?? remove.error;
  const canTransform = dataset.status === "ready";

  return (
    <>
      <nav className="ds-breadcrumb" aria-label="Breadcrumb">
        <Link to="/datasets">Datasets</Link>
        <span aria-hidden="true">/</span>
        <span className="muted">{dataset.name}</span>
      </nav>

      <header className="ds-header" data-testid="dataset-header" data-dataset-id={dataset.id} data-status={dataset.status}>
        <div className="ds-header__main">
          <div className="ds-header__title-row">
            <InlineName dataset={dataset} />
            <StatusBadge status={dataset.status} />
            {dataset.verdict && dataset.status === "ready" && <VerdictBadge verdict={dataset.verdict} />}
          </div>
          <Meta dataset={dataset} />
          <Origin dataset={dataset} />
          <Files dataset={dataset} />
        </div>
        <div className="ds-header__side">
          <VersionSelect dataset={dataset} />
          <div className="ds-actions">
            <Button size="sm" onClick={() => validate.mutate({})} loading={validate.isPending} disabled={busy} title="Run the checks again">
              Re-validate
            </Button>
            <Button size="sm" onClick={() => setDialog("preprocess")} disabled={!canTransform} title={canTransform ? undefined : "Available once the dataset is ready"}>
              Preprocess
            </Button>
            <Button size="sm" onClick={() => setDialog("split")} disabled={!canTransform} title={canTransform ? undefined : "Available once the dataset is ready"}>
              Split
            </Button>
            <Button size="sm" onClick={() => triggerDownload(downloadUrl(dataset.id))} disabled={!dataset.files?.length && !dataset.size_bytes}>
              Download
            </Button>
            <Button size="sm" variant="danger" onClick={onDelete} loading={remove.isPending}>
              Delete
            </Button>
          </div>
        </div>
      </header>

      {actionError && <Banner tone="error">{errorMessage(actionError)}</Banner>}

      {busy ? (
        <Processing dataset={dataset} />
      ) : (
        <>
          {dataset.status === "invalid" && <InvalidPanel dataset={dataset} report={report.data} />}
          <div className="ds-tabs" role="tablist" aria-label="Dataset views">
            {TABS.map((t) => (
              <button
                key={t.id}
                type="button"
                role="tab"
                id={`tab-${t.id}`}
                aria-selected={tab === t.id}
                aria-controls={`panel-${t.id}`}
                tabIndex={tab === t.id ? 0 : -1}
                className={`ds-tab${tab === t.id ? " is-active" : ""}`}
                onClick={() => setTab(t.id)}
                onKeyDown={(e) => {
                  const index = TABS.findIndex((x) => x.id === tab);
                  if (e.key === "ArrowRight" || e.key === "ArrowLeft") {
                    const next = TABS[(index + (e.key === "ArrowRight" ? 1 : TABS.length - 1)) % TABS.length];
                    setTab(next.id);
                    document.getElementById(`tab-${next.id}`)?.focus();
                  }
                }}
              >
                {t.label}
              </button>
            ))}
          </div>
          <div role="tabpanel" id={`panel-${tab}`} aria-labelledby={`tab-${tab}`} className="ds-tabpanel">
            {tab === "report" &&
              (report.isPending ? (
                <div className="center-pad">
                  <Spinner label="Loading report" />
                </div>
              ) : report.isError ? (
                <Banner tone="error">{errorMessage(report.error)}</Banner>
              ) : (
                <ReportView report={report.data} />
              ))}
            {tab === "preview" && <PreviewTab dataset={dataset} />}
            {tab === "statistics" && <StatisticsTab dataset={dataset} fallback={report.data?.statistics} />}
          </div>
        </>
      )}

      <PreprocessDialog dataset={dataset} open={dialog === "preprocess"} onClose={() => setDialog(null)} onCreated={onCreated} />
      <SplitDialog dataset={dataset} open={dialog === "split"} onClose={() => setDialog(null)} onCreated={onCreated} />
    </>
  );
}
