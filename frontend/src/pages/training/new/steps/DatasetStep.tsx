// Step 2: a ready dataset (one card per lineage), then the version to train on.
import { useMemo } from "react";
import { Link } from "react-router-dom";
import { errorMessage, type FieldErrors } from "../../../../api/client";
import { isKtoFormat, isPreferenceFormat, useDatasetVersionsForTraining } from "../../../../api/training";
import type { Dataset } from "../../../../api/types";
import { Icon } from "../../../../components/Icon";
import { datasetFormatLabel } from "../../../../components/training/labels";
import { Banner, EmptyState, Field, Spinner } from "../../../../components/ui";
import { formatNumber, formatRelative } from "../../../../lib/format";
import { MAX_COMPARE_PROMPTS, parseComparePrompts } from "../state";
import { ChoiceCard, SelectField, VerdictTag } from "../WizardParts";

interface Lineage {
  root: number;
  latest: Dataset;
  count: number;
}

/** One entry per dataset lineage (all versions of one upload), newest first. */
function lineagesOf(datasets: Dataset[]): Lineage[] {
  const map = new Map<number, Lineage>();
  for (const d of datasets) {
    const root = d.root_id ?? d.id;
    const entry = map.get(root);
    if (!entry) map.set(root, { root, latest: d, count: 1 });
    else {
      entry.count += 1;
      if (d.version > entry.latest.version) entry.latest = d;
    }
  }
  return [...map.values()].sort((a, b) => (a.latest.updated < b.latest.updated ? 1 : -1));
}

function versionLabel(v: Dataset): string {
  return `v${v.version}${v.status !== "ready" ? ` (${v.status})` : ""}${v.operation?.type && v.operation.type !== "upload" ? ` · ${v.operation.type}` : ""}${v.is_latest ? " · latest" : ""}`;
}

function DatasetFacts({ dataset }: { dataset: Dataset }) {
  return (
    <dl className="tr-facts" data-testid="dataset-facts">
      <div>
        <dt>Rows</dt>
        <dd>{formatNumber(dataset.row_count)}</dd>
      </div>
      <div>
        <dt>Format</dt>
        <dd>{datasetFormatLabel(dataset.format)}</dd>
      </div>
      <div>
        <dt>Verdict</dt>
        <dd>
          <VerdictTag verdict={dataset.verdict} />
          {!dataset.verdict && "—"}
        </dd>
      </div>
      <div>
        <dt>Preference data</dt>
        <dd>
          {isKtoFormat(dataset.format)
            ? "Labelled answers (KTO)"
            : isPreferenceFormat(dataset.format)
              ? "Yes (DPO / ORPO)"
              : "No (SFT)"}
        </dd>
      </div>
    </dl>
  );
}

/** Where the held-out rows come from, and how many prompts the evaluation report compares. */
function EvaluationChoice({
  datasets,
  selected,
  comparePrompts,
  evalDatasetId,
  onComparePrompts,
  onEvalDataset,
  errors,
}: {
  datasets: Dataset[];
  selected: Dataset;
  comparePrompts: string;
  evalDatasetId: number | null;
  onComparePrompts: (text: string) => void;
  onEvalDataset: (id: number | null) => void;
  errors: FieldErrors;
}) {
  // Other ready datasets in the same format (and column mapping) can be evaluated on.
  const same = (d: Dataset) =>
    d.id !== selected.id && d.status === "ready" && d.format === selected.format && JSON.stringify(d.column_mapping ?? {}) === JSON.stringify(selected.column_mapping ?? {});
  const candidates = datasets.filter(same).sort((a, b) => a.name.localeCompare(b.name) || b.version - a.version);
  const typed = parseComparePrompts(comparePrompts);
  const promptsError = errors.compare_prompts?.[0] ?? (typed === null ? `A whole number from 0 to ${MAX_COMPARE_PROMPTS}.` : undefined);
  return (
    <section className="tr-eval" aria-label="Evaluation" data-testid="evaluation-choice">
      <h3 className="tr-eval__title">Evaluation</h3>
      <div className="tr-eval__fields">
        <SelectField
          label="Evaluate on"
          id="eval-dataset"
          value={evalDatasetId === null ? "" : String(evalDatasetId)}
          onChange={(v) => onEvalDataset(v ? Number(v) : null)}
          options={[
            { value: "", label: "Held-out rows of this dataset (its validation split)" },
            ...candidates.map((d) => ({ value: String(d.id), label: `${d.name} v${d.version} · ${formatNumber(d.row_count)} rows` })),
          ]}
          error={errors.eval_dataset?.[0] ?? errors.eval_dataset_version?.[0]}
          hint={
            candidates.length
              ? "Another dataset in the same format: all of its rows are held out, for the eval loss and the report."
              : `No other ready dataset is in the ${datasetFormatLabel(selected.format).toLowerCase()} format.`
          }
        />
        <Field
          label="Evaluation prompts"
          id="compare-prompts"
          inputMode="numeric"
          value={comparePrompts}
          onChange={(e) => onComparePrompts(e.target.value)}
          error={promptsError}
          hint="After training, the base and the fine-tuned model answer this many held-out prompts; the model page shows them side by side with exact match and ROUGE-L. 0 skips it."
        />
      </div>
    </section>
  );
}

