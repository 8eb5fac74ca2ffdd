// The pre-launch estimate: tokens, steps, duration, peak memory by method, fit, and Modal cost per GPU.
import { useModalGpus } from "../../api/training";
import type { TrainingBackend, TrainingEstimate, TrainingWeights } from "../../api/types";
import { Icon } from "../Icon";
import { Banner, Spinner } from "../ui";
import { WEIGHTS_LABEL } from "./labels";
import { formatCompact, formatDuration, formatGb, formatNumber, formatUsd } from "../../lib/format";

const WEIGHT_ORDER: TrainingWeights[] = ["full", "lora", "qlora"];

/** What the estimate says for the chosen backend (and GPU; `gpuMemoryGb`: useModalGpus().memoryGb). */
export function estimateFor(estimate: TrainingEstimate, backend: TrainingBackend, gpu: string, gpuMemoryGb: Record<string, number>) {
  const modal = backend === "modal" ? estimate.modal?.[gpu] : undefined;
  const limitGb = backend === "modal" ? gpuMemoryGb[gpu] ?? null : estimate.memory_available_gb;
  const fits = backend === "modal" ? modal?.fits ?? estimate.fits : estimate.fits;
  const durationS = backend === "modal" ? modal?.duration_s ?? estimate.duration_s : estimate.duration_s;
  const notes = [...(estimate.notes ?? [])];
  if (!fits && notes.length === 0) {
    notes.push(
      backend === "modal"
        ? `Will not fit: about ${formatGb(estimate.peak_memory_gb)} needed, the ${gpu} has ${formatGb(limitGb)}. Pick a larger GPU, QLoRA, or a smaller max length or batch size.`
        : `Will not fit: about ${formatGb(estimate.peak_memory_gb)} needed, this machine has ${formatGb(limitGb)}.`,
    );
  }
  return { fits, durationS, limitGb, notes, cost: modal?.cost_usd ?? null };
}

function MemoryBars({ byMethod, selected, limitGb, limitLabel }: { byMethod: Record<TrainingWeights, number>; selected: TrainingWeights; limitGb: number | null; limitLabel: string }) {
  const values = WEIGHT_ORDER.map((w) => byMethod?.[w]).filter((v): v is number => typeof v === "number");
  const scale = Math.max(...values, limitGb ?? 0, 0.001) * 1.05;
  return (
    <div className="tr-membars" role="list" aria-label="Peak memory by method">
      {WEIGHT_ORDER.map((w) => {
        const value = byMethod?.[w];
        if (typeof value !== "number") return null;
        const over = limitGb !== null && value > limitGb;
        return (
          <div key={w} role="listitem" className={`tr-membar${w === selected ? " is-selected" : ""}${over ? " is-over" : ""}`}>
            <span className="tr-membar__label">
              {WEIGHTS_LABEL[w]}
              {w === selected && <span className="tr-membar__tag">selected</span>}
            </span>
            <span className="tr-membar__track">
              <span className="tr-membar__fill" style={{ width: `${(value / scale) * 100}%` }} />
              {limitGb !== null && (
                <span className="tr-membar__limit" style={{ left: `${(limitGb / scale) * 100}%` }} title={`${limitLabel}: ${formatGb(limitGb)}`} />
              )}
            </span>
            <span className="tr-membar__value">{formatGb(value)}</span>
          </div>
        );
      })}
      {limitGb !== null && (
        <p className="tr-membars__legend">
          <span className="tr-membars__legend-mark" aria-hidden="true" /> {limitLabel}: {formatGb(limitGb)}
        </p>
      )}
    </div>
  );
}

