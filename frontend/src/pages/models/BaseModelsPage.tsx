// /models/base: the base-model catalogue (the embedded default and models downloaded from the Hub), a memory fit
// estimate for full / LoRA / QLoRA at a given max length and batch size, and Hub search with model info and a
// Download button whose progress shows in the catalogue.
import { useEffect, useState, type FormEvent } from "react";
import { Link } from "react-router-dom";
import { useHfToken } from "../../api/auth";
import { errorMessage } from "../../api/client";
import { useBaseCatalog, useFit, useHubDownload, useHubInfo, useHubSearch, type BaseModel, type FitEstimate, type HubModelInfo } from "../../api/models";
import { Icon } from "../../components/Icon";
import { ModelsTabs } from "../../components/models/ModelsTabs";
import { TaskProgress } from "../../components/models/TaskBits";
import { Banner, Button, Card, EmptyState, PageHeader, Spinner } from "../../components/ui";
import { useTaskFeed } from "../../hooks/useTaskFeed";
import { formatBytes, formatCompact, formatFloat, formatNumber } from "../../lib/format";
import "../../styles/models.css";

const METHODS = [
  { key: "full", label: "Full" },
  { key: "lora", label: "LoRA" },
  { key: "qlora", label: "QLoRA" },
] as const;

function SourceBadge({ source }: { source: string }) {
  const tone = source === "embedded" ? "accent" : source === "hub" ? "info" : "neutral";
  const label = source === "embedded" ? "Embedded" : source === "hub" ? "Hub" : source;
  return <span className={`tr-badge tr-badge--${tone}`}>{label}</span>;
}

function CatalogRow({ model, onFit, live }: { model: BaseModel; onFit: (id: number) => void; live: number | null }) {
  const downloading = model.status === "downloading";
  return (
    <tr data-testid="base-row" data-repo={model.repo_id} data-status={model.status}>
      <td className="strong md-base-name">
        <span className="tr-cell-main">{model.name}</span>
        <span className="tr-sub">
          <span className="mono">{model.repo_id}</span>
          {model.architecture ? ` · ${model.architecture}` : ""}
        </span>
      </td>
      <td>
        <SourceBadge source={model.source} />
      </td>
      <td className="num">{formatCompact(model.parameters)}</td>
      <td className="num">{model.context_length ? formatNumber(model.context_length) : "—"}</td>
      <td>{model.license || "—"}</td>
      <td>{model.has_chat_template ? <span className="tr-yes">Yes</span> : <span className="tr-no">No</span>}</td>
      <td className="num">{formatBytes(model.size_bytes || null)}</td>
      <td className="md-status-cell">
        {downloading ? (
          <TaskProgress progress={Math.max(live ?? 0, model.download_progress ?? 0)} status="running" label={`Download of ${model.repo_id}`} testId="download-progress" />
        ) : model.status === "failed" ? (
          <span className="md-error-text small" title={model.error}>
            <span className="tr-badge tr-badge--danger">Failed</span> {model.error}
          </span>
        ) : (
          <span className="tr-badge tr-badge--success">Available</span>
        )}
      </td>
      <td className="table__actions">
        <span className="md-row-actions">
          <Button size="sm" variant="ghost" onClick={() => onFit(model.id)} disabled={downloading}>
            Fit
          </Button>
          {model.status === "available" && (
            <Link to={`/playground?base=${model.id}`} className="btn btn--ghost btn--sm tr-link-btn">
              <span>Chat</span>
            </Link>
          )}
        </span>
      </td>
    </tr>
  );
}

function numberIn(obj: Record<string, unknown> | undefined, keys: string[]): number | null {
  if (!obj) return null;
  for (const key of keys) {
    const value = obj[key];
    if (typeof value === "number" && Number.isFinite(value)) return value;
  }
  return null;
}

