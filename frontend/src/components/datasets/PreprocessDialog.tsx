// Preprocess: an ordered list of steps (tick, reorder, set options) → POST /preprocess/ → a new version.
import { useState, type FormEvent, type ReactNode } from "react";
import { errorMessage } from "../../api/client";
import { usePreprocessDataset } from "../../api/datasets";
import type { Dataset, PreprocessStep } from "../../api/types";
import { Banner, Button } from "../ui";
import { Dialog } from "../Dialog";

type Op = PreprocessStep["op"];

interface StepState {
  op: Op;
  enabled: boolean;
  mode: "exact" | "normalized";
  template: "alpaca" | "chatml" | "llama2" | "completion";
  max_tokens: string;
  overlap: string;
  min_chars: string;
  filter_max_tokens: string;
}

const INFO: Record<Op, { title: string; text: string }> = {
  normalize_unicode: { title: "Normalize Unicode", text: "NFC form, fix common mojibake, drop control characters." },
  strip_whitespace: { title: "Strip whitespace", text: "Trim every field and collapse runs of blank lines." },
  dedupe: { title: "Remove duplicates", text: "Drop rows that repeat an earlier row." },
  redact_pii: { title: "Redact PII", text: "Replace emails, phone numbers, cards, IPs and secrets with [EMAIL], [PHONE]…" },
  apply_template: { title: "Apply template", text: "Turn conversations into plain text with a prompt template." },
  chunk: { title: "Chunk long texts", text: "Split plain text into windows of at most N tokens." },
  filter_length: { title: "Filter by length", text: "Drop rows that are too short or too long." },
};

const DEFAULT_ORDER: Op[] = [
  "normalize_unicode",
  "strip_whitespace",
  "dedupe",
  "redact_pii",
  "filter_length",
  "apply_template",
  "chunk",
];

function initialSteps(): StepState[] {
  return DEFAULT_ORDER.map((op) => ({
    op,
    enabled: op === "normalize_unicode" || op === "strip_whitespace" || op === "dedupe",
    mode: "exact",
    template: "chatml",
    max_tokens: "512",
    overlap: "64",
    min_chars: "",
    filter_max_tokens: "2048",
  }));
}

const intOrUndefined = (value: string) => (value.trim() === "" ? undefined : Number(value));

/** The API step, or an error message for its options. */
function toStep(s: StepState): PreprocessStep | string {
  switch (s.op) {
    case "dedupe":
      return { op: "dedupe", mode: s.mode };
    case "apply_template":
      return { op: "apply_template", template: s.template };
    case "chunk": {
      const max = Number(s.max_tokens);
      const overlap = Number(s.overlap || 0);
      if (!Number.isInteger(max) || max < 16) return "Chunk: max tokens must be a whole number of at least 16.";
      if (!Number.isInteger(overlap) || overlap < 0 || overlap >= max) return "Chunk: overlap must be between 0 and max tokens.";
      return { op: "chunk", max_tokens: max, overlap };
    }
    case "filter_length": {
      const min = intOrUndefined(s.min_chars);
      const max = intOrUndefined(s.filter_max_tokens);
      if (min === undefined && max === undefined) return "Filter by length: set a minimum length, a maximum, or both.";
      if ((min !== undefined && (!Number.isInteger(min) || min < 0)) || (max !== undefined && (!Number.isInteger(max) || max < 1))) {
        return "Filter by length: use whole, positive numbers.";
      }
      return { op: "filter_length", ...(min !== undefined ? { min_chars: min } : {}), ...(max !== undefined ? { max_tokens: max } : {}) };
    }
    default:
      return { op: s.op } as PreprocessStep;
  }
}

function Option({ label, children }: { label: string; children: ReactNode }) {
  return (
    <label className="ds-step__option">
      <span>{label}</span>
      {children}
    </label>
  );
}