export function EstimatePanel({
  estimate,
  loading,
  error,
  weights,
  backend,
  gpu,
  onSelectGpu,
  waitingFor,
}: {
  estimate: TrainingEstimate | undefined;
  loading: boolean;
  error: string | null;
  weights: TrainingWeights;
  backend: TrainingBackend;
  gpu: string;
  onSelectGpu?: (gpu: string) => void;
  waitingFor?: string | null;
}) {
  const gpus = useModalGpus();
  const view = estimate ? estimateFor(estimate, backend, gpu, gpus.memoryGb) : null;
  return (
    <section className="tr-estimate" data-testid="estimate" data-fits={view ? String(view.fits) : undefined} aria-busy={loading || undefined}>
      <header className="tr-estimate__head">
        <h3 className="tr-estimate__title">
          <Icon name="activity" size={16} /> Estimate
        </h3>
        {loading && (
          <span className="muted small tr-estimate__loading">
            <Spinner size={12} /> Updating…
          </span>
        )}
      </header>
      {waitingFor ? (
        <p className="muted small">{waitingFor}</p>
      ) : error ? (
        <Banner tone="error" testId="estimate-error">
          {error}
        </Banner>
      ) : !estimate || !view ? (
        <div className="center-pad">
          <Spinner label="Estimating" />
        </div>
      ) : (
        <>
          {view.fits ? (
            <div className="tr-fit tr-fit--ok" data-testid="estimate-fits">
              <Icon name="check" size={16} />
              <span>
                <strong>Fits</strong> — about {formatGb(estimate.peak_memory_gb)} at peak
                {view.limitGb !== null ? ` of ${formatGb(view.limitGb)}${backend === "modal" ? ` on the ${gpu}` : " on this machine"}` : ""}.
              </span>
            </div>
          ) : (
            <Banner tone="error" title="Will not fit" testId="estimate-notes">
              {view.notes.map((note) => (
                <p key={note}>{note}</p>
              ))}
            </Banner>
          )}
          {view.fits && view.notes.length > 0 && (
            <Banner tone="warning" testId="estimate-notes">
              {view.notes.map((note) => (
                <p key={note}>{note}</p>
              ))}
            </Banner>
          )}
          <dl className="tr-stats">
            <div className="tr-stat">
              <dt>Duration</dt>
              <dd data-testid="estimate-duration">{formatDuration(view.durationS)}</dd>
              <span className="tr-stat__sub">{backend === "modal" ? `on a Modal ${gpu}` : "on this machine"}</span>
            </div>
            <div className="tr-stat">
              <dt>Steps</dt>
              <dd>{formatNumber(estimate.steps)}</dd>
              <span className="tr-stat__sub">optimizer steps</span>
            </div>
            <div className="tr-stat">
              <dt>Tokens</dt>
              <dd title={formatNumber(estimate.tokens)}>{formatCompact(estimate.tokens)}</dd>
              <span className="tr-stat__sub">{formatNumber(estimate.mean_tokens_per_row)} per row</span>
            </div>
            <div className="tr-stat">
              <dt>{backend === "modal" ? "Cost" : "Rows"}</dt>
              <dd>{backend === "modal" ? formatUsd(view.cost) : formatNumber(estimate.rows)}</dd>
              <span className="tr-stat__sub">{backend === "modal" ? "Modal GPU time" : "training rows"}</span>
            </div>
          </dl>
          <div className="tr-estimate__section">
            <h4 className="tr-estimate__subtitle">Peak memory by method</h4>
            <MemoryBars
              byMethod={estimate.peak_memory_gb_by_method}
              selected={weights}
              limitGb={view.limitGb}
              limitLabel={backend === "modal" ? `${gpu} memory` : "Available here"}
            />
          </div>
          <div className="tr-estimate__section">
            <h4 className="tr-estimate__subtitle">On Modal, per GPU</h4>
            <div className="table-wrap">
              <table className="table tr-cost-table" data-testid="modal-costs">
                <thead>
                  <tr>
                    <th scope="col">GPU</th>
                    <th scope="col" className="num">
                      Memory
                    </th>
                    <th scope="col" className="num">
                      Duration
                    </th>
                    <th scope="col" className="num">
                      Cost
                    </th>
                    <th scope="col">Fits</th>
                  </tr>
                </thead>
                <tbody>
                  {gpus.names.filter((g) => estimate.modal?.[g] || estimate.modal_cost_usd_by_gpu?.[g] !== undefined).map((g) => {
                    const row = estimate.modal?.[g];
                    const selected = backend === "modal" && g === gpu;
                    return (
                      <tr
                        key={g}
                        className={`${selected ? "is-selected" : ""}${onSelectGpu && backend === "modal" ? " is-clickable" : ""}`}
                        onClick={onSelectGpu && backend === "modal" ? () => onSelectGpu(g) : undefined}
                      >
                        <td className="strong">{g}</td>
                        <td className="num">{formatGb(gpus.memoryGb[g])}</td>
                        <td className="num">{formatDuration(row?.duration_s)}</td>
                        <td className="num">{formatUsd(row?.cost_usd ?? estimate.modal_cost_usd_by_gpu?.[g])}</td>
                        <td>
                          {row ? (
                            row.fits ? (
                              <span className="tr-yes">Yes</span>
                            ) : (
                              <span className="tr-no">No</span>
                            )
                          ) : (
                            "—"
                          )}
                        </td>
                      </tr>
                    );
                  })}
                </tbody>
              </table>
            </div>
          </div>
        </>
      )}
    </section>
  );
}