/** Memory needed by one method, from whichever field the estimate uses. */
function memoryFor(fit: FitEstimate | undefined, method: string): number | null {
  if (!fit) return null;
  const byMethod = (fit.memory_gb_by_method ?? fit.peak_memory_gb_by_method ?? fit.by_method) as Record<string, unknown> | undefined;
  if (byMethod && typeof byMethod === "object") {
    const entry = byMethod[method];
    if (typeof entry === "number") return entry;
    if (entry && typeof entry === "object") return numberIn(entry as Record<string, unknown>, ["memory_gb", "peak_memory_gb", "total_gb", "gb"]);
  }
  if (!fit.method || fit.method === method) return numberIn(fit, ["memory_gb", "peak_memory_gb", "total_gb", "required_gb"]);
  return null;
}

function fitsFor(fit: FitEstimate | undefined, method: string): boolean | null {
  if (!fit) return null;
  if (typeof fit.fits === "boolean") return !fit.method || fit.method === method ? fit.fits : null;
  if (fit.fits && typeof fit.fits === "object") {
    const v = (fit.fits as Record<string, unknown>)[method];
    return typeof v === "boolean" ? v : null;
  }
  return null;
}

function FitMethodRow({ baseId, method, label, maxLength, batchSize }: { baseId: number; method: string; label: string; maxLength: number; batchSize: number }) {
  const fit = useFit(baseId, { method, max_length: maxLength, batch_size: batchSize });
  const gb = memoryFor(fit.data, method);
  const fits = fitsFor(fit.data, method);
  const available = numberIn(fit.data, ["available_gb", "memory_available_gb", "device_memory_gb"]);
  return (
    <tr data-testid="fit-row" data-method={method} data-fits={fits === null ? undefined : String(fits)}>
      <th scope="row">{label}</th>
      <td className="num">{fit.isPending ? <Spinner size={12} /> : fit.isError ? <span className="text-danger small">{errorMessage(fit.error)}</span> : gb !== null ? `${formatFloat(gb, 1)} GB` : "—"}</td>
      <td>{fits === null ? <span className="muted">—</span> : fits ? <span className="tr-yes">Fits{available ? ` in ${formatFloat(available, 1)} GB` : ""}</span> : <span className="tr-no">Too large{available ? ` for ${formatFloat(available, 1)} GB` : ""}</span>}</td>
    </tr>
  );
}

function FitCard({ models, baseId, onPick }: { models: BaseModel[]; baseId: number | null; onPick: (id: number) => void }) {
  const [maxLength, setMaxLength] = useState(1024);
  const [batchSize, setBatchSize] = useState(4);
  const usable = models.filter((m) => m.status === "available");
  const selected = baseId ?? usable[0]?.id ?? null;
  return (
    <Card title="Will it fit?" icon="activity" testId="fit-card" description="Memory a training run needs, by method, at this max length and batch size.">
      <div className="md-fit-controls">
        <label className="field">
          <span className="field__label">Base model</span>
          <select className="input tr-select" value={selected ?? ""} onChange={(e) => onPick(Number(e.target.value))} data-testid="fit-model">
            {usable.map((m) => (
              <option key={m.id} value={m.id}>
                {m.name}
              </option>
            ))}
          </select>
        </label>
        <label className="field">
          <span className="field__label">Max length</span>
          <input className="input" type="number" min={16} max={131072} step={16} value={maxLength} onChange={(e) => setMaxLength(Math.max(1, Number(e.target.value) || 1))} data-testid="fit-max-length" />
        </label>
        <label className="field">
          <span className="field__label">Batch size</span>
          <input className="input" type="number" min={1} max={1024} value={batchSize} onChange={(e) => setBatchSize(Math.max(1, Number(e.target.value) || 1))} data-testid="fit-batch-size" />
        </label>
      </div>
      {selected !== null && (
        <table className="table md-table md-diff" data-testid="fit-table">
          <thead>
            <tr>
              <th scope="col">Method</th>
              <th scope="col" className="num">
                Memory needed
              </th>
              <th scope="col">On this machine</th>
            </tr>
          </thead>
          <tbody>
            {METHODS.map((m) => (
              <FitMethodRow key={m.key} baseId={selected} method={m.key} label={m.label} maxLength={maxLength} batchSize={batchSize} />
            ))}
          </tbody>
        </table>
      )}
    </Card>
  );
}

