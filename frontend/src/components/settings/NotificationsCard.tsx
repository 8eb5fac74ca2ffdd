// Settings → Notifications: email when a job ends, an optional signed webhook (URL + secret, write-only) and a
// "Send a test" button that posts a signed `test` event now and shows what the receiver answered.
import { useState, type FormEvent } from "react";
import { useMutation } from "@tanstack/react-query";
import { api, ApiError, errorMessage } from "../../api/client";
import { useUpdateProfile } from "../../api/auth";
import type { User } from "../../api/types";
import { Banner, Button, Card, Field } from "../ui";

interface WebhookTestResult {
  delivered: boolean;
  status_code: number | null;
  detail: string;
}

export function NotificationsCard({ user }: { user: User }) {
  const update = useUpdateProfile();
  const test = useMutation({ mutationFn: () => api.post<WebhookTestResult>("/api/training/notifications/test-webhook/", {}) });
  const [notifyEmail, setNotifyEmail] = useState(user.notify_email ?? true);
  const [url, setUrl] = useState(user.webhook_url ?? "");
  const [secret, setSecret] = useState("");
  const saved = (user.webhook_url ?? "") === url.trim();

  const submit = (event: FormEvent) => {
    event.preventDefault();
    test.reset();
    update.mutate(
      { notify_email: notifyEmail, webhook_url: url.trim(), ...(secret ? { webhook_secret: secret } : {}) },
      { onSuccess: () => setSecret("") },
    );
  };
  const urlError = update.error instanceof ApiError ? update.error.field("webhook_url") : undefined;
  const secretError = update.error instanceof ApiError ? update.error.field("webhook_secret") : undefined;
  return (
    <Card title="Notifications" icon="bell" description="Hear when a training job succeeds or fails." testId="notifications-card">
      <form className="form" onSubmit={submit} noValidate>
        {update.isError && !urlError && !secretError && <Banner tone="error">{errorMessage(update.error)}</Banner>}
        {update.isSuccess && <Banner tone="success" testId="notifications-saved">Notification settings saved.</Banner>}
        <label className="md-check">
          <input type="checkbox" checked={notifyEmail} onChange={(e) => setNotifyEmail(e.target.checked)} data-testid="notify-email" />
          <span>
            <span className="md-check__title">Email me when a job ends</span>
            <span className="md-check__hint">Sent to {user.email || "your email address (set it in your profile)"}, with the final loss or the error.</span>
          </span>
        </label>
        <Field
          label="Webhook URL"
          name="webhook_url"
          type="url"
          value={url}
          onChange={(e) => setUrl(e.target.value)}
          placeholder="https://hooks.example.com/finetune"
          hint="finetune POSTs a JSON event (job.succeeded / job.failed) here. Leave empty for none."
          error={urlError}
          autoComplete="off"
          spellCheck={false}
        />
        <Field
          label="Webhook secret"
          name="webhook_secret"
          type="password"
          value={secret}
          onChange={(e) => setSecret(e.target.value)}
          hint={
            user.has_webhook_secret
              ? "A secret is set: events carry an X-Finetune-Signature (HMAC-SHA256). Type a new one to replace it."
              : "Optional: sign each event with X-Finetune-Signature (HMAC-SHA256 of the body)."
          }
          error={secretError}
          autoComplete="new-password"
        />
        <div className="form__actions">
          <Button type="submit" variant="primary" loading={update.isPending}>
            Save notifications
          </Button>
          <Button
            type="button"
            icon="send"
            disabled={!user.webhook_url || !saved}
            title={!user.webhook_url || !saved ? "Save a webhook URL first." : undefined}
            loading={test.isPending}
            onClick={() => test.mutate()}
            data-testid="webhook-test"
          >
            Send a test
          </Button>
        </div>
        {test.data && (
          <Banner tone={test.data.delivered ? "success" : "error"} testId="webhook-test-result">
            {test.data.detail}
          </Banner>
        )}
        {test.isError && <Banner tone="error">{errorMessage(test.error)}</Banner>}
      </form>
    </Card>
  );
}
