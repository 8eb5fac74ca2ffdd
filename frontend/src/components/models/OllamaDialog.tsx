// "Import to Ollama": a model name checked against Ollama's pattern as it is typed, then the import's progress
// (GGUF export, Modelfile, blob upload, create, verification) and the `ollama run <name>` command to copy.
import { useEffect, useState, type FormEvent } from "react";
import { useQueryClient } from "@tanstack/react-query";
import { useMe } from "../../api/auth";
import { ApiError, errorMessage } from "../../api/client";
import { GGUF_QUANTIZATIONS, modelKeys, OLLAMA_NAME_PATTERN, useOllamaImport, useStartOllamaImport, type FineTunedModel, type OllamaImport } from "../../api/models";
import { mergeLive, type LiveTask } from "../../hooks/useTaskFeed";
import { Dialog } from "../Dialog";
import { Banner, Button, Field } from "../ui";
import { CommandLine, TaskProgress } from "./TaskBits";

export function suggestOllamaName(model: FineTunedModel): string {
  const slug = model.name
    .toLowerCase()
    .replace(/[^a-z0-9._-]+/g, "-")
    .replace(/^[^a-z0-9]+/, "")
    .slice(0, 60);
  return `${slug || "model"}:v${model.version}`;
}

/** The user's Ollama namespace, as the server derives it (models_app/ollama.py `namespace_of`): every import is
 * `<namespace>/<name>`, so nobody can overwrite another user's `ollama run` name. */
export function ollamaNamespace(username: string, userId: number): string {
  const slug = username
    .toLowerCase()
    .replace(/[^a-z0-9._-]+/g, "-")
    .replace(/^[-._]+|[-._]+$/g, "")
    .slice(0, 63);
  return slug || `user${userId}`;
}

export function ollamaNameError(value: string, namespace?: string): string | undefined {
  if (!value) return "Enter a model name.";
  if (value !== value.trim()) return "Remove the spaces around the name.";
  if (/[A-Z]/.test(value)) return "Use lowercase letters only.";
  const slash = value.lastIndexOf("/");
  if (slash >= 0) {
    if (namespace !== undefined && value.slice(0, slash) !== namespace) return `Your models live in your namespace "${namespace}/".`;
    value = value.slice(slash + 1);
  }
  if (!OLLAMA_NAME_PATTERN.test(value)) {
    return "Use lowercase letters, digits, '.', '_' or '-' (starting with a letter or digit, up to 63), optionally ':tag'.";
  }
  return undefined;
}

export function OllamaResult({ item }: { item: OllamaImport }) {
  if (item.status === "succeeded") {
    return (
      <Banner tone="success" title="Imported to Ollama" testId="ollama-result">
        <p>
          <span className="mono">{item.ollama_name}</span> was created and answered the test prompt. Run it with:
        </p>
        <CommandLine command={item.run_command || `ollama run ${item.ollama_name}`} testId="ollama-run-command" />
      </Banner>
    );
  }
  if (item.status === "failed") {
    return (
      <Banner tone="error" title="The import failed" testId="ollama-error">
        <p className="md-error-text">{item.error || "Ollama did not accept the model."}</p>
      </Banner>
    );
  }
  return null;
}