function InfoPanel({ repoId, catalog }: { repoId: string; catalog: BaseModel[] }) {
  const info = useHubInfo(repoId);
  const download = useHubDownload();
  const token = useHfToken();
  const existing = catalog.find((m) => m.repo_id === repoId);
  useEffect(() => download.reset(), [repoId]); // eslint-disable-line react-hooks/exhaustive-deps
  if (info.isPending) return <Spinner label="Loading model info" />;
  if (info.isError) return <Banner tone="error">{errorMessage(info.error)}</Banner>;
  const data: HubModelInfo = info.data;
  const gated = data.gated === true || (typeof data.gated === "string" && data.gated !== "false" && data.gated !== "");
  return (
    <div className="md-info" data-testid="hub-info">
      <div className="md-info__head">
        <span className="strong mono md-break">{data.repo_id ?? repoId}</span>
        {gated && <span className="tr-badge tr-badge--warning">Gated</span>}
      </div>
      <dl className="md-kv md-kv--grid">
        <div>
          <dt>Architecture</dt>
          <dd>{data.architecture || "—"}</dd>
        </div>
        <div>
          <dt>Parameters</dt>
          <dd>{formatCompact(data.parameters ?? null)}</dd>
        </div>
        <div>
          <dt>License</dt>
          <dd>{data.license || "—"}</dd>
        </div>
        <div>
          <dt>Size</dt>
          <dd>{formatBytes(data.size_bytes || null)}</dd>
        </div>
        <div>
          <dt>Chat template</dt>
          <dd>{data.has_chat_template === null || data.has_chat_template === undefined ? "Unknown" : data.has_chat_template ? "Yes" : "No"}</dd>
        </div>
        {data.context_length ? (
          <div>
            <dt>Context length</dt>
            <dd>{formatNumber(data.context_length)}</dd>
          </div>
        ) : null}
      </dl>
      {gated && token.data && !token.data.present && (
        <Banner tone="warning">
          This model is gated: accept its terms on Hugging Face and <Link to="/settings">save your token</Link> before downloading.
        </Banner>
      )}
      {data.has_chat_template === false && <p className="muted small">Without a chat template the model can still be trained on plain text, but chat formats need one.</p>}
      {data.problems && data.problems.length > 0 && (
        <Banner tone="warning" title="This model cannot be used here">
          <ul className="md-problems">
            {data.problems.map((p) => (
              <li key={p}>{p}</li>
            ))}
          </ul>
        </Banner>
      )}
      <div className="md-info__actions" data-testid="hub-info-state" data-status={existing?.status ?? "none"}>
        {existing?.status === "downloading" && <span className="muted small">Downloading: the progress shows in the catalogue above.</span>}
        {existing?.status === "available" && (
          <>
            <span className="tr-yes small">In the catalogue, ready to fine-tune.</span>
            <Link to={`/playground?base=${existing.id}`} className="btn btn--secondary btn--sm tr-link-btn">
              <span>Chat with it</span>
            </Link>
          </>
        )}
        {existing?.status === "failed" && <span className="text-danger small">The last download failed{existing.error ? `: ${existing.error}` : "."}</span>}
        {(!existing || existing.status === "failed") && (
          <Button
            variant="primary"
            icon="upload"
            loading={download.isPending}
            disabled={data.downloadable === false}
            onClick={() => download.mutate(repoId)}
            data-testid="hub-download"
          >
            Download
          </Button>
        )}
      </div>
      {download.isError && <Banner tone="error">{errorMessage(download.error)}</Banner>}
    </div>
  );
}

