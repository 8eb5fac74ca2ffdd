// A modal built on the native <dialog>: focus trap, Escape to close and an inert page behind it for free.
import { useEffect, useId, useRef, type ReactNode } from "react";
import { Icon } from "../Icon";

export function Dialog({
  open,
  onClose,
  title,
  description,
  children,
  footer,
  testId,
  wide = false,
}: {
  open: boolean;
  onClose: () => void;
  title: string;
  description?: ReactNode;
  children: ReactNode;
  footer?: ReactNode;
  testId?: string;
  wide?: boolean;
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
      className={`ds-dialog${wide ? " ds-dialog--wide" : ""}`}
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
        <div className="ds-dialog__panel">
          <header className="ds-dialog__header">
            <div>
              <h2 id={titleId} className="ds-dialog__title">
                {title}
              </h2>
              {description && <p className="ds-dialog__description">{description}</p>}
            </div>
            <button type="button" className="btn btn--ghost btn--sm ds-dialog__close" onClick={onClose} aria-label="Close">
              <Icon name="x" size={16} />
            </button>
          </header>
          <div className="ds-dialog__body">{children}</div>
          {footer && <footer className="ds-dialog__footer">{footer}</footer>}
        </div>
      )}
    </dialog>
  );
}