export function OllamaDialog({
  model,
  open,
  onClose,
  live,
}: {
  model: FineTunedModel;
  open: boolean;
  onClose: () => void;
  live: (kind: string, id: number) => LiveTask | undefined;
}) {
  const start = useStartOllamaImport(model.id);
  const [name, setName] = useState(() => suggestOllamaName(model));
  const [quantization, setQuantization] = useState("q8_0");
  const [importId, setImportId] = useState<number | null>(null);
  const item = useOllamaImport(importId);
  const current = item.data ? mergeLive(item.data, live("ollama", item.data.id)) : null;
  const me = useMe();
  const namespace = me.data ? ollamaNamespace(me.data.username, me.data.id) : undefined;
  const clientError = ollamaNameError(name, namespace);
  const fullName = name.includes("/") || !namespace ? name : `${namespace}/${name}`;
  const serverError = start.error instanceof ApiError ? (start.error.field("name") ?? start.error.field("ollama_name")) : undefined;
  const running = current?.status === "queued" || current?.status === "running";
  const queryClient = useQueryClient();
  // A finished task changes the model page's history list: refresh it.
  useEffect(() => {
    if (current && !running) void queryClient.invalidateQueries({ queryKey: modelKeys.imports(model.id) });
  }, [current?.status]); // eslint-disable-line react-hooks/exhaustive-deps

  const submit = (event: FormEvent) => {
    event.preventDefault();
    if (clientError) return;
    start.mutate({ name, quantization }, { onSuccess: (created) => setImportId(created.id) });
  };
  const again = () => {
    setImportId(null);
    start.reset();
  };
  const close = () => {
    onClose();
    if (!running) again();
  };

  return (
    <Dialog
      size="sm"
      open={open}
      onClose={close}
      title="Import to Ollama"
      description="Exports a verified GGUF, writes a Modelfile from the model's own chat template and creates the model on this deployment's Ollama server."
      testId="ollama-dialog"
      footer={
        current ? (
          <>
            {current.status === "failed" && (
              <Button variant="ghost" onClick={again}>
                Try again
              </Button>
            )}
            <Button variant={current.status === "succeeded" ? "primary" : "secondary"} onClick={close}>
              {running ? "Hide (keeps importing)" : "Close"}
            </Button>
          </>
        ) : (
          <>
            <Button variant="ghost" onClick={close}>
              Cancel
            </Button>
            <Button variant="primary" type="submit" form="ollama-form" loading={start.isPending} disabled={!!clientError} data-testid="ollama-submit">
              Import
            </Button>
          </>
        )
      }
    >
      {!current ? (
        <form id="ollama-form" className="md-form" onSubmit={submit} noValidate>
          <Field
            label="Ollama model name"
            id="ollama-name"
            value={name}
            onChange={(e) => setName(e.target.value)}
            error={name ? (clientError ?? serverError) : serverError}
            hint={
              <>
                Lowercase, like <span className="mono">my-model</span> or <span className="mono">my-model:v2</span>, imported in your
                namespace. You will run it with <span className="mono" data-testid="ollama-run-preview">ollama run {name ? fullName : "…"}</span>.
              </>
            }
            autoComplete="off"
            spellCheck={false}
            autoFocus
          />
          <div className="field">
            <div className="field__label-row">
              <label htmlFor="ollama-quantization" className="field__label">
                Quantization
              </label>
            </div>
            <select
              id="ollama-quantization"
              className="input"
              value={quantization}
              onChange={(e) => setQuantization(e.target.value)}
              aria-describedby="ollama-quantization-hint"
              data-testid="ollama-quantization"
            >
              {GGUF_QUANTIZATIONS.map((q) => (
                <option key={q.value} value={q.value}>
                  {q.label}
                </option>
              ))}
            </select>
            <p id="ollama-quantization-hint" className="field__hint">
              {GGUF_QUANTIZATIONS.find((q) => q.value === quantization)?.hint} The GGUF is checked in llama.cpp first.
            </p>
          </div>
          {start.isError && !serverError && <Banner tone="error">{errorMessage(start.error)}</Banner>}
        </form>
      ) : (
        <div className="md-task-body" data-testid="ollama-status" data-status={current.status}>
          <div className="md-task-body__head">
            <span className="mono">{current.ollama_name}</span>
          </div>
          {running && <TaskProgress progress={current.progress} status={current.status} stage={current.stage} label="Import progress" testId="ollama-progress" />}
          <OllamaResult item={current} />
          {item.isError && <Banner tone="error">{errorMessage(item.error)}</Banner>}
        </div>
      )}
    </Dialog>
  );
}
