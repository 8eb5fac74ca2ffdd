// Preview: rows rendered with the chat template, trained segments highlighted, ten at a time.
import { useState } from "react";
import { errorMessage } from "../../api/client";
import { useDatasetPreview } from "../../api/datasets";
import type { ChatMessage, Dataset, PreviewRow, PreviewSegment } from "../../api/types";
import { Banner, Button, Card, EmptyState, Spinner } from "../ui";
import { formatNumber } from "../../lib/format";

const LIMIT = 10;

// Tool-calling rows: calls (in trained assistant turns) and results (in the context) are set apart within segments.
const TOOL_CALL = /(<tool_call>[\s\S]*?<\/tool_call>)/;
const TOOL_RESULT = /(<tool_response>[\s\S]*?<\/tool_response>)/;
const TOOL_CALL_STYLE = { boxShadow: "inset 3px 0 0 #1f7a44", fontWeight: 600 } as const;
const TOOL_RESULT_STYLE = { background: "#e9effc", color: "#23407a", borderRadius: 2 } as const;

/** A segment's text with its tool calls (trained segments) or tool results (context) wrapped so they stand out. */
function ToolBlocks({ text, trained }: { text: string; trained: boolean }) {
  const parts = text.split(trained ? TOOL_CALL : TOOL_RESULT);
  if (parts.length === 1) return <>{text}</>;
  return (
    <>
      {parts.map((part, i) =>
        i % 2 === 0 ? (
          part
        ) : part.startsWith("<tool_call>") ? (
          <span key={i} className="seg-tool-call" style={TOOL_CALL_STYLE} title="Tool call (trained)" data-testid="seg-tool-call">
            {part}
          </span>
        ) : (
          <span key={i} className="seg-tool-result" style={TOOL_RESULT_STYLE} title="Tool result (context, not trained)" data-testid="seg-tool-result">
            {part}
          </span>
        ),
      )}
    </>
  );
}

function Legend({ tools = false }: { tools?: boolean }) {
  return (
    <div className="ds-legend" aria-label="Legend">
      <span className="ds-legend__item">
        <span className="ds-legend__swatch seg-trained" aria-hidden="true" />
        trained (assistant tokens)
      </span>
      <span className="ds-legend__item">
        <span className="ds-legend__swatch seg-context" aria-hidden="true" />
        context (not trained)
      </span>
      <span className="ds-legend__item">
        <span className="ds-legend__swatch seg-truncated" aria-hidden="true" />
        cut off (past max length)
      </span>
      {tools && (
        <>
          <span className="ds-legend__item">
            <span className="ds-legend__swatch seg-trained" style={TOOL_CALL_STYLE} aria-hidden="true" />
            tool call (trained)
          </span>
          <span className="ds-legend__item">
            <span className="ds-legend__swatch" style={TOOL_RESULT_STYLE} aria-hidden="true" />
            tool result (context)
          </span>
        </>
      )}
    </div>
  );
}

function Transcript({ messages }: { messages: ChatMessage[] }) {
  return (
    <>
      {messages.map((m, i) => (
        <span key={i} className="ds-turn">
          <span className="ds-turn__role">{m.role}</span>
          {m.content}
        </span>
      ))}
    </>
  );
}

function Segments({ segments }: { segments: PreviewSegment[] }) {
  return (
    <>
      {segments.map((seg, i) => (
        <span
          key={i}
          className={`seg ${seg.truncated ? "seg-truncated" : seg.trained ? "seg-trained" : "seg-context"}`}
          title={seg.truncated ? "Cut off: past max length" : seg.trained ? "Trained" : "Context (not trained)"}
        >
          {seg.truncated ? seg.text : <ToolBlocks text={seg.text} trained={seg.trained} />}
        </span>
      ))}
    </>
  );
}

