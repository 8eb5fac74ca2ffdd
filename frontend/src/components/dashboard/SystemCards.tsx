// The home page's platform cards: getting-started steps, live system status (/api/health/) and live notifications
// (/ws/notifications/).
import { useEffect } from "react";
import { Link } from "react-router-dom";
import { errorMessage } from "../../api/client";
import { useHealth, useSendTestNotification } from "../../api/system";
import type { Health, NotificationMessage, TaskMessage } from "../../api/types";
import { Icon, type IconName } from "../Icon";
import { Banner, Button, Card, EmptyState, Spinner, StatusDot } from "../ui";
import { useNotificationsSocket, type ReceivedMessage, type SocketState } from "../../hooks/useNotificationsSocket";
import { humanize, toPercent } from "../../lib/format";

const STEPS: { to: string; icon: IconName; title: string; text: string }[] = [
  { to: "/datasets", icon: "upload", title: "Upload a dataset", text: "Chat, instruction or preference data as JSONL, CSV or Parquet." },
  { to: "/training", icon: "training", title: "Launch a training run", text: "SFT, DPO or ORPO with LoRA, QLoRA or full fine-tuning." },
  { to: "/models", icon: "models", title: "Export your model", text: "Download adapters, merged weights or GGUF, or push to the Hub." },
];

export function GettingStarted() {
  return (
    <Card title="Get started" description="Three steps from raw data to a model you can run." icon="spark">
      <ol className="steps">
        {STEPS.map((step, index) => (
          <li key={step.to}>
            <Link to={step.to} className="step">
              <span className="step__index">{index + 1}</span>
              <span className="step__body">
                <span className="step__title">{step.title}</span>
                <span className="step__text">{step.text}</span>
              </span>
              <Icon name={step.icon} size={18} className="step__icon" />
            </Link>
          </li>
        ))}
      </ol>
    </Card>
  );
}

function HealthRow({ label, ok, value }: { label: string; ok: boolean; value: string }) {
  return (
    <div className="kv">
      <dt className="kv__key">{label}</dt>
      <dd className={`kv__value ${ok ? "is-ok" : "is-bad"}`}>
        <StatusDot tone={ok ? "ok" : "bad"} />
        {value}
      </dd>
    </div>
  );
}

function HealthSummary({ health }: { health: Health }) {
  const allOk = health.status === "ok" && health.database && health.redis && health.workers > 0;
  return (
    <>
      <div className={`health-summary ${allOk ? "is-ok" : "is-warn"}`} data-testid="health-status">
        <StatusDot tone={allOk ? "ok" : "warn"} />
        {allOk ? "All systems operational" : "Service degraded"}
      </div>
      <dl className="kv-list">
        <HealthRow label="Database" ok={health.database} value={health.database ? "Connected" : "Unavailable"} />
        <HealthRow label="Redis" ok={health.redis} value={health.redis ? "Connected" : "Unavailable"} />
        <HealthRow
          label="Workers"
          ok={health.workers > 0}
          value={health.workers === 1 ? "1 online" : `${health.workers} online`}
        />
      </dl>
      {health.workers === 0 && (
        <p className="muted small">No background worker is running, so uploads and training runs will wait in the queue.</p>
      )}
    </>
  );
}

export function HealthCard() {
  const health = useHealth();
  const checked = health.dataUpdatedAt ? new Date(health.dataUpdatedAt).toLocaleTimeString() : null;
  return (
    <Card
      title="System status"
      icon="activity"
      testId="health-card"
      description={checked ? `Checked at ${checked}` : "Checking services…"}
      actions={
        <Button size="sm" variant="ghost" onClick={() => void health.refetch()} loading={health.isFetching}>
          Refresh
        </Button>
      }
    >
      {health.isPending ? (
        <div className="center-pad">
          <Spinner label="Checking services" />
        </div>
      ) : health.isError ? (
        <Banner tone="error" testId="health-error">
          {errorMessage(health.error)}
        </Banner>
      ) : (
        <HealthSummary health={health.data} />
      )}
    </Card>
  );
}

const socketLabel: Record<SocketState, string> = { open: "Live", connecting: "Connecting…", reconnecting: "Reconnecting…", idle: "Off" };

