// Step 2: a ready dataset (one card per lineage), then the version to train on.
import { useMemo } from "react";
import { Link } from "react-router-dom";
import { errorMessage, type FieldErrors } from "../../../../api/client";
import { isKtoFormat, isPreferenceFormat, useDatasetVersionsForTraining } from "../../../../api/training";
import type { Dataset } from "../../../../api/types";
import { Icon } from "../../../../components/Icon";
import { datasetFormatLabel } from "../../../../components/training/labels";
import { Banner, EmptyState, Spinner } from "../../../../components/ui";
import { formatNumber, formatRelative } from "../../../../lib/format";
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
  return `v${v.version}${v.status !== "ready" ? ` (${v.status})` : ""}${v.operation && v.operation.type !== "upload" ? ` · ${v.operation.type}` : ""}${v.is_latest ? " · latest" : ""}`;
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
}: {
  datasets: Dataset[];
  datasetRoot: number | null;
  datasetId: number | null;
  onPick: (root: number, latestId: number) => void;
  onVersion: (id: number) => void;
  errors: FieldErrors;
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
      {selected?.verdict === "warnings" && (
        <Banner tone="warning">
          This version validated with warnings. It can train; <Link to={`/datasets/${selected.id}`}>look at its report</Link> to see what may hurt quality.
        </Banner>
      )}
    </div>
  );
}
