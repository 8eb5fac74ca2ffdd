// Shared building blocks: form fields, banners, cards, empty states, buttons, spinner.
import { useId, type ButtonHTMLAttributes, type InputHTMLAttributes, type ReactNode } from "react";
import { Icon, type IconName } from "./Icon";

interface FieldProps extends InputHTMLAttributes<HTMLInputElement> {
  label: string;
  error?: string;
  hint?: ReactNode;
  /** Extra element rendered on the label row (e.g. a "Forgot?" link). */
  aside?: ReactNode;
}

/** A labelled input with its hint and field error, wired with aria-describedby / aria-invalid. */
export function Field({ label, error, hint, aside, id, className, ...input }: FieldProps) {
  const generated = useId();
  const inputId = id ?? `f${generated}`;
  const hintId = hint ? `${inputId}-hint` : undefined;
  const errorId = error ? `${inputId}-error` : undefined;
  const describedBy = [hintId, errorId].filter(Boolean).join(" ") || undefined;
  return (
    <div className={`field${error ? " field--invalid" : ""}${className ? ` ${className}` : ""}`}>
      <div className="field__label-row">
        <label htmlFor={inputId} className="field__label">
          {label}
        </label>
        {aside}
      </div>
      <input id={inputId} className="input" aria-invalid={error ? true : undefined} aria-describedby={describedBy} {...input} />
      {hint && !error && (
        <p id={hintId} className="field__hint">
          {hint}
        </p>
      )}
      {error && (
        <p id={errorId} className="field__error" data-testid="field-error">
          {error}
        </p>
      )}
    </div>
  );
}

type Tone = "error" | "success" | "info" | "warning";
const toneIcon: Record<Tone, IconName> = { error: "alert", success: "check", info: "bell", warning: "alert" };

/** A message banner. Errors use role="alert" and data-testid="form-error" (or the given testid). */
export function Banner({ tone, children, testId, title }: { tone: Tone; children: ReactNode; testId?: string; title?: string }) {
  return (
    <div
      className={`banner banner--${tone}`}
      role={tone === "error" ? "alert" : "status"}
      data-testid={testId ?? (tone === "error" ? "form-error" : undefined)}
    >
      <Icon name={toneIcon[tone]} size={16} className="banner__icon" />
      <div className="banner__body">
        {title && <strong className="banner__title">{title}</strong>}
        <div>{children}</div>
      </div>
    </div>
  );
}

type ButtonVariant = "primary" | "secondary" | "ghost" | "danger";

export function Button({
  variant = "secondary",
  size = "md",
  loading = false,
  icon,
  children,
  className,
  disabled,
  ...rest
}: ButtonHTMLAttributes<HTMLButtonElement> & {
  variant?: ButtonVariant;
  size?: "sm" | "md";
  loading?: boolean;
  icon?: IconName;
}) {
  return (
    <button
      className={`btn btn--${variant} btn--${size}${className ? ` ${className}` : ""}`}
      disabled={disabled || loading}
      aria-busy={loading || undefined}
      {...rest}
    >
      {loading ? <Spinner size={14} /> : icon ? <Icon name={icon} size={16} /> : null}
      <span>{children}</span>
    </button>
  );
}

export function Spinner({ size = 16, label }: { size?: number; label?: string }) {
  return (
    <span className="spinner" style={{ width: size, height: size }} role={label ? "status" : undefined} aria-label={label} />
  );
}

export function Card({
  title,
  description,
  actions,
  children,
  testId,
  className,
  icon,
}: {
  title?: ReactNode;
  description?: ReactNode;
  actions?: ReactNode;
  children: ReactNode;
  testId?: string;
  className?: string;
  icon?: IconName;
}) {
  // Not aria-labelledby: a labelled region would also match getByLabel(<card title>) in tests next to its input.
  return (
    <section className={`card${className ? ` ${className}` : ""}`} data-testid={testId}>
      {(title || actions) && (
        <header className="card__header">
          <div className="card__heading">
            {icon && (
              <span className="card__icon">
                <Icon name={icon} size={16} />
              </span>
            )}
            <div>
              {title && (
                <h2 className="card__title">{title}</h2>
              )}
              {description && <p className="card__description">{description}</p>}
            </div>
          </div>
          {actions && <div className="card__actions">{actions}</div>}
        </header>
      )}
      <div className="card__body">{children}</div>
    </section>
  );
}

export function EmptyState({
  icon,
  title,
  children,
  action,
}: {
  icon: IconName;
  title: string;
  children: ReactNode;
  action?: ReactNode;
}) {
  return (
    <div className="empty">
      <span className="empty__icon">
        <Icon name={icon} size={22} />
      </span>
      <h3 className="empty__title">{title}</h3>
      <div className="empty__text">{children}</div>
      {action && <div className="empty__action">{action}</div>}
    </div>
  );
}

export function PageHeader({ title, description, actions }: { title: string; description?: ReactNode; actions?: ReactNode }) {
  return (
    <div className="page-header">
      <div>
        <h1 className="page-header__title">{title}</h1>
        {description && <p className="page-header__description">{description}</p>}
      </div>
      {actions && <div className="page-header__actions">{actions}</div>}
    </div>
  );
}

export function StatusDot({ tone }: { tone: "ok" | "bad" | "warn" | "idle" }) {
  return <span className={`dot dot--${tone}`} aria-hidden="true" />;
}
