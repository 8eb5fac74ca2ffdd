// The model page's Export card: one button per format, each export's progress, its download link (a short-lived
// signed URL asked for on click) and, for GGUF, the llama.cpp verification result.
import { useState } from "react";
import { errorMessage } from "../../api/client";
import {
  fetchDownloadLink,
  GGUF_QUANTIZATIONS,
  useExports,
  useStartExport,
  type FineTunedModel,
  type ModelExport,
  type Verification,
} from "../../api/models";
import { mergeLive, type LiveTask } from "../../hooks/useTaskFeed";
import { Banner, Button, Card } from "../ui";
import { exportLabel, TaskProgress, TaskStatusBadge } from "./TaskBits";
import { formatBytes, formatRelative } from "../../lib/format";

const CHOICES: { key: string; format: ModelExport["format"]; quantization?: string; label: string; hint: string }[] = [
  { key: "adapter", format: "adapter", label: "Adapter", hint: "The LoRA adapter alone (small); load it on top of the base model." },
  { key: "merged", format: "merged", label: "Merged", hint: "The adapter merged into the base weights: a plain safetensors model." },
  ...GGUF_QUANTIZATIONS.map((q) => ({
    key: `gguf-${q.value}`,
    format: "gguf" as const,
    quantization: q.value,
    label: `GGUF ${q.label}`,
    hint: `For llama.cpp and Ollama. ${q.hint} Verified in llama.cpp before it is offered.`,
  })),
];

function asRecord(value: unknown): Record<string, unknown> | null {
  return value && typeof value === "object" && !Array.isArray(value) ? (value as Record<string, unknown>) : null;
}

function pickString(obj: Record<string, unknown>, keys: string[]): string | undefined {
  for (const key of keys) {
    const value = obj[key];
    if (typeof value === "string") return value;
  }
  return undefined;
}

function pickBool(obj: Record<string, unknown>, keys: string[]): boolean | undefined {
  for (const key of keys) {
    const value = obj[key];
    if (typeof value === "boolean") return value;
  }
  return undefined;
}

/** Verdict of a GGUF verification: true (answers match), false (mismatch), null (not run). */
export function verificationPassed(v: Verification | null | undefined): boolean | null {
  const obj = asRecord(v);
  if (!obj || !Object.keys(obj).length) return null;
  const flag = pickBool(obj, ["passed", "ok", "matched", "match", "verified", "success"]);
  if (flag !== undefined) return flag;
  const verdict = pickString(obj, ["verdict", "status", "result"]);
  if (verdict) return /^(pass|passed|ok|match|matched|verified|success)$/i.test(verdict);
  return null;
}

interface Case {
  prompt: string;
  expected?: string;
  actual?: string;
  match?: boolean;
  reason?: string;
}

function verificationCases(v: Verification): Case[] {
  const obj = asRecord(v) ?? {};
  for (const key of ["prompts", "results", "cases", "golden", "checks", "comparisons"]) {
    const list = obj[key];
    if (!Array.isArray(list)) continue;
    return list
      .map(asRecord)
      .filter((item): item is Record<string, unknown> => item !== null)
      .map((item) => ({
        prompt: pickString(item, ["prompt", "question", "input"]) ?? "",
        expected: pickString(item, ["expected", "reference", "transformers", "hf", "hf_answer", "transformers_answer", "torch"]),
        actual: pickString(item, ["llama_answer", "actual", "llama_cpp", "llamacpp", "gguf", "got", "gguf_answer", "llama_cpp_answer"]),
        match: pickBool(item, ["match", "matched", "ok", "passed", "equal"]),
        reason: pickString(item, ["reason"]),
      }));
  }
  return [];
}

export function VerificationResult({ verification, testId }: { verification: Verification | null | undefined; testId?: string }) {
  const passed = verificationPassed(verification);
  if (passed === null || !verification) return <span className="muted small">Not verified yet</span>;
  const obj = asRecord(verification) ?? {};
  const problems = Array.isArray(obj.problems) ? obj.problems.filter((p): p is string => typeof p === "string") : [];
  const message = pickString(obj, ["message", "explanation", "detail", "reason", "summary"]) ?? (problems.length ? problems.join(" ") : undefined);
  const cases = verificationCases(verification);
  const matched = cases.filter((c) => c.match).length;
  const speed = typeof obj.decode_tokens_per_second === "number" ? obj.decode_tokens_per_second : null;
  return (
    <div className="md-verify" data-testid={testId} data-passed={passed}>
      <span className={`tr-badge ${passed ? "tr-badge--success" : "tr-badge--danger"}`}>
        {passed ? "Verified with llama.cpp" : "Verification failed"}
      </span>
      {cases.length > 0 && (
        <span className="muted small">
          {matched}/{cases.length} golden {cases.length === 1 ? "prompt matches" : "prompts match"} the transformers model
          {speed !== null ? ` · llama.cpp ${speed.toFixed(0)} tokens/s` : ""}
        </span>
      )}
      {message && <p className="small md-verify__message">{message}</p>}
      {cases.length > 0 && (
        <details className="md-verify__details">
          <summary>Golden prompts</summary>
          <ul className="md-verify__cases">
            {cases.map((c, i) => (
              <li key={i} className={c.match === false ? "is-bad" : undefined}>
                <div className="md-verify__prompt">{c.prompt || `Prompt ${i + 1}`}</div>
                {c.expected !== undefined && (
                  <div>
                    <span className="muted">transformers:</span> {c.expected}
                  </div>
                )}
                {c.actual !== undefined && (
                  <div>
                    <span className="muted">llama.cpp:</span> {c.actual}
                  </div>
                )}
                {c.match === false && c.reason && <div className="text-danger">{c.reason}</div>}
              </li>
            ))}
          </ul>
        </details>
      )}
    </div>
  );
}

