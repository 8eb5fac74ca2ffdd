// The evaluation report of a fine-tuned model: base and fine-tuned answers to held-out prompts side by side, with
// loss / perplexity on those prompts and, where a row has a reference answer, exact match and ROUGE-L.
import type { FineTunedModel } from "../../api/models";
import { Card, EmptyState } from "../ui";
import { formatFloat } from "../../lib/format";

interface ChatMessage {
  role: string;
  content: string;
}

interface AnswerScores {
  exact_match: number;
  rouge_l: number;
}

interface ReportRow {
  messages: ChatMessage[];
  reference: string | null;
  base: string;
  finetuned: string;
  changed: boolean;
  base_scores?: AnswerScores | null;
  finetuned_scores?: AnswerScores | null;
}

interface ReportSummary {
  prompts?: number;
  prompts_changed?: number;
  references?: number;
  base_loss?: number | null;
  finetuned_loss?: number | null;
  base_perplexity?: number | null;
  finetuned_perplexity?: number | null;
  examples_improved?: number;
  base_exact_match?: number;
  finetuned_exact_match?: number;
  base_rouge_l?: number;
  finetuned_rouge_l?: number;
  seconds?: number;
}

/** `eval_report` of GET /api/models/<id>/: loss before/after training plus the base vs fine-tuned comparison. */
export interface EvalReport {
  eval_loss_before?: number;
  eval_loss_after?: number;
  perplexity_before?: number;
  perplexity_after?: number;
  comparison?: {
    prompts?: ReportRow[];
    summary?: ReportSummary;
    generation?: { max_new_tokens?: number; greedy?: boolean };
  } | null;
}

type Better = "lower" | "higher";

interface MetricRow {
  label: string;
  base: number | null | undefined;
  tuned: number | null | undefined;
  better: Better;
  percent?: boolean;
}

function show(value: number | null | undefined, percent = false): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return "—";
  return percent ? `${(value * 100).toFixed(1)}%` : formatFloat(value, 4);
}

function change(row: MetricRow): { text: string; good: boolean | null } {
  if (row.base == null || row.tuned == null) return { text: "", good: null };
  const delta = row.tuned - row.base;
  if (delta === 0) return { text: "no change", good: null };
  const text = row.percent ? `${delta > 0 ? "+" : ""}${(delta * 100).toFixed(1)} pts` : `${delta > 0 ? "+" : ""}${formatFloat(delta, 4)}`;
  return { text, good: row.better === "lower" ? delta < 0 : delta > 0 };
}

function lastUserMessage(messages: ChatMessage[]): string {
  for (let i = messages.length - 1; i >= 0; i -= 1) {
    if (messages[i].role === "user") return messages[i].content;
  }
  return messages.length ? messages[messages.length - 1].content : "";
}

function Scores({ scores }: { scores?: AnswerScores | null }) {
  if (!scores) return null;
  return (
    <span className="ev-scores">
      <span className={scores.exact_match ? "ev-badge ev-badge--good" : "ev-badge"}>{scores.exact_match ? "exact" : "not exact"}</span>
      <span className="ev-badge">ROUGE-L {scores.rouge_l.toFixed(2)}</span>
    </span>
  );
}

export function EvaluationCard({ model }: { model: FineTunedModel }) {
  const report = (model.eval_report ?? null) as EvalReport | null;
  const comparison = report?.comparison ?? null;
  const summary = comparison?.summary ?? {};
  const rows = comparison?.prompts ?? [];
  const metrics: MetricRow[] = [
    {
      label: "Loss (held-out, assistant tokens)",
      base: summary.base_loss ?? report?.eval_loss_before,
      tuned: summary.finetuned_loss ?? report?.eval_loss_after,
      better: "lower",
    },
    {
      label: "Perplexity",
      base: summary.base_perplexity ?? report?.perplexity_before,
      tuned: summary.finetuned_perplexity ?? report?.perplexity_after,
      better: "lower",
    },
  ];
  if (summary.references) {
    metrics.push(
      { label: "Exact match", base: summary.base_exact_match, tuned: summary.finetuned_exact_match, better: "higher", percent: true },
      { label: "ROUGE-L F1", base: summary.base_rouge_l, tuned: summary.finetuned_rouge_l, better: "higher" },
    );
  }
  const shown = metrics.filter((m) => m.base != null || m.tuned != null);
  return (
    <Card
      title="Evaluation report"
      icon="activity"
      testId="evaluation-card"
      description="The base model and this model answer the same held-out prompts (greedy decoding)."
    >
      {!report ? (
        <EmptyState icon="activity" title="No evaluation report">
          The job that trained this model did not evaluate it. Choose “Evaluation prompts” in the training wizard’s
          evaluation options to get base and fine-tuned answers side by side.
        </EmptyState>
      ) : (
        <>
          {shown.length > 0 && (
            <div className="table-wrap">
              <table className="table ev-summary" data-testid="evaluation-summary">
                <thead>
                  <tr>
                    <th scope="col">Metric</th>
                    <th scope="col">Base</th>
                    <th scope="col">Fine-tuned</th>
                    <th scope="col">Change</th>
                  </tr>
                </thead>
                <tbody>
                  {shown.map((m) => {
                    const c = change(m);
                    return (
                      <tr key={m.label}>
                        <td>{m.label}</td>
                        <td className="mono">{show(m.base, m.percent)}</td>
                        <td className="mono strong">{show(m.tuned, m.percent)}</td>
                        <td className={c.good === null ? "muted" : c.good ? "ev-good" : "ev-bad"}>{c.text}</td>
                      </tr>
                    );
                  })}
                </tbody>
              </table>
            </div>
          )}
          {comparison && (
            <p className="muted small" data-testid="evaluation-counts">
              {summary.prompts ?? rows.length} prompts, {summary.references ?? 0} with a reference answer;{" "}
              {summary.prompts_changed ?? 0} answers changed
              {summary.examples_improved !== undefined ? `, ${summary.examples_improved} prompts scored a lower loss` : ""}.
            </p>
          )}
          {rows.length > 0 && (
            <ol className="ev-rows" data-testid="evaluation-rows">
              {rows.map((row, i) => (
                <li key={i} className="ev-row">
                  <div className="ev-row__prompt">
                    <span className="ev-label">Prompt</span>
                    <p>{lastUserMessage(row.messages)}</p>
                  </div>
                  {row.reference && (
                    <div className="ev-row__reference">
                      <span className="ev-label">Reference</span>
                      <p>{row.reference}</p>
                    </div>
                  )}
                  <div className="ev-row__answers">
                    <div className="ev-answer">
                      <span className="ev-label">
                        Base <Scores scores={row.base_scores} />
                      </span>
                      <p>{row.base || <em className="muted">(empty)</em>}</p>
                    </div>
                    <div className={`ev-answer ev-answer--tuned${row.changed ? " is-changed" : ""}`}>
                      <span className="ev-label">
                        Fine-tuned <Scores scores={row.finetuned_scores} />
                      </span>
                      <p>{row.finetuned || <em className="muted">(empty)</em>}</p>
                    </div>
                  </div>
                </li>
              ))}
            </ol>
          )}
        </>
      )}
    </Card>
  );
}
