// /models/compare?a=<id>&b=<id>: two model versions side by side: what differs (base model, dataset, method,
// hyperparameters), their final metrics and both loss curves overlaid in one chart.
import { useMemo, useState } from "react";
import { useQuery } from "@tanstack/react-query";
import { Link, useSearchParams } from "react-router-dom";
import { api, errorMessage } from "../../api/client";
import { finalLoss, useCompare, useModels, type CompareResult, type FineTunedModel, type LossPoint } from "../../api/models";
import type { MetricPoint } from "../../api/types";
import { COLOR_A, COLOR_B, OverlaidLossChart } from "../../components/models/CompareChart";
import { METRIC_ROWS } from "../../components/models/metrics";
import { ModelsTabs } from "../../components/models/ModelsTabs";
import { modelLabel } from "../../components/models/TaskBits";
import { METHOD_LABEL, WEIGHTS_LABEL } from "../../components/training/labels";
import { Banner, Card, EmptyState, PageHeader, Spinner } from "../../components/ui";
import { formatDateTime, formatFloat } from "../../lib/format";
import "../../styles/models.css";

function asRecord(value: unknown): Record<string, unknown> | null {
  return value && typeof value === "object" && !Array.isArray(value) ? (value as Record<string, unknown>) : null;
}

function asCurve(value: unknown): LossPoint[] | null {
  if (!Array.isArray(value)) return null;
  return value
    .map(asRecord)
    .filter((p): p is Record<string, unknown> => p !== null && p.step !== undefined)
    .map((p) => ({
      ...p,
      step: Number(p.step),
      // Metric points carry `loss` on training points and `eval_loss` on eval points.
      loss: typeof p.loss === "number" && p.kind !== "eval" ? p.loss : typeof p.train_loss === "number" ? p.train_loss : null,
      eval_loss: typeof p.eval_loss === "number" ? p.eval_loss : null,
    }));
}

function isModel(value: unknown): value is FineTunedModel {
  const obj = asRecord(value);
  return !!obj && typeof obj.id === "number" && typeof obj.name === "string" && "version" in obj;
}

interface Side {
  model: FineTunedModel | null;
  curve: LossPoint[] | null;
}

/** Read one side of the compare answer, whichever of the usual shapes it has. */
function readSide(result: CompareResult | undefined, which: "a" | "b", id: number): Side {
  if (!result) return { model: null, curve: null };
  const r = result as Record<string, unknown>;
  const aliases = which === "a" ? ["a", "model", "left", "first"] : ["b", "other", "right", "second"];
  let model: FineTunedModel | null = null;
  let curve: LossPoint[] | null = null;
  for (const key of aliases) {
    const value = asRecord(r[key]);
    if (!value) continue;
    if (isModel(value)) model = value;
    else if (isModel(value.model)) model = value.model as FineTunedModel;
    curve = curve ?? asCurve(value.loss_curve) ?? asCurve(value.loss) ?? asCurve(value.metrics_curve) ?? asCurve(value.curve) ?? asCurve(value.points);
    if (model) break;
  }
  if (!model && Array.isArray(r.models)) {
    const found = (r.models as unknown[]).filter(isModel).find((m) => m.id === id);
    if (found) model = found;
  }
  if (!curve) {
    for (const key of ["loss_curves", "curves"]) {
      const curves = r[key];
      if (Array.isArray(curves)) curve = asCurve(curves[which === "a" ? 0 : 1]);
      else if (asRecord(curves)) {
        const obj = curves as Record<string, unknown>;
        curve = asCurve(obj[String(id)]) ?? asCurve(obj[which]) ?? asCurve(obj[which === "a" ? "model" : "other"]);
      }
      if (curve) break;
    }
  }
  return { model, curve };
}

/** The training job's metric points, when the compare answer has no curve for a side. */
function useJobCurve(jobId: number | null | undefined, needed: boolean) {
  return useQuery({
    queryKey: ["models", "compare-job-curve", jobId ?? 0],
    queryFn: ({ signal }) => api.get<MetricPoint[]>(`/api/training/jobs/${jobId}/metrics/?after_seq=0`, signal),
    enabled: needed && typeof jobId === "number",
    select: (points) => asCurve(points) ?? [],
    retry: false,
    staleTime: 60_000,
  });
}

