// Split into train and validation sets → POST /split/ → a new version.
import { useState, type FormEvent } from "react";
import { errorMessage } from "../../api/client";
import { useSplitDataset } from "../../api/datasets";
import type { Dataset } from "../../api/types";
import { Banner, Button, Field } from "../ui";
import { Dialog } from "../Dialog";
import { formatNumber } from "../../lib/format";

export function SplitDialog({
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
  const split = useSplitDataset(dataset.id);
  const [ratio, setRatio] = useState("0.1");
  const [seed, setSeed] = useState("42");
  const [errors, setErrors] = useState<{ ratio?: string; seed?: string }>({});

  const r = Number(ratio);
  const rows = dataset.row_count ?? 0;
  const validRatio = Number.isFinite(r) && r >= 0.01 && r <= 0.5;
  const validationRows = validRatio ? Math.max(1, Math.round(rows * r)) : 0;

  const submit = (event: FormEvent) => {
    event.preventDefault();
    const next: typeof errors = {};
    if (!validRatio) next.ratio = "Use a ratio between 0.01 and 0.5.";
    const s = Number(seed);
    if (!Number.isInteger(s) || s < 0) next.seed = "Use a whole number, 0 or more.";
    setErrors(next);
    if (next.ratio || next.seed) return;
    split.mutate(
      { validation_ratio: r, seed: s },
      {
        onSuccess: (created) => {
          onCreated(created);
          split.reset();
        },
      },
    );
  };

  const close = () => {
    if (split.isPending) return;
    split.reset();
    onClose();
  };

  return (
    <Dialog
      open={open}
      onClose={close}
      title="Split into train and validation"
      description="Rows are shuffled with the seed, so the same seed always gives the same split. The result is a new version."
      testId="split-dialog"
    >
      <form className="form" onSubmit={submit} noValidate>
        {split.isError && <Banner tone="error">{errorMessage(split.error)}</Banner>}
        <div className="ds-ratio">
          <input
            type="range"
            min={0.01}
            max={0.5}
            step={0.01}
            value={validRatio ? r : 0.1}
            aria-label="Validation ratio slider"
            onChange={(e) => setRatio(e.target.value)}
          />
        </div>
        <div className="form-row">
          <Field
            label="Validation ratio"
            name="validation_ratio"
            type="number"
            min={0.01}
            max={0.5}
            step={0.01}
            value={ratio}
            onChange={(e) => setRatio(e.target.value)}
            error={errors.ratio}
            hint="Between 0.01 and 0.5."
          />
          <Field
            label="Seed"
            name="seed"
            type="number"
            min={0}
            step={1}
            value={seed}
            onChange={(e) => setSeed(e.target.value)}
            error={errors.seed}
          />
        </div>
        {rows > 0 && validRatio && (
          <div className="ds-split-preview" data-testid="split-preview">
            <span className="ds-split-preview__bar">
              <span className="ds-split-preview__train" style={{ width: `${(1 - r) * 100}%` }} />
              <span className="ds-split-preview__val" style={{ width: `${r * 100}%` }} />
            </span>
            <span className="small">
              <strong>{formatNumber(rows - validationRows)}</strong> train ·{" "}
              <strong>{formatNumber(validationRows)}</strong> validation rows (about)
            </span>
          </div>
        )}
        <div className="dialog__actions">
          <span className="grow" />
          <Button type="button" variant="ghost" onClick={close} disabled={split.isPending}>
            Cancel
          </Button>
          <Button type="submit" variant="primary" loading={split.isPending}>
            Create version
          </Button>
        </div>
      </form>
    </Dialog>
  );
}
