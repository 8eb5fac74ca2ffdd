// A small modal on the native <dialog> (focus trap and Escape for free).
import { useEffect, useId, useRef, type ReactNode } from "react";
import { Icon } from "../Icon";

export function Modal({
  open,
  onClose,
  title,
  description,
  children,
  footer,
  testId,
}: {
  open: boolean;
  onClose: () => void;
  title: string;
  description?: ReactNode;
  children: ReactNode;
  footer?: ReactNode;
  testId?: string;
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
      className="tr-modal"
      aria-labelledby={titleId}
      data-testid={testId}
      onCancel={(e) => {
        e.preventDefault();
        onClose();
      }}
      onClick={(e) => {
        if (e.target === ref.current) onClose();
      }}
    >
      {open && (
        <div className="tr-modal__panel">
          <header className="tr-modal__header">
            <div>
              <h2 id={titleId} className="tr-modal__title">
                {title}
              </h2>
              {description && <p className="tr-modal__description">{description}</p>}
            </div>
            <button type="button" className="btn btn--ghost btn--sm" onClick={onClose} aria-label="Close dialog">
              <Icon name="x" size={16} />
            </button>
          </header>
          <div className="tr-modal__body">{children}</div>
          {footer && <footer className="tr-modal__footer">{footer}</footer>}
        </div>
      )}
    </dialog>
  );
}
