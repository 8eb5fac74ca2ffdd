// "Push to Hugging Face": repo name and visibility, then the push's progress, the repository URL, or the Hub's
// error in plain words with Retry when another try may succeed (rate limit, server error, network).
import { useEffect, useState, type FormEvent } from "react";
import { useQueryClient } from "@tanstack/react-query";
import { Link } from "react-router-dom";
import { useHfToken } from "../../api/auth";
import { ApiError, errorMessage } from "../../api/client";
import { modelKeys, usePush, useRetryPush, useStartPush, type FineTunedModel, type HubPush } from "../../api/models";
import { mergeLive, type LiveTask } from "../../hooks/useTaskFeed";
import { Dialog } from "../Dialog";
import { Banner, Button, Field } from "../ui";
import { TaskProgress } from "./TaskBits";

/** Repo names the Hub accepts: letters, digits, '-', '_', '.', up to 96 characters, not starting/ending with '-' or '.'. */
const REPO_NAME = /^(?![.-])[A-Za-z0-9._-]{1,96}(?<![.-])$/;

export function suggestRepoName(model: FineTunedModel): string {
  const slug = model.name
    .toLowerCase()
    .replace(/[^a-z0-9._-]+/g, "-")
    .replace(/^[-.]+|[-.]+$/g, "")
    .slice(0, 80);
  return slug || `model-${model.id}`;
}

function repoNameError(value: string): string | undefined {
  const name = value.trim();
  if (!name) return "Enter a repository name.";
  const parts = name.split("/");
  if (parts.length > 2) return "Use `name`, or `organisation/name` for one of your organisations.";
  if (!parts.every((part) => REPO_NAME.test(part))) {
    return "Use letters, digits, '-', '_' or '.' (up to 96), not starting or ending with '-' or '.'.";
  }
  return undefined;
}

export function PushResult({ push, onRetry, retrying }: { push: HubPush; onRetry?: () => void; retrying?: boolean }) {
  if (push.status === "succeeded") {
    return (
      <Banner tone="success" title="Pushed to Hugging Face" testId="push-result">
        <p>
          <a href={push.repo_url} target="_blank" rel="noreferrer" data-testid="push-repo-url" className="md-break">
            {push.repo_url}
          </a>
        </p>
        <p className="muted small">
          {push.private ? "Private repository" : "Public repository"}
          {push.commit_sha ? ` · commit ${push.commit_sha.slice(0, 10)}` : ""}. Pushing again adds a new commit.
        </p>
      </Banner>
    );
  }
  if (push.status === "failed") {
    return (
      <Banner tone="error" title="The push failed" testId="push-error">
        <p className="md-error-text">{push.error || "The Hub did not accept the upload."}</p>
        {push.retryable ? (
          <p className="md-inline-actions">
            <span className="muted small">This may work on another try.</span>
            {onRetry && (
              <Button size="sm" variant="primary" onClick={onRetry} loading={retrying} data-testid="push-retry">
                Retry
              </Button>
            )}
          </p>
        ) : (
          <p className="muted small">Fix the cause (for example the token's permissions in Settings), then push again.</p>
        )}
      </Banner>
    );
  }
  return null;
}

export function PushHubDialog({
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
  const token = useHfToken();
  const start = useStartPush(model.id);
  const retry = useRetryPush(model.id);
  const [repoName, setRepoName] = useState(() => suggestRepoName(model));
  const [isPrivate, setIsPrivate] = useState(true);
  const [touched, setTouched] = useState(false);
  const [pushId, setPushId] = useState<number | null>(null);
  const push = usePush(pushId);
  const current = push.data ? mergeLive(push.data, live("push", push.data.id)) : null;
  const nameError = touched ? repoNameError(repoName) : undefined;
  const serverFieldError = start.error instanceof ApiError ? start.error.field("repo_name") : undefined;
  const running = current?.status === "queued" || current?.status === "running";
  const queryClient = useQueryClient();
  // A finished task changes the model page's history list: refresh it.
  useEffect(() => {
    if (current && !running) void queryClient.invalidateQueries({ queryKey: modelKeys.pushes(model.id) });
  }, [current?.status]); // eslint-disable-line react-hooks/exhaustive-deps
  const namespace = token.data?.hf_username;

  const submit = (event: FormEvent) => {
    event.preventDefault();
    setTouched(true);
    if (repoNameError(repoName)) return;
    start.mutate({ repo_name: repoName.trim(), private: isPrivate }, { onSuccess: (p) => setPushId(p.id) });
  };

  const again = () => {
    setPushId(null);
    start.reset();
    retry.reset();
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
      title="Push to Hugging Face"
      description={`Upload ${model.name} v${model.version} (weights, tokenizer, chat template and model card) to a repository on the Hub.`}
      testId="push-dialog"
      footer={
        current ? (
          <>
            {current.status === "failed" && (
              <Button variant="ghost" onClick={again}>
                Edit and push again
              </Button>
            )}
            <Button variant={current.status === "succeeded" ? "primary" : "secondary"} onClick={close}>
              {running ? "Hide (keeps pushing)" : "Close"}
            </Button>
          </>
        ) : (
          <>
            <Button variant="ghost" onClick={close}>
              Cancel
            </Button>
            <Button variant="primary" type="submit" form="push-form" icon="hf" loading={start.isPending} data-testid="push-submit">
              Push
            </Button>
          </>
        )
      }
    >
      {!current ? (
        <form id="push-form" className="md-form" onSubmit={submit} noValidate>
          {token.data && !token.data.present && (
            <Banner tone="warning" title="No Hugging Face token saved">
              Pushing uses your own token with write access. <Link to="/settings">Add one in Settings</Link>.
            </Banner>
          )}
          <Field
            label="Repository name"
            id="push-repo-name"
            value={repoName}
            onChange={(e) => setRepoName(e.target.value)}
            onBlur={() => setTouched(true)}
            error={nameError ?? serverFieldError}
            hint={
              namespace && !repoName.includes("/") ? (
                <>
                  Created as <span className="mono">{namespace}/{repoName.trim() || "…"}</span>. Use <span className="mono">org/name</span> for an organisation.
                </>
              ) : (
                "Created under your Hugging Face account, or the organisation you name."
              )
            }
            autoComplete="off"
            spellCheck={false}
            autoFocus
          />
          <label className="md-check">
            <input type="checkbox" checked={isPrivate} onChange={(e) => setIsPrivate(e.target.checked)} data-testid="push-private" />
            <span>
              <span className="md-check__title">Private repository</span>
              <span className="md-check__hint">Only you (and your organisations) can see it. Untick to publish it.</span>
            </span>
          </label>
          {start.isError && !serverFieldError && <Banner tone="error">{errorMessage(start.error)}</Banner>}
        </form>
      ) : (
        <div className="md-task-body" data-testid="push-status" data-status={current.status}>
          <div className="md-task-body__head">
            <span className="mono md-break">{current.repo_id || repoName}</span>
            <span className="muted small">{current.private === false ? "public" : "private"}</span>
          </div>
          {running && <TaskProgress progress={current.progress} status={current.status} stage={current.stage} label="Push progress" testId="push-progress" />}
          <PushResult push={current} retrying={retry.isPending} onRetry={() => retry.mutate(current.id, { onSuccess: (p) => setPushId(p.id) })} />
          {retry.isError && <Banner tone="error">{errorMessage(retry.error)}</Banner>}
          {push.isError && <Banner tone="error">{errorMessage(push.error)}</Banner>}
        </div>
      )}
    </Dialog>
  );
}