function HubSearchCard({ catalog }: { catalog: BaseModel[] }) {
  const [text, setText] = useState("");
  const [query, setQuery] = useState("");
  const [picked, setPicked] = useState<string | null>(null);
  const search = useHubSearch(query);
  const submit = (event: FormEvent) => {
    event.preventDefault();
    setQuery(text.trim());
    setPicked(null);
  };
  const hits = search.data ?? [];
  return (
    <Card title="Add from the Hugging Face Hub" icon="hf" testId="hub-card" description="Search the Hub, check a model's details, and download it into the shared model cache with your own token.">
      <form className="md-search" onSubmit={submit} role="search">
        <label htmlFor="hub-search" className="sr-only">
          Search the Hub
        </label>
        <input id="hub-search" className="input" type="search" placeholder="e.g. Qwen2.5 0.5B Instruct" value={text} onChange={(e) => setText(e.target.value)} data-testid="hub-search" />
        <Button type="submit" icon="search" loading={search.isFetching} disabled={!text.trim()}>
          Search
        </Button>
      </form>
      {search.isError && <Banner tone="error">{errorMessage(search.error)}</Banner>}
      {query && search.isSuccess && hits.length === 0 && <p className="muted small">No models match “{query}”.</p>}
      {hits.length > 0 && (
        <div className="md-hub">
          <ul className="md-hub__list" aria-label="Search results">
            {hits.map((hit) => (
              <li key={hit.repo_id}>
                <button type="button" className={`md-hub__hit${picked === hit.repo_id ? " is-active" : ""}`} onClick={() => setPicked(hit.repo_id)} data-testid="hub-hit">
                  <span className="mono md-break">{hit.repo_id}</span>
                  <span className="muted small">
                    {[
                      hit.pipeline_tag,
                      typeof hit.downloads === "number" ? `${formatCompact(hit.downloads)} downloads` : null,
                      typeof hit.likes === "number" ? `${formatCompact(hit.likes)} likes` : null,
                      hit.gated ? "gated" : null,
                    ]
                      .filter(Boolean)
                      .join(" · ")}
                  </span>
                </button>
              </li>
            ))}
          </ul>
          <div className="md-hub__info">{picked ? <InfoPanel repoId={picked} catalog={catalog} /> : <p className="muted small">Pick a result to see its details.</p>}</div>
        </div>
      )}
    </Card>
  );
}

export default function BaseModelsPage() {
  const catalog = useBaseCatalog();
  const feed = useTaskFeed();
  const [fitId, setFitId] = useState<number | null>(null);
  const rows = catalog.data ?? [];
  return (
    <>
      <PageHeader title="Models" description="Base models you can fine-tune: the embedded default works offline; others come from the Hugging Face Hub." />
      <ModelsTabs />
      <div className="md-stack">
        <Card title="Catalogue" icon="models" testId="base-catalog">
          {catalog.isPending ? (
            <div className="center-pad">
              <Spinner label="Loading base models" />
            </div>
          ) : catalog.isError ? (
            <Banner tone="error">{errorMessage(catalog.error)}</Banner>
          ) : rows.length === 0 ? (
            <EmptyState icon="models" title="No base models">
              Search the Hub below to add one.
            </EmptyState>
          ) : (
            <div className="table-wrap">
              <table className="table tr-table md-table" data-testid="base-table">
                <thead>
                  <tr>
                    <th scope="col">Model</th>
                    <th scope="col">Source</th>
                    <th scope="col" className="num">
                      Parameters
                    </th>
                    <th scope="col" className="num">
                      Context
                    </th>
                    <th scope="col">License</th>
                    <th scope="col">Chat</th>
                    <th scope="col" className="num">
                      Size
                    </th>
                    <th scope="col">Status</th>
                    <th scope="col" className="table__actions">
                      <span className="sr-only">Actions</span>
                    </th>
                  </tr>
                </thead>
                <tbody>
                  {rows.map((m) => (
                    <CatalogRow key={m.id} model={m} onFit={setFitId} live={feed.lookup("download", m.id)?.progress ?? null} />
                  ))}
                </tbody>
              </table>
            </div>
          )}
        </Card>
        {rows.length > 0 && <FitCard models={rows} baseId={fitId} onPick={setFitId} />}
        <HubSearchCard catalog={rows} />
        <p className="muted small md-footnote">
          <Icon name="lock" size={13} /> Downloads use your own Hugging Face token (Settings), never a shared login.
        </p>
      </div>
    </>
  );
}