function display(value: unknown): string {
  if (value === null || value === undefined || value === "") return "—";
  if (typeof value === "number") return formatFloat(value, 6);
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

function same(x: unknown, y: unknown): boolean {
  return JSON.stringify(x ?? null) === JSON.stringify(y ?? null);
}

function ModelSelect({ id, value, models, onChange, color }: { id: string; value: number | null; models: FineTunedModel[]; onChange: (v: number) => void; color: string }) {
  const groups = useMemo(() => {
    const map = new Map<string, FineTunedModel[]>();
    for (const m of models) map.set(m.name, [...(map.get(m.name) ?? []), m]);
    for (const list of map.values()) list.sort((x, y) => y.version - x.version);
    return [...map.entries()].sort(([x], [y]) => x.localeCompare(y));
  }, [models]);
  return (
    <label className="md-compare-pick">
      <span className="md-compare-pick__label">
        <i style={{ background: color }} aria-hidden="true" />
        {id === "compare-a" ? "Version A" : "Version B"}
      </span>
      <select id={id} className="input tr-select" value={value ?? ""} onChange={(e) => onChange(Number(e.target.value))} data-testid={id}>
        <option value="" disabled>
          Pick a model…
        </option>
        {groups.map(([name, list]) => (
          <optgroup key={name} label={name}>
            {list.map((m) => (
              <option key={m.id} value={m.id}>
                {modelLabel(m)}
                {m.tag ? ` (${m.tag})` : ""}
              </option>
            ))}
          </optgroup>
        ))}
      </select>
    </label>
  );
}

function defaultPair(models: FineTunedModel[], a: number | null): [number | null, number | null] {
  if (!models.length) return [a, null];
  const first = a !== null ? models.find((m) => m.id === a) : models[0];
  if (!first) return [a, null];
  // The previous version of the same name, else the next newest model.
  const sameName = models.filter((m) => m.name === first.name && m.id !== first.id).sort((x, y) => y.version - x.version);
  const older = sameName.find((m) => m.version < first.version) ?? sameName[0];
  const other = older ?? models.find((m) => m.id !== first.id);
  return [first.id, other?.id ?? null];
}

export default function CompareModelsPage() {
  const [params, setParams] = useSearchParams();
  const models = useModels();
  const list = models.data ?? [];
  const qa = params.get("a") ? Number(params.get("a")) : null;
  const qb = params.get("b") ? Number(params.get("b")) : null;
  const [da, db] = defaultPair(list, qa);
  const a = qa ?? da;
  const b = qb ?? db;
  const compare = useCompare(a, b);
  const [showAll, setShowAll] = useState(false);

  const set = (key: "a" | "b", value: number) => {
    const next = new URLSearchParams(params);
    next.set(key, String(value));
    if (key === "a" && !next.get("b") && b !== null) next.set("b", String(b));
    if (key === "b" && !next.get("a") && a !== null) next.set("a", String(a));
    setParams(next, { replace: true });
  };

  const sideA = readSide(compare.data, "a", a ?? 0);
  const sideB = readSide(compare.data, "b", b ?? 0);
  const modelA = sideA.model ?? list.find((m) => m.id === a) ?? null;
  const modelB = sideB.model ?? list.find((m) => m.id === b) ?? null;
  const jobCurveA = useJobCurve(modelA?.job, compare.isSuccess && !sideA.curve?.length);
  const jobCurveB = useJobCurve(modelB?.job, compare.isSuccess && !sideB.curve?.length);
  const curveA = sideA.curve?.length ? sideA.curve : (jobCurveA.data ?? []);
  const curveB = sideB.curve?.length ? sideB.curve : (jobCurveB.data ?? []);

  const labelA = modelA ? modelLabel(modelA) : "A";
  const labelB = modelB ? modelLabel(modelB) : "B";

  const facts: { label: string; a: unknown; b: unknown }[] =
    modelA && modelB
      ? [
          { label: "Base model", a: modelA.base_model_name, b: modelB.base_model_name },
          {
            label: "Method",
            a: `${METHOD_LABEL[modelA.method as keyof typeof METHOD_LABEL] ?? modelA.method} · ${WEIGHTS_LABEL[modelA.weights as keyof typeof WEIGHTS_LABEL] ?? modelA.weights}`,
            b: `${METHOD_LABEL[modelB.method as keyof typeof METHOD_LABEL] ?? modelB.method} · ${WEIGHTS_LABEL[modelB.weights as keyof typeof WEIGHTS_LABEL] ?? modelB.weights}`,
          },
          {
            label: "Dataset",
            a: modelA.dataset_name ? `${modelA.dataset_name}${modelA.dataset_version ? ` v${modelA.dataset_version}` : ""}` : null,
            b: modelB.dataset_name ? `${modelB.dataset_name}${modelB.dataset_version ? ` v${modelB.dataset_version}` : ""}` : null,
          },
          { label: "Tag", a: modelA.tag, b: modelB.tag },
          { label: "Created", a: formatDateTime(modelA.created), b: formatDateTime(modelB.created) },
        ]
      : [];

  const hpKeys = modelA && modelB ? [...new Set([...Object.keys(modelA.hyperparameters ?? {}), ...Object.keys(modelB.hyperparameters ?? {})])].sort() : [];
  const hpA = (modelA?.hyperparameters ?? {}) as Record<string, unknown>;
  const hpB = (modelB?.hyperparameters ?? {}) as Record<string, unknown>;
  const changed = hpKeys.filter((k) => !same(hpA[k], hpB[k]));
  const shownHp = showAll ? hpKeys : changed;

  const metricKeys = modelA && modelB ? METRIC_ROWS.filter((m) => typeof modelA.metrics?.[m.key] === "number" || typeof modelB.metrics?.[m.key] === "number") : [];

  return (
    <>
      <PageHeader title="Compare versions" description="Pick two models to see what changed between them and how their training went." />
      <ModelsTabs />
      {models.isPending ? (
        <div className="center-pad">
          <Spinner label="Loading models" />
        </div>
      ) : models.isError ? (
        <Banner tone="error">{errorMessage(models.error)}</Banner>
      ) : list.length < 2 ? (
        <Card>
          <EmptyState icon="models" title="Nothing to compare yet">
            Comparing needs two fine-tuned models. Train another version (for example with <strong>Continue training</strong> on a job) and come back.
          </EmptyState>
        </Card>
      ) : (
        <div className="md-stack">
          <Card>
            <div className="md-compare-picks">
              <ModelSelect id="compare-a" value={a} models={list} onChange={(v) => set("a", v)} color={COLOR_A} />
              <span className="md-compare-vs" aria-hidden="true">
                vs
              </span>
              <ModelSelect id="compare-b" value={b} models={list} onChange={(v) => set("b", v)} color={COLOR_B} />
            </div>
            {a !== null && a === b && <Banner tone="warning">Pick two different versions.</Banner>}
          </Card>
          {compare.isError && <Banner tone="error">{errorMessage(compare.error)}</Banner>}
          {compare.isPending && a !== null && b !== null && a !== b ? (
            <div className="center-pad">
              <Spinner label="Comparing" />
            </div>
          ) : modelA && modelB && compare.isSuccess ? (
            <>
              <Card title="Loss curves overlaid" icon="training">
                <OverlaidLossChart a={curveA} b={curveB} labelA={labelA} labelB={labelB} />
              </Card>
              <div className="md-compare-grid">
                <Card title="Overview" testId="compare-overview">
                  <table className="table md-table md-diff" data-testid="compare-facts">
                    <thead>
                      <tr>
                        <th scope="col" />
                        <th scope="col">
                          <Link to={`/models/${modelA.id}`}>{labelA}</Link>
                        </th>
                        <th scope="col">
                          <Link to={`/models/${modelB.id}`}>{labelB}</Link>
                        </th>
                      </tr>
                    </thead>
                    <tbody>
                      {facts.map((f) => (
                        <tr key={f.label} className={same(f.a, f.b) ? undefined : "is-changed"}>
                          <th scope="row">{f.label}</th>
                          <td>{display(f.a)}</td>
                          <td>{display(f.b)}</td>
                        </tr>
                      ))}
                    </tbody>
                  </table>
                </Card>
                <Card title="Metrics" testId="compare-metrics">
                  {metricKeys.length === 0 ? (
                    <p className="muted small">No metrics recorded.</p>
                  ) : (
                    <table className="table md-table md-diff">
                      <thead>
                        <tr>
                          <th scope="col" />
                          <th scope="col" className="num">A</th>
                          <th scope="col" className="num">B</th>
                          <th scope="col" className="num">B − A</th>
                        </tr>
                      </thead>
                      <tbody>
                        {metricKeys.map((m) => {
                          const va = modelA.metrics?.[m.key];
                          const vb = modelB.metrics?.[m.key];
                          const delta = typeof va === "number" && typeof vb === "number" ? vb - va : null;
                          return (
                            <tr key={m.key}>
                              <th scope="row">{m.label}</th>
                              <td className="num">{typeof va === "number" ? m.format(va) : "—"}</td>
                              <td className="num">{typeof vb === "number" ? m.format(vb) : "—"}</td>
                              <td className={`num${delta !== null && delta < 0 && /loss|perplexity/.test(m.key) ? " md-better" : delta !== null && delta > 0 && /loss|perplexity/.test(m.key) ? " md-worse" : ""}`}>
                                {delta === null ? "—" : `${delta > 0 ? "+" : ""}${formatFloat(delta)}`}
                              </td>
                            </tr>
                          );
                        })}
                      </tbody>
                    </table>
                  )}
                  {finalLoss(modelA) === null && finalLoss(modelB) === null && <p className="muted small">Neither model recorded a final loss.</p>}
                </Card>
              </div>
              <Card
                title="Hyperparameters"
                testId="compare-hyperparameters"
                description={changed.length ? `${changed.length} of ${hpKeys.length} differ.` : "Both versions used the same hyperparameters."}
                actions={
                  hpKeys.length > 0 && (
                    <label className="md-check md-check--inline">
                      <input type="checkbox" checked={showAll} onChange={(e) => setShowAll(e.target.checked)} />
                      <span>Show unchanged</span>
                    </label>
                  )
                }
              >
                {shownHp.length > 0 && (
                  <table className="table md-table md-diff" data-testid="hp-diff">
                    <thead>
                      <tr>
                        <th scope="col">Setting</th>
                        <th scope="col">A · {labelA}</th>
                        <th scope="col">B · {labelB}</th>
                      </tr>
                    </thead>
                    <tbody>
                      {shownHp.map((key) => (
                        <tr key={key} className={same(hpA[key], hpB[key]) ? undefined : "is-changed"} data-testid="hp-diff-row">
                          <th scope="row" className="mono">
                            {key}
                          </th>
                          <td>{display(hpA[key])}</td>
                          <td>{display(hpB[key])}</td>
                        </tr>
                      ))}
                    </tbody>
                  </table>
                )}
              </Card>
            </>
          ) : null}
        </div>
      )}
    </>
  );
}
