// Live progress of one job for summary views (the dashboard): listens to /ws/training/<id>/ for metric and status
// messages only (the job page's useJobSocket also keeps every point and log line, which a summary does not need).
// The socket only notifies: the caller's REST data stays the source of truth and is refetched on status changes.
import { useEffect, useRef, useState } from "react";
import type { JobSocketMessage, JobStatus } from "../api/types";
import { JOB_SOCKET_FINAL_CODES, jobSocketUrl } from "./useJobSocket";
import { useReconnectingSocket } from "./useReconnectingSocket";

export interface LiveProgress {
  step: number | null;
  totalSteps: number | null;
  etaS: number | null;
  loss: number | null;
  status: JobStatus | null;
  phase: string | null;
  /** Metric messages received so far (a test hook: proves the numbers moved over the socket). */
  updates: number;
}

const EMPTY: LiveProgress = { step: null, totalSteps: null, etaS: null, loss: null, status: null, phase: null, updates: 0 };

export function useJobProgress(jobId: number, active: boolean, onStatus?: (status: JobStatus) => void) {
  const [live, setLive] = useState<LiveProgress>(EMPTY);
  const onStatusRef = useRef(onStatus);
  useEffect(() => {
    onStatusRef.current = onStatus;
  }, [onStatus]);

  useEffect(() => {
    setLive(EMPTY);
  }, [jobId]);

  const { state } = useReconnectingSocket<JobSocketMessage>(
    active ? jobSocketUrl(jobId) : null,
    {
      onMessage: (message) => {
        if (message.type === "metric") {
          if (message.kind === "eval") return;
          setLive((prev) => ({
            ...prev,
            step: typeof message.step === "number" ? Math.max(prev.step ?? 0, message.step) : prev.step,
            totalSteps: typeof message.total_steps === "number" && message.total_steps > 0 ? message.total_steps : prev.totalSteps,
            etaS: typeof message.eta_s === "number" ? message.eta_s : prev.etaS,
            loss: typeof message.loss === "number" ? message.loss : prev.loss,
            updates: prev.updates + 1,
          }));
        } else if (message.type === "status") {
          setLive((prev) => ({ ...prev, status: message.status, phase: message.phase || prev.phase }));
          onStatusRef.current?.(message.status);
        }
      },
    },
    { finalCodes: JOB_SOCKET_FINAL_CODES },
  );

  return { live, state };
}