function Row({ row }: { row: PreviewRow }) {
  const rejected = row.preference?.rejected;
  const rejectedSegments = row.preference?.rejected_segments;
  const calls = (row.messages ?? []).reduce((n, m) => n + (m.tool_calls?.length ?? 0), 0);
  return (
    <article className="ds-preview-row" data-testid="preview-row" data-index={row.index}>
      <header className="ds-preview-row__head">
        <span className="ds-preview-row__index">#{formatNumber(row.index + 1)}</span>
        {row.line !== null && row.line !== undefined && <span className="muted small">line {formatNumber(row.line)}</span>}
        <span className="grow" />
        {row.preference && <span className="badge badge--info">preference pair</span>}
        {row.tools?.length ? (
          <span className="muted small" data-testid="row-tools" title="Tools listed to the model in this row">
            tools: {row.tools.map((t) => t.function.name).join(", ")}
          </span>
        ) : null}
        {calls > 0 && (
          <span className="badge badge--info" data-testid="tool-calls-badge">
            {calls} tool {calls === 1 ? "call" : "calls"}
          </span>
        )}
        {row.truncated && (
          <span className="badge badge--warning" data-testid="truncated-badge">
            truncated
          </span>
        )}
        <span className="ds-preview-row__tokens" data-testid="row-tokens">
          {formatNumber(row.tokens)} tokens
        </span>
      </header>
      <pre className="ds-render" aria-label={`Row ${row.index + 1} as the model sees it`}>
        <Segments segments={row.segments ?? []} />
      </pre>
      {row.preference && (rejectedSegments?.length || rejected?.length) ? (
        <details className="ds-details ds-details--inline">
          <summary>Rejected response (the chosen one is shown above)</summary>
          <pre className="ds-render ds-render--rejected" data-testid="rejected-render">
            {rejectedSegments?.length ? <Segments segments={rejectedSegments} /> : <Transcript messages={rejected ?? []} />}
          </pre>
        </details>
      ) : null}
    </article>
  );
}

export function PreviewTab({ dataset }: { dataset: Dataset }) {
  const [offset, setOffset] = useState(0);
  const preview = useDatasetPreview(dataset, offset, LIMIT);
  const page = preview.data;
  const count = page?.count ?? 0;
  const first = count ? offset + 1 : 0;
  const last = Math.min(offset + LIMIT, count);

  const pager = (
    <div className="ds-pager">
      <span className="muted small" data-testid="preview-range">
        {count ? `Rows ${formatNumber(first)}–${formatNumber(last)} of ${formatNumber(count)}` : "No rows"}
      </span>
      <div className="ds-pager__buttons">
        {preview.isFetching && !preview.isPending && <Spinner size={14} label="Loading rows" />}
        <Button size="sm" onClick={() => setOffset(0)} disabled={offset === 0}>
          First
        </Button>
        <Button size="sm" onClick={() => setOffset(Math.max(0, offset - LIMIT))} disabled={offset === 0}>
          Previous
        </Button>
        <Button size="sm" onClick={() => setOffset(offset + LIMIT)} disabled={offset + LIMIT >= count}>
          Next
        </Button>
      </div>
    </div>
  );

  return (
    <Card
      title="Preview"
      icon="search"
      description="Each row exactly as the model sees it, rendered with the chat template. Only the highlighted tokens are trained."
      actions={<Legend tools={dataset.format === "sharegpt_tools" || dataset.format === "messages_tools"} />}
    >
      {preview.isPending ? (
        <div className="center-pad">
          <Spinner label="Loading preview" />
        </div>
      ) : preview.isError ? (
        <Banner tone="error">{errorMessage(preview.error)}</Banner>
      ) : !page?.results.length ? (
        <EmptyState icon="datasets" title="No rows to preview">
          None of the rows could be read. Fix the format or column mapping and validate again.
        </EmptyState>
      ) : (
        <>
          {pager}
          <div className="ds-preview" data-testid="preview-rows">
            {page.results.map((row) => (
              <Row key={row.index} row={row} />
            ))}
          </div>
        </>
      )}
    </Card>
  );
}
