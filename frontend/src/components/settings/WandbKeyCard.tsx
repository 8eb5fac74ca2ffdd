// Settings → Weights & Biases: the API key training jobs with "Report to: W&B" log with. Write-only like the Hugging
// Face token: stored encrypted, only its last 4 characters are ever shown again.
import { useState, type FormEvent } from "react";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { api, ApiError, errorMessage } from "../../api/client";
import { Icon } from "../Icon";
import { Banner, Button, Card, Field, Spinner } from "../ui";

interface WandbKeyStatus {
  present: boolean;
  last4: string;
}

const KEY = ["auth", "wandb-key"] as const;
const PATH = "/api/auth/wandb-key/";

export function WandbKeyCard() {
  const queryClient = useQueryClient();
  const status = useQuery({ queryKey: KEY, queryFn: ({ signal }) => api.get<WandbKeyStatus>(PATH, signal) });
  const save = useMutation({
    mutationFn: (key: string) => api.post<WandbKeyStatus>(PATH, { key }),
    onSuccess: (saved) => {
      queryClient.setQueryData<WandbKeyStatus>(KEY, saved);
      void queryClient.invalidateQueries({ queryKey: ["auth", "me"] });
    },
  });
  const remove = useMutation({
    mutationFn: () => api.delete(PATH),
    onSuccess: () => {
      queryClient.setQueryData<WandbKeyStatus>(KEY, { present: false, last4: "" });
      void queryClient.invalidateQueries({ queryKey: ["auth", "me"] });
    },
  });
  const [key, setKey] = useState("");
  const [emptyError, setEmptyError] = useState<string>();

  const submit = (event: FormEvent) => {
    event.preventDefault();
    remove.reset();
    if (!key.trim()) {
      setEmptyError("Paste a Weights & Biases API key first.");
      return;
    }
    save.mutate(key.trim(), { onSuccess: () => setKey("") });
  };
  const onDelete = () => {
    if (!window.confirm("Delete your saved Weights & Biases API key? New jobs cannot report to W&B until you add one.")) return;
    save.reset();
    remove.mutate();
  };

  const saveError = save.error instanceof ApiError ? save.error : null;
  const keyError =
    emptyError ?? (saveError && saveError.status === 400 ? saveError.field("key") ?? saveError.detail : undefined);
  const saveBanner = save.error && !(saveError && saveError.status === 400) ? errorMessage(save.error) : null;

  return (
    <Card
      title="Weights & Biases"
      icon="activity"
      testId="wandb-key-card"
      description={
        <>
          Training jobs that report to W&B log their metrics with this API key. Find yours at{" "}
          <a href="https://wandb.ai/authorize" target="_blank" rel="noreferrer">
            wandb.ai/authorize
          </a>
          . It is stored encrypted and never shown again.
        </>
      }
    >
      <div className="hf-status" data-testid="wandb-key-status">
        {status.isPending ? (
          <Spinner label="Loading key status" />
        ) : status.isError ? (
          <span className="text-danger">{errorMessage(status.error)}</span>
        ) : (
          <>
            <span className={`hf-status__icon ${status.data.present ? "is-ok" : ""}`}>
              <Icon name={status.data.present ? "check" : "key"} size={15} />
            </span>
            <span>
              {status.data.present
                ? `Saved key ending in ••••${status.data.last4}`
                : "No key saved. Add one to report training jobs to Weights & Biases."}
            </span>
          </>
        )}
      </div>
      <form className="form" onSubmit={submit} noValidate>
        {saveBanner && <Banner tone="error">{saveBanner}</Banner>}
        {remove.isError && <Banner tone="error">{errorMessage(remove.error)}</Banner>}
        {save.isSuccess && <Banner tone="success" testId="wandb-key-saved">API key saved.</Banner>}
        {remove.isSuccess && <Banner tone="success">API key deleted.</Banner>}
        <Field
          label="W&B API key"
          hint={status.data?.present ? "Saving a new key replaces the current one." : undefined}
          name="wandb_key"
          type="password"
          autoComplete="off"
          spellCheck={false}
          value={key}
          onChange={(e) => {
            setKey(e.target.value);
            setEmptyError(undefined);
            if (save.isError || save.isSuccess) save.reset();
          }}
          error={keyError}
        />
        <div className="form__actions">
          <Button type="submit" variant="primary" loading={save.isPending}>
            Save key
          </Button>
          {status.data?.present && (
            <Button type="button" variant="danger" onClick={onDelete} loading={remove.isPending}>
              Delete key
            </Button>
          )}
        </div>
      </form>
    </Card>
  );
}
