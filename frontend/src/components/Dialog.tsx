// The one modal dialog of the app, on the native <dialog>: focus trap, Escape to close and an inert page behind it
// for free. A click on the backdrop closes it too. The body renders only while open, so forms inside start fresh.
import { useEffect, useId, useRef, type ReactNode } from "react";
import { Icon } from "./Icon";

export type DialogSize = "sm" | "md" | "lg";

export function Dialog({
  open,
  onClose,
  title,
  description,
  children,
  footer,
  testId,
  size = "md",
}: {
  open: boolean;
  onClose: () => void;
  title: string;
  description?: ReactNode;
  children: ReactNode;
  /** Buttons in a bar under the body (forms that submit put theirs in `.dialog__actions` inside the form). */
  footer?: ReactNode;
  testId?: string;
  /** Width: sm 440px (confirmations), md 560px, lg 720px. */
  size?: DialogSize;
}) {
  const ref = useRef<HTMLDialogElement>(null);
  const titleId = useId();

  useEffect(() => {
    const dialog = ref.current;
    if (!dialog) return;
    if (open && !dialog.open) dialog.showModal();
    if (!open && dialog.open) dialog.close();
  }, [open]);

  return (
    <dialog
      ref={ref}
      className={`dialog dialog--${size}`}
      aria-labelledby={titleId}
      data-testid={testId}
      onCancel={(event) => {
        event.preventDefault();
        onClose();
      }}
      onClick={(event) => {
        // A click on the backdrop (the <dialog> itself, outside its panel) closes it.
        if (event.target === ref.current) onClose();
      }}
    >
      {open && (
        <div className="dialog__panel">
          <header className="dialog__header">
            <div>
              <h2 id={titleId} className="dialog__title">
                {title}
              </h2>
              {description && <p className="dialog__description">{description}</p>}
            </div>
            <button type="button" className="btn btn--ghost btn--sm dialog__close" onClick={onClose} aria-label="Close dialog">
              <Icon name="x" size={16} />
            </button>
          </header>
          <div className="dialog__body">{children}</div>
          {footer && <footer className="dialog__footer">{footer}</footer>}
        </div>
      )}
    </dialog>
  );
}
