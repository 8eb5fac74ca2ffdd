// Small pieces shared by the models pages: task status badge and progress bar, copy button, labels.
import { useEffect, useState } from "react";
import type { FineTunedModelInfo } from "../../api/types";
import { Icon } from "../Icon";
import { toPct } from "../../lib/format";

export const TASK_LABEL: Record<string, string> = {
  queued: "Queued",
  running: "Running",
  succeeded: "Done",
  failed: "Failed",
};

const TASK_TONE: Record<string, string> = {
  queued: "neutral",
  running: "info",
  succeeded: "success",
  failed: "danger",
};

export function TaskStatusBadge({ status, testId, label }: { status: string; testId?: string; label?: string }) {
  const live = status === "running";
  return (
    <span className={`tr-badge tr-badge--${TASK_TONE[status] ?? "neutral"}`} data-testid={testId} data-status={status}>
      {live && <span className="tr-badge__pulse" aria-hidden="true" />}
      {label ?? TASK_LABEL[status] ?? status}
    </span>
  );
}

/** A progress bar for a background task: 0..1, indeterminate while queued with no progress. */
export function TaskProgress({
  progress,
  status,
  stage,
  label,
  testId,
}: {
  progress: number | null | undefined;
  status: string;
  stage?: string;
  label: string;
  testId?: string;
}) {
  const pct = status === "succeeded" ? 100 : toPct(progress);
  const indeterminate = status === "queued" && !pct;
  const tone = status === "failed" ? " tr-progress--danger" : status === "succeeded" ? " tr-progress--success" : "";
  return (
    <div className="md-task-progress" data-testid={testId} data-status={status} data-progress={Math.round(pct)}>
      <div
        className={`tr-progress${tone}${indeterminate ? " tr-progress--indeterminate" : ""}`}
        role="progressbar"
        aria-label={label}
        aria-valuemin={0}
        aria-valuemax={100}
        aria-valuenow={indeterminate ? undefined : Math.round(pct)}
      >
        <span className="tr-progress__bar" style={{ width: indeterminate ? "30%" : `${pct}%` }} />
      </div>
      <div className="md-task-progress__meta">
        <span className="md-task-progress__pct">{indeterminate ? "Waiting for a worker" : `${Math.round(pct)}%`}</span>
        {stage && status !== "succeeded" && <span className="md-task-progress__stage">{stage}</span>}
      </div>
    </div>
  );
}

/** Copies `text` to the clipboard (falls back to selecting a hidden textarea on plain-HTTP pages). */
export function CopyButton({ text, label = "Copy", testId }: { text: string; label?: string; testId?: string }) {
  const [copied, setCopied] = useState(false);
  useEffect(() => {
    if (!copied) return;
    const timer = window.setTimeout(() => setCopied(false), 1800);
    return () => window.clearTimeout(timer);
  }, [copied]);
  const copy = async () => {
    try {
      if (navigator.clipboard && window.isSecureContext) {
        await navigator.clipboard.writeText(text);
      } else {
        const area = document.createElement("textarea");
        area.value = text;
        area.setAttribute("readonly", "");
        area.style.position = "fixed";
        area.style.opacity = "0";
        document.body.appendChild(area);
        area.select();
        document.execCommand("copy");
        area.remove();
      }
      setCopied(true);
    } catch {
      setCopied(false);
    }
  };
  return (
    <button type="button" className="btn btn--secondary btn--sm md-copy" onClick={() => void copy()} data-testid={testId} data-copied={copied || undefined}>
      <Icon name={copied ? "check" : "copy"} size={15} />
      <span>{copied ? "Copied" : label}</span>
    </button>
  );
}

/** A command line shown in monospace with its copy button. */
export function CommandLine({ command, testId }: { command: string; testId?: string }) {
  return (
    <div className="md-command">
      <code className="md-command__text" data-testid={testId}>
        {command}
      </code>
      <CopyButton text={command} label="Copy" testId={testId ? `${testId}-copy` : undefined} />
    </div>
  );
}

export function LatestBadge() {
  return (
    <span className="tr-badge tr-badge--accent md-latest" data-testid="latest-badge">
      Latest
    </span>
  );
}

export function modelLabel(model: Pick<FineTunedModelInfo, "name" | "version">): string {
  return `${model.name} v${model.version}`;
}

export const EXPORT_LABEL: Record<string, string> = {
  adapter: "LoRA adapter",
  merged: "Merged safetensors",
  gguf: "GGUF",
};

export function exportLabel(format: string, quantization?: string): string {
  const base = EXPORT_LABEL[format] ?? format;
  return quantization ? `${base} ${quantization.toUpperCase()}` : base;
}