function NoDatasets() {
  return (
    <EmptyState
      icon="datasets"
      title="No ready datasets"
      action={
        <Link to="/datasets/upload" className="btn btn--primary btn--md tr-link-btn">
          <Icon name="upload" size={16} />
          <span>Upload dataset</span>
        </Link>
      }
    >
      A dataset can train once it has been validated and is ready. Upload one, or wait for a running validation to finish.
    </EmptyState>
  );
}

export function DatasetStep({
  datasets,
  datasetRoot,
  datasetId,
  onPick,
  onVersion,
  errors,
  comparePrompts,
  evalDatasetId,
  onComparePrompts,
  onEvalDataset,
}: {
  datasets: Dataset[];
  datasetRoot: number | null;
  datasetId: number | null;
  onPick: (root: number, latestId: number) => void;
  onVersion: (id: number) => void;
  errors: FieldErrors;
  comparePrompts: string;
  evalDatasetId: number | null;
  onComparePrompts: (text: string) => void;
  onEvalDataset: (id: number | null) => void;
}) {
  const lineages = useMemo(() => lineagesOf(datasets), [datasets]);
  const versions = useDatasetVersionsForTraining(datasetRoot);
  const selected = versions.data?.find((v) => v.id === datasetId) ?? datasets.find((d) => d.id === datasetId);

  if (!lineages.length) return <NoDatasets />;
  const datasetError = errors.dataset?.[0];
  const versionError = errors.dataset_version?.[0];
  return (
    <div className="tr-step">
      <p className="tr-step__lead">Only datasets that passed validation (ready) are listed. Pick one, then the version to train on.</p>
      {datasetError && <Banner tone="error">{datasetError}</Banner>}
      <div className="tr-choices tr-choices--datasets" role="radiogroup" aria-label="Dataset">
        {lineages.map((l) => (
          <ChoiceCard
            key={l.root}
            name="dataset"
            value={String(l.root)}
            checked={datasetRoot === l.root}
            onSelect={() => onPick(l.root, l.latest.id)}
            title={l.latest.name}
            aside={<VerdictTag verdict={l.latest.verdict} />}
            testId={`dataset-${l.root}`}
          >
            <span className="tr-model-meta">
              <span>{datasetFormatLabel(l.latest.format)}</span>
              <span>
                <strong>{formatNumber(l.latest.row_count)}</strong> rows
              </span>
              <span>
                {l.count} {l.count === 1 ? "version" : "versions"}
              </span>
              <span>{formatRelative(l.latest.updated)}</span>
            </span>
          </ChoiceCard>
        ))}
      </div>
      {datasetRoot !== null && (
        <div className="tr-version-row">
          <div className="tr-version-row__select">
            {versions.isPending ? (
              <Spinner label="Loading versions" />
            ) : versions.isError ? (
              <Banner tone="error">{errorMessage(versions.error)}</Banner>
            ) : (
              <SelectField
                label="Version"
                id="dataset-version"
                value={String(datasetId ?? "")}
                onChange={(v) => onVersion(Number(v))}
                options={(versions.data ?? []).map((v) => ({ value: String(v.id), label: versionLabel(v), disabled: v.status !== "ready" }))}
                error={versionError}
                hint="Each preprocessing or split creates a new version."
              />
            )}
          </div>
          {selected && <DatasetFacts dataset={selected} />}
        </div>
      )}
      {selected && (
        <EvaluationChoice
          datasets={datasets}
          selected={selected}
          comparePrompts={comparePrompts}
          evalDatasetId={evalDatasetId}
          onComparePrompts={onComparePrompts}
          onEvalDataset={onEvalDataset}
          errors={errors}
        />
      )}
      {selected?.verdict === "warnings" && (
        <Banner tone="warning">
          This version validated with warnings. It can train; <Link to={`/datasets/${selected.id}`}>look at its report</Link> to see what may hurt quality.
        </Banner>
      )}
    </div>
  );
}