export function PreprocessDialog({
  dataset,
  open,
  onClose,
  onCreated,
}: {
  dataset: Dataset;
  open: boolean;
  onClose: () => void;
  onCreated: (created: Dataset) => void;
}) {
  const run = usePreprocessDataset(dataset.id);
  const [steps, setSteps] = useState<StepState[]>(initialSteps);
  const [name, setName] = useState("");
  const [error, setError] = useState<string>();
  const isText = dataset.format === "text";

  const update = (op: Op, patch: Partial<StepState>) => setSteps((all) => all.map((s) => (s.op === op ? { ...s, ...patch } : s)));
  const move = (index: number, delta: number) =>
    setSteps((all) => {
      const next = [...all];
      const [item] = next.splice(index, 1);
      next.splice(index + delta, 0, item);
      return next;
    });

  const submit = (event: FormEvent) => {
    event.preventDefault();
    setError(undefined);
    const chosen = steps.filter((s) => s.enabled && (s.op !== "chunk" || isText));
    if (!chosen.length) {
      setError("Tick at least one step.");
      return;
    }
    const out: PreprocessStep[] = [];
    for (const s of chosen) {
      const step = toStep(s);
      if (typeof step === "string") {
        setError(step);
        return;
      }
      out.push(step);
    }
    run.mutate(
      { steps: out, ...(name.trim() ? { name: name.trim() } : {}) },
      {
        onSuccess: (created) => {
          onCreated(created);
          run.reset();
        },
      },
    );
  };

  const close = () => {
    if (run.isPending) return;
    run.reset();
    setError(undefined);
    onClose();
  };

  const enabledCount = steps.filter((s) => s.enabled && (s.op !== "chunk" || isText)).length;

  return (
    <Dialog
      open={open}
      onClose={close}
      title="Preprocess dataset"
      description="The steps run in this order on a copy; the result is saved as a new version and the original stays as it is."
      testId="preprocess-dialog"
      size="lg"
    >
      <form className="form" onSubmit={submit} noValidate>
        {(error || run.isError) && <Banner tone="error">{error ?? errorMessage(run.error)}</Banner>}
        <ol className="ds-steps" aria-label="Preprocessing steps">
          {steps.map((s, index) => {
            const info = INFO[s.op];
            const unavailable = s.op === "chunk" && !isText;
            const checkId = `step-${s.op}`;
            return (
              <li key={s.op} className={`ds-step${s.enabled && !unavailable ? " is-on" : ""}${unavailable ? " is-unavailable" : ""}`} data-testid={`step-${s.op}`}>
                <span className="ds-step__order" aria-hidden="true">
                  {index + 1}
                </span>
                <div className="ds-step__main">
                  <div className="ds-step__head">
                    <input
                      id={checkId}
                      type="checkbox"
                      checked={s.enabled && !unavailable}
                      disabled={unavailable}
                      onChange={(e) => update(s.op, { enabled: e.target.checked })}
                    />
                    <label htmlFor={checkId} className="ds-step__title">
                      {info.title}
                    </label>
                    <code className="ds-step__op">{s.op}</code>
                  </div>
                  <p className="ds-step__text">{unavailable ? "Only for plain text datasets (format “text”)." : info.text}</p>
                  {s.enabled && !unavailable && (
                    <div className="ds-step__options">
                      {s.op === "dedupe" && (
                        <Option label="Match">
                          <select className="input ds-select ds-input-sm" value={s.mode} onChange={(e) => update(s.op, { mode: e.target.value as StepState["mode"] })}>
                            <option value="exact">Exact (identical rows)</option>
                            <option value="normalized">Normalized (ignore case, spaces, punctuation)</option>
                          </select>
                        </Option>
                      )}
                      {s.op === "apply_template" && (
                        <Option label="Template">
                          <select
                            className="input ds-select ds-input-sm"
                            value={s.template}
                            onChange={(e) => update(s.op, { template: e.target.value as StepState["template"] })}
                          >
                            <option value="chatml">ChatML</option>
                            <option value="alpaca">Alpaca</option>
                            <option value="llama2">Llama 2</option>
                            <option value="completion">Completion (prompt + answer)</option>
                          </select>
                        </Option>
                      )}
                      {s.op === "chunk" && (
                        <>
                          <Option label="Max tokens">
                            <input className="input ds-input-sm" type="number" min={16} step={1} value={s.max_tokens} onChange={(e) => update(s.op, { max_tokens: e.target.value })} />
                          </Option>
                          <Option label="Overlap">
                            <input className="input ds-input-sm" type="number" min={0} step={1} value={s.overlap} onChange={(e) => update(s.op, { overlap: e.target.value })} />
                          </Option>
                        </>
                      )}
                      {s.op === "filter_length" && (
                        <>
                          <Option label="Min characters">
                            <input className="input ds-input-sm" type="number" min={0} step={1} placeholder="none" value={s.min_chars} onChange={(e) => update(s.op, { min_chars: e.target.value })} />
                          </Option>
                          <Option label="Max tokens">
                            <input className="input ds-input-sm" type="number" min={1} step={1} placeholder="none" value={s.filter_max_tokens} onChange={(e) => update(s.op, { filter_max_tokens: e.target.value })} />
                          </Option>
                        </>
                      )}
                    </div>
                  )}
                </div>
                <div className="ds-step__move">
                  <button type="button" className="btn btn--ghost btn--sm" aria-label={`Move step ${index + 1} up`} title="Move up" disabled={index === 0} onClick={() => move(index, -1)}>
                    ↑
                  </button>
                  <button type="button" className="btn btn--ghost btn--sm" aria-label={`Move step ${index + 1} down`} title="Move down" disabled={index === steps.length - 1} onClick={() => move(index, 1)}>
                    ↓
                  </button>
                </div>
              </li>
            );
          })}
        </ol>
        <div className="field">
          <label htmlFor="preprocess-name" className="field__label">
            Name of the new version
          </label>
          <input id="preprocess-name" className="input" placeholder={dataset.name} value={name} onChange={(e) => setName(e.target.value)} />
        </div>
        <div className="dialog__actions">
          <span className="muted small">
            {enabledCount} {enabledCount === 1 ? "step" : "steps"} selected
          </span>
          <span className="grow" />
          <Button type="button" variant="ghost" onClick={close} disabled={run.isPending}>
            Cancel
          </Button>
          <Button type="submit" variant="primary" loading={run.isPending}>
            Create version
          </Button>
        </div>
      </form>
    </Dialog>
  );
}