function DownloadButton({ item }: { item: ModelExport }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const download = async () => {
    setBusy(true);
    setError(null);
    try {
      const url = await fetchDownloadLink(item.id);
      window.location.assign(url);
    } catch (err) {
      setError(errorMessage(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <span className="md-download">
      <Button size="sm" icon="download" className="md-download__btn" loading={busy} onClick={() => void download()} data-testid="export-download">
        Download
      </Button>
      {error && <span className="field__error">{error}</span>}
    </span>
  );
}

function ExportRow({ item }: { item: ModelExport }) {
  const active = item.status === "queued" || item.status === "running";
  const label = exportLabel(item.format, item.quantization);
  return (
    <li className="md-export" data-testid="export-row" data-format={item.format} data-quantization={item.quantization || ""} data-status={item.status}>
      <div className="md-export__main">
        <div className="md-export__title">
          <span className="strong">{label}</span>
          {!active && <TaskStatusBadge status={item.status} />}
        </div>
        <div className="muted small">
          {[item.size_bytes ? formatBytes(item.size_bytes) : null, formatRelative(item.created)].filter(Boolean).join(" · ")}
        </div>
      </div>
      <div className="md-export__status">
        {active && <TaskProgress progress={item.progress} status={item.status} stage={item.stage} label={`${label} export progress`} testId="export-progress" />}
        {item.format === "gguf" && !active && <VerificationResult verification={item.verification} testId="export-verification" />}
        {item.status === "failed" && item.error && (
          <p className="md-error-text" data-testid="export-error">
            {item.error}
          </p>
        )}
      </div>
      <div className="md-export__actions">{item.status === "succeeded" && <DownloadButton item={item} />}</div>
    </li>
  );
}

export function ExportsCard({ model, live }: { model: FineTunedModel; live: (kind: string, id: number) => LiveTask | undefined }) {
  const exports = useExports(model.id);
  const start = useStartExport(model.id);
  const rows = (exports.data ?? []).map((row) => mergeLive(row, live("export", row.id)));
  const busyKey = (format: string, quantization?: string) =>
    rows.some((r) => r.format === format && (r.quantization || "") === (quantization ?? "") && (r.status === "queued" || r.status === "running"));
  const full = model.weights === "full";
  return (
    <Card title="Export" icon="download" testId="exports-card" description="Download the model to run it elsewhere. GGUF files are checked in llama.cpp against the transformers model before they are offered.">
      <div className="md-export-buttons" role="group" aria-label="Export formats">
        {CHOICES.map((choice) => {
          const disabled = choice.format === "adapter" && full;
          const running = busyKey(choice.format, choice.quantization);
          return (
            <Button
              key={choice.key}
              icon="download"
              size="sm"
              disabled={disabled || running}
              loading={start.isPending && start.variables?.format === choice.format && (start.variables?.quantization ?? "") === (choice.quantization ?? "")}
              title={disabled ? "A fully fine-tuned model has no adapter: export it merged." : choice.hint}
              onClick={() => start.mutate({ format: choice.format, ...(choice.quantization ? { quantization: choice.quantization } : {}) })}
              data-testid={`export-${choice.key}`}
            >
              {choice.label}
            </Button>
          );
        })}
      </div>
      {start.isError && <Banner tone="error">{errorMessage(start.error)}</Banner>}
      {exports.isError ? (
        <Banner tone="error">{errorMessage(exports.error)}</Banner>
      ) : rows.length === 0 ? (
        <p className="muted small md-empty-line">{exports.isPending ? "Loading exports…" : "No exports yet. Pick a format above."}</p>
      ) : (
        <ul className="md-exports" data-testid="exports-list">
          {rows.map((row) => (
            <ExportRow key={row.id} item={row} />
          ))}
        </ul>
      )}
    </Card>
  );
}
