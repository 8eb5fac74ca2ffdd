// /datasets: every dataset (and version) of the user, with status, verdict and size.
import { useState } from "react";
import { Link, useNavigate } from "react-router-dom";
import { isBusy, useDatasets } from "../../api/datasets";
import { errorMessage } from "../../api/client";
import type { Dataset } from "../../api/types";
import { Icon } from "../../components/Icon";
import { Banner, Button, Card, EmptyState, PageHeader, Spinner } from "../../components/ui";
import { InlineProgress, StatusBadge, VerdictBadge } from "../../components/datasets/Badges";
import { formatLabel } from "../../components/datasets/labels";
import { formatBytes, formatDate, formatNumber } from "../../lib/format";

function UploadLink({ primary = true }: { primary?: boolean }) {
  return (
    <Link to="/datasets/upload" className={`btn btn--${primary ? "primary" : "secondary"} btn--md ds-link-btn`}>
      <Icon name="upload" size={16} />
      <span>Upload dataset</span>
    </Link>
  );
}

function DatasetRow({ dataset }: { dataset: Dataset }) {
  const navigate = useNavigate();
  const href = `/datasets/${dataset.id}`;
  return (
    <tr
      className="ds-row"
      data-testid="dataset-row"
      onClick={(e) => {
        // The whole row opens the dataset; the name stays a real link for keyboard and middle-click.
        if (!(e.target as HTMLElement).closest("a, button")) navigate(href);
      }}
    >
      <td className="strong">
        <Link to={href} className="ds-name-link">
          {dataset.name}
        </Link>
        {dataset.original_filename && dataset.original_filename !== dataset.name && (
          <span className="ds-sub">{dataset.original_filename}</span>
        )}
      </td>
      <td title={formatLabel(dataset.format)}>{formatLabel(dataset.format, true)}</td>
      <td>
        <span className="ds-status-cell">
          <StatusBadge status={dataset.status} />
          {isBusy(dataset.status) && <InlineProgress progress={dataset.progress} label={`Processing ${dataset.name}`} />}
        </span>
      </td>
      <td className="num">{isBusy(dataset.status) ? "—" : formatNumber(dataset.row_count)}</td>
      <td className="num">{formatBytes(dataset.size_bytes)}</td>
      <td>
        <VerdictBadge verdict={dataset.verdict} />
      </td>
      <td>{formatDate(dataset.created)}</td>
      <td>
        <span
          className="ds-version"
          title={dataset.operation?.type && dataset.operation.type !== "upload" ? `Created by ${dataset.operation.type}` : undefined}
        >
          v{dataset.version}
        </span>
      </td>
    </tr>
  );
}

export default function DatasetsListPage() {
  const [url, setUrl] = useState("/api/datasets/");
  const datasets = useDatasets(url);
  const page = datasets.data;

  return (
    <>
      <PageHeader
        title="Datasets"
        description="Training data you have uploaded, validated and prepared."
        actions={page && page.count > 0 ? <UploadLink /> : undefined}
      />
      <Card>
        {datasets.isPending ? (
          <div className="center-pad">
            <Spinner label="Loading datasets" />
          </div>
        ) : datasets.isError ? (
          <Banner tone="error">{errorMessage(datasets.error)}</Banner>
        ) : page && page.results.length === 0 && !page.previous ? (
          <EmptyState icon="datasets" title="No datasets yet" action={<UploadLink />}>
            Upload chat, instruction or preference data as JSON Lines, JSON, CSV or Parquet. Each upload is checked row by
            row, so you know it will train before you start a run.
          </EmptyState>
        ) : (
          <>
            <div className="table-wrap">
              <table className="table ds-table" data-testid="datasets-table">
                <thead>
                  <tr>
                    <th scope="col">Name</th>
                    <th scope="col">Format</th>
                    <th scope="col">Status</th>
                    <th scope="col" className="num">
                      Rows
                    </th>
                    <th scope="col" className="num">
                      Size
                    </th>
                    <th scope="col">Verdict</th>
                    <th scope="col">Created</th>
                    <th scope="col">Version</th>
                  </tr>
                </thead>
                <tbody>
                  {page?.results.map((dataset) => (
                    <DatasetRow key={dataset.id} dataset={dataset} />
                  ))}
                </tbody>
              </table>
            </div>
            {page && (page.next || page.previous) && (
              <div className="ds-pager">
                <span className="muted small">{formatNumber(page.count)} datasets</span>
                <div className="ds-pager__buttons">
                  <Button size="sm" disabled={!page.previous} onClick={() => page.previous && setUrl(page.previous)}>
                    Previous page
                  </Button>
                  <Button size="sm" disabled={!page.next} onClick={() => page.next && setUrl(page.next)}>
                    Next page
                  </Button>
                </div>
              </div>
            )}
          </>
        )}
      </Card>
    </>
  );
}
