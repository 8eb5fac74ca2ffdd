// The review step's "Sweep" option: instead of one job, a grid or random search over up to three numeric
// hyperparameters of the same job (POST /api/training/sweeps/), then the sweep page.
import { useState } from "react";
import { useNavigate } from "react-router-dom";
import { errorMessage } from "../../../../api/client";
import {
  MAX_SWEEP_PARAMETERS,
  MAX_SWEEP_VARIANTS,
  SWEEPABLE,
  type SweepParameters,
  type SweepStrategy,
  useCreateSweep,
  variantCount,
} from "../../../../api/sweeps";
import { Banner, Button } from "../../../../components/ui";

interface Row {
  name: string;
  values: string; // grid: comma-separated
  min: string;
  max: string;
  log: boolean;
}

// Layout only (the shared stylesheet is left alone): a bordered panel with rows of inline controls.
const PANEL = { marginTop: 16, padding: 12, border: "1px solid #ececf1", borderRadius: 8 } as const;
const FORM = { display: "flex", flexDirection: "column", gap: 8, marginTop: 8, alignItems: "flex-start" } as const;
const ROW = { display: "flex", gap: 8, alignItems: "center", flexWrap: "wrap" } as const;

const newRow = (name: string): Row =>
  name === "learning_rate" ? { name, values: "1e-4, 2e-4, 5e-4", min: "1e-5", max: "1e-3", log: true } : { name, values: "", min: "", max: "", log: false };

const parseList = (text: string): number[] =>
  text
    .split(",")
    .map((t) => t.trim())
    .filter(Boolean)
    .map(Number);

/** The `parameters` body, or an error message for the first row that does not parse. */
function buildParameters(strategy: SweepStrategy, rows: Row[]): { parameters: SweepParameters; error: string | null } {
  const parameters: SweepParameters = {};
  for (const row of rows) {
    if (strategy === "grid") {
      const values = parseList(row.values);
      if (values.length === 0 || values.some((v) => !Number.isFinite(v))) return { parameters, error: `${row.name}: enter numbers separated by commas.` };
      parameters[row.name] = values;
    } else {
      const min = Number(row.min);
      const max = Number(row.max);
      if (row.min.trim() === "" || row.max.trim() === "" || !Number.isFinite(min) || !Number.isFinite(max)) return { parameters, error: `${row.name}: enter a min and a max.` };
      if (min > max) return { parameters, error: `${row.name}: min is above max.` };
      parameters[row.name] = { min, max, log: row.log };
    }
  }
  return { parameters, error: null };
}

