// The job's log lines, newest at the bottom; follows new lines while the reader is at the bottom.
import { useEffect, useLayoutEffect, useRef, useState } from "react";
import type { LogLine } from "../../api/types";

/** Lines rendered at most (the oldest are dropped from view, not from memory). */
const SHOWN = 1_000;

function time(value: string | undefined): string {
  if (!value) return "";
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? "" : date.toLocaleTimeString(undefined, { hour12: false });
}

export function LogTail({ logs, live }: { logs: LogLine[]; live: boolean }) {
  const box = useRef<HTMLDivElement>(null);
  const [follow, setFollow] = useState(true);
  const shown = logs.length > SHOWN ? logs.slice(logs.length - SHOWN) : logs;

  useLayoutEffect(() => {
    const el = box.current;
    if (el && follow) el.scrollTop = el.scrollHeight;
  }, [shown, follow]);

  // Re-follow when the box is resized (e.g. the window grows) while following.
  useEffect(() => {
    const el = box.current;
    if (!el || typeof ResizeObserver === "undefined") return;
    const observer = new ResizeObserver(() => {
      if (follow) el.scrollTop = el.scrollHeight;
    });
    observer.observe(el);
    return () => observer.disconnect();
  }, [follow]);

  return (
    <div className="tr-logs-wrap">
      <div
        ref={box}
        className="tr-logs"
        data-testid="job-logs"
        data-lines={logs.length}
        role="log"
        aria-live={live ? "polite" : "off"}
        aria-label="Training log"
        tabIndex={0}
        onScroll={(e) => {
          const el = e.currentTarget;
          setFollow(el.scrollHeight - el.scrollTop - el.clientHeight < 24);
        }}
      >
        {shown.length === 0 ? (
          <div className="tr-logs__empty">{live ? "Waiting for the first log line…" : "No log lines."}</div>
        ) : (
          shown.map((l) => (
            <div key={l.seq} className={`tr-log tr-log--${(l.level || "info").toLowerCase()}`}>
              <span className="tr-log__time">{time(l.time)}</span>
              <span className="tr-log__level">{(l.level || "info").toUpperCase()}</span>
              <span className="tr-log__line">{l.line}</span>
            </div>
          ))
        )}
      </div>
      {!follow && shown.length > 0 && (
        <button type="button" className="tr-logs__jump" onClick={() => setFollow(true)}>
          Jump to latest
        </button>
      )}
    </div>
  );
}
