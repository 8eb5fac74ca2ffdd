// /models: the user's fine-tuned models, every version, with the latest badge, base model, method, created and
// final loss; links to the base-model catalogue, the playground and the compare view.
import { useState } from "react";
import { Link, useNavigate } from "react-router-dom";
import { errorMessage } from "../../api/client";
import { finalLoss, isLatest, useModels, type FineTunedModel } from "../../api/models";
import { Icon } from "../../components/Icon";
import { LatestBadge } from "../../components/models/TaskBits";
import { ModelsTabs } from "../../components/models/ModelsTabs";
import { METHOD_LABEL, WEIGHTS_LABEL } from "../../components/training/labels";
import { Banner, Card, EmptyState, PageHeader, Spinner } from "../../components/ui";
import { formatFloat, formatRelative } from "../../lib/format";
import "../../styles/models.css";

function ModelRow({ model }: { model: FineTunedModel }) {
  const navigate = useNavigate();
  const href = `/models/${model.id}`;
  const loss = finalLoss(model);
  return (
    <tr
      className="tr-row"
      data-testid="model-row"
      data-model-id={model.id}
      onClick={(e) => {
        if (!(e.target as HTMLElement).closest("a, button")) navigate(href);
      }}
    >
      <td className="strong tr-name-cell">
        <Link to={href} className="tr-name-link">
          {model.name}
        </Link>
        {model.tag && <span className="tr-sub md-tag">{model.tag}</span>}
      </td>
      <td>
        <span className="md-version-cell">
          <span className="tr-version">v{model.version}</span>
          {isLatest(model) && <LatestBadge />}
        </span>
      </td>
      <td className="tr-ellipsis" title={model.base_model_name}>
        {model.base_model_name}
      </td>
      <td>
        <span className="tr-method">
          {METHOD_LABEL[model.method as keyof typeof METHOD_LABEL] ?? model.method}
          <span className="tr-method__weights">{WEIGHTS_LABEL[model.weights as keyof typeof WEIGHTS_LABEL] ?? model.weights}</span>
        </span>
      </td>
      <td title={new Date(model.created).toLocaleString()}>{formatRelative(model.created)}</td>
      <td className="num">{loss !== null ? formatFloat(loss) : <span className="muted">—</span>}</td>
    </tr>
  );
}

export default function ModelsListPage() {
  const models = useModels();
  const [latestOnly, setLatestOnly] = useState(false);
  const all = models.data ?? [];
  const rows = latestOnly ? all.filter(isLatest) : all;
  return (
    <>
      <PageHeader
        title="Models"
        description="Fine-tuned models from your training runs. Open one to try it, compare versions, export it or share it."
        actions={
          <Link to="/playground" className="btn btn--primary btn--md tr-link-btn">
            <Icon name="spark" size={16} />
            <span>Playground</span>
          </Link>
        }
      />
      <ModelsTabs />
      <Card>
        {models.isPending ? (
          <div className="center-pad">
            <Spinner label="Loading models" />
          </div>
        ) : models.isError ? (
          <Banner tone="error">{errorMessage(models.error)}</Banner>
        ) : all.length === 0 ? (
          <EmptyState
            icon="models"
            title="No fine-tuned models yet"
            action={
              <Link to="/training/new" className="btn btn--primary btn--md tr-link-btn">
                <Icon name="plus" size={16} />
                <span>New training job</span>
              </Link>
            }
          >
            Each successful training run produces a model here that you can chat with, compare, export, push to
            Hugging Face or import into Ollama.
          </EmptyState>
        ) : (
          <>
            <div className="tr-filters md-list-tools">
              <label className="md-check md-check--inline">
                <input type="checkbox" checked={latestOnly} onChange={(e) => setLatestOnly(e.target.checked)} />
                <span>Latest versions only</span>
              </label>
              <Link to="/models/compare" className="btn btn--ghost btn--sm tr-link-btn">
                <span>Compare two versions</span>
              </Link>
            </div>
            <div className="table-wrap">
              <table className="table tr-table" data-testid="models-table">
                <thead>
                  <tr>
                    <th scope="col">Name</th>
                    <th scope="col">Version</th>
                    <th scope="col">Base model</th>
                    <th scope="col">Method</th>
                    <th scope="col">Created</th>
                    <th scope="col" className="num">
                      Final loss
                    </th>
                  </tr>
                </thead>
                <tbody>
                  {rows.map((model) => (
                    <ModelRow key={model.id} model={model} />
                  ))}
                </tbody>
              </table>
            </div>
          </>
        )}
      </Card>
    </>
  );
}