export function SweepOption({ body }: { body: object | null }) {
  const navigate = useNavigate();
  const create = useCreateSweep();
  const [on, setOn] = useState(false);
  const [strategy, setStrategy] = useState<SweepStrategy>("grid");
  const [rows, setRows] = useState<Row[]>([newRow("learning_rate")]);
  const [count, setCount] = useState("4");
  const [seed, setSeed] = useState("0");
  const { parameters, error } = buildParameters(strategy, rows);
  const n = variantCount(strategy, parameters, Number(count) || 0);
  const tooMany = n > MAX_SWEEP_VARIANTS || n < 1;
  const update = (i: number, patch: Partial<Row>) => setRows(rows.map((r, j) => (j === i ? { ...r, ...patch } : r)));
  const unused = SWEEPABLE.filter((k) => !rows.some((r) => r.name === k));

  const launch = () => {
    if (!body || error || tooMany) return;
    const name = (body as { name?: string }).name;
    create.mutate(
      {
        spec: body,
        sweep: {
          ...(name ? { name } : {}),
          strategy,
          parameters,
          ...(strategy === "random" ? { max_variants: Number(count), seed: Number(seed) || 0 } : {}),
        },
      },
      { onSuccess: (sweep) => navigate(`/training/sweeps/${sweep.id}`) },
    );
  };

  return (
    <section className="tr-sweep" data-testid="sweep-option" style={PANEL}>
      <label className="tr-sweep__toggle">
        <input type="checkbox" checked={on} onChange={(e) => setOn(e.target.checked)} data-testid="sweep-toggle" /> Run as a hyperparameter sweep
        <span className="muted small"> — several jobs that differ in up to {MAX_SWEEP_PARAMETERS} hyperparameters, ranked by eval loss</span>
      </label>
      {on && (
        <div className="tr-sweep__form" style={FORM}>
          <label>
            Search{" "}
            <select className="input tr-select" style={{ width: "auto" }} value={strategy} onChange={(e) => setStrategy(e.target.value as SweepStrategy)} data-testid="sweep-strategy">
              <option value="grid">Grid (every combination)</option>
              <option value="random">Random (N draws)</option>
            </select>
          </label>
          {rows.map((row, i) => (
            <div className="tr-sweep__row" key={row.name} data-testid="sweep-param" style={ROW}>
              <select className="input tr-select" style={{ width: "auto" }} value={row.name} onChange={(e) => update(i, newRow(e.target.value))} aria-label="Hyperparameter">
                {[row.name, ...unused].map((k) => (
                  <option key={k} value={k}>
                    {k}
                  </option>
                ))}
              </select>
              {strategy === "grid" ? (
                <input
                  className="input"
                  style={{ width: 260 }}
                  aria-label={`${row.name} values`}
                  placeholder="values, comma-separated"
                  value={row.values}
                  onChange={(e) => update(i, { values: e.target.value })}
                  data-testid="sweep-values"
                />
              ) : (
                <>
                  <input className="input" style={{ width: 140 }} aria-label={`${row.name} min`} placeholder="min" value={row.min} onChange={(e) => update(i, { min: e.target.value })} />
                  <input className="input" style={{ width: 140 }} aria-label={`${row.name} max`} placeholder="max" value={row.max} onChange={(e) => update(i, { max: e.target.value })} />
                  <label className="small">
                    <input type="checkbox" checked={row.log} onChange={(e) => update(i, { log: e.target.checked })} /> log scale
                  </label>
                </>
              )}
              {rows.length > 1 && (
                <Button variant="ghost" size="sm" onClick={() => setRows(rows.filter((_, j) => j !== i))}>
                  Remove
                </Button>
              )}
            </div>
          ))}
          {rows.length < MAX_SWEEP_PARAMETERS && unused.length > 0 && (
            <Button variant="ghost" size="sm" onClick={() => setRows([...rows, newRow(unused[0])])}>
              Add a hyperparameter
            </Button>
          )}
          {strategy === "random" && (
            <div className="tr-sweep__row" style={ROW}>
              <label>
                Variants <input className="input" style={{ width: 80 }} type="number" min={1} max={MAX_SWEEP_VARIANTS} value={count} onChange={(e) => setCount(e.target.value)} aria-label="Variants" />
              </label>
              <label>
                Seed <input className="input" style={{ width: 80 }} type="number" min={0} value={seed} onChange={(e) => setSeed(e.target.value)} aria-label="Seed" />
              </label>
            </div>
          )}
          <p className="small" data-testid="sweep-count">
            {error ?? (tooMany ? `${n} variants: a sweep has 1 to ${MAX_SWEEP_VARIANTS}.` : `${n} variant${n === 1 ? "" : "s"}, run as ${n} job${n === 1 ? "" : "s"}; those beyond your concurrent-jobs limit wait for a free slot.`)}
          </p>
          {create.error && (
            <Banner tone={create.error && "status" in create.error && create.error.status === 429 ? "warning" : "error"} title="Could not launch the sweep" testId="sweep-error">
              {errorMessage(create.error)}
            </Banner>
          )}
          <Button variant="primary" icon="training" onClick={launch} loading={create.isPending} disabled={!body || !!error || tooMany} data-testid="launch-sweep">
            Launch sweep
          </Button>
        </div>
      )}
    </section>
  );
}