function statusTone(status: string | undefined): string {
  if (!status) return "neutral";
  if (["succeeded", "success", "done", "ready", "completed", "ok"].includes(status)) return "success";
  if (["failed", "error", "invalid", "cancelled"].includes(status)) return "danger";
  return "info";
}

function TaskItem({ message }: { message: TaskMessage }) {
  const pct = toPercent(message.progress);
  return (
    <>
      <div className="notice__head">
        <span className="notice__title">
          {humanize(String(message.kind))} <span className="muted">#{String(message.id)}</span>
        </span>
        {message.status && <span className={`badge badge--${statusTone(message.status)}`}>{message.status}</span>}
      </div>
      {pct !== null && (
        <div
          className={`progress progress--${statusTone(message.status)}`}
          role="progressbar" aria-valuenow={Math.round(pct)} aria-valuemin={0} aria-valuemax={100}>
          <span className="progress__bar" style={{ width: `${pct}%` }} />
        </div>
      )}
    </>
  );
}

function NotificationItem({ message }: { message: NotificationMessage }) {
  const text = message.message ?? message.text ?? message.detail;
  return (
    <>
      <div className="notice__head">
        <span className="notice__title">{message.title ? String(message.title) : "Notification"}</span>
        {message.level && <span className={`badge badge--${statusTone(String(message.level))}`}>{String(message.level)}</span>}
      </div>
      {text !== undefined && <p className="notice__text">{typeof text === "string" ? text : JSON.stringify(text)}</p>}
    </>
  );
}

function MessageItem({ entry }: { entry: ReceivedMessage }) {
  const { message } = entry;
  const icon: IconName = message.type === "task" ? "activity" : "bell";
  return (
    <li className="notice">
      <span className="notice__icon">
        <Icon name={icon} size={15} />
      </span>
      <div className="notice__body">
        {message.type === "task" ? (
          <TaskItem message={message as TaskMessage} />
        ) : message.type === "notification" ? (
          <NotificationItem message={message as NotificationMessage} />
        ) : (
          <>
            <div className="notice__head">
              <span className="notice__title">{humanize(message.type)}</span>
            </div>
            <p className="notice__text mono">{JSON.stringify(message)}</p>
          </>
        )}
      </div>
      <time className="notice__time" dateTime={entry.receivedAt.toISOString()}>
        {entry.receivedAt.toLocaleTimeString()}
      </time>
    </li>
  );
}

export function NotificationsCard() {
  const socket = useNotificationsSocket();
  const send = useSendTestNotification();
  const tone = socket.state === "open" ? "ok" : socket.state === "connecting" ? "idle" : "warn";
  // The confirmation is transient; the real proof is the message arriving in the list below.
  const { isSuccess, reset } = send;
  useEffect(() => {
    if (!isSuccess) return;
    const timer = window.setTimeout(reset, 8_000);
    return () => window.clearTimeout(timer);
  }, [isSuccess, reset]);
  return (
    <Card
      title={
        <>
          Live notifications
          <span className={`pill pill--${tone}`} data-testid="socket-status">
            <StatusDot tone={tone} />
            {socketLabel[socket.state]}
          </span>
        </>
      }
      icon="bell"
      description="Uploads, downloads, exports and pushes, as they happen."
      actions={
        <Button size="sm" icon="send" onClick={() => send.mutate()} loading={send.isPending}>
          Send test notification
        </Button>
      }
    >
      {send.isError && <Banner tone="error">{errorMessage(send.error)}</Banner>}
      {send.isSuccess && (
        <Banner tone="success" testId="test-notification-sent">
          Test notification queued. A worker will send it back over the websocket in a moment.
        </Banner>
      )}
      <div data-testid="notifications-list" aria-live="polite">
        {socket.messages.length ? (
          <ul className="notice-list">
            {socket.messages.map((entry) => (
              <MessageItem key={entry.key} entry={entry} />
            ))}
          </ul>
        ) : (
          <EmptyState icon="bell" title="No notifications yet">
            Messages arrive live while this page is open. Use <strong>Send test notification</strong> to check that the
            browser, server, Redis and the background workers are talking to each other.
          </EmptyState>
        )}
      </div>
    </Card>
  );
}
