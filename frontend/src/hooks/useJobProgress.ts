// Live progress of one job for summary views (the dashboard): listens to /ws/training/<id>/ for metric and status
// messages only (the job page's useJobSocket also keeps every point and log line, which a summary does not need).
// The socket only notifies: the caller's REST data stays the source of truth and is refetched on status changes.
import { useEffect, useRef, useState } from "react";
import type { JobSocketMessage, JobStatus } from "../api/types";
import { jobSocketUrl, type JobSocketState } from "./useJobSocket";

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
const MAX_DELAY_MS = 30_000;

export function useJobProgress(jobId: number, active: boolean, onStatus?: (status: JobStatus) => void) {
  const [live, setLive] = useState<LiveProgress>(EMPTY);
  const [state, setState] = useState<JobSocketState>("idle");
  const onStatusRef = useRef(onStatus);
  useEffect(() => {
    onStatusRef.current = onStatus;
  }, [onStatus]);

  useEffect(() => {
    setLive(EMPTY);
  }, [jobId]);

  useEffect(() => {
    if (!active) {
      setState("idle");
      return;
    }
    let socket: WebSocket | null = null;
    let timer: number | undefined;
    let attempt = 0;
    let stopped = false;

    const handle = (message: JobSocketMessage) => {
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
    };

    const connect = () => {
      if (stopped) return;
      setState(attempt === 0 ? "connecting" : "reconnecting");
      socket = new WebSocket(jobSocketUrl(jobId));
      socket.onopen = () => {
        attempt = 0;
        setState("open");
      };
      socket.onmessage = (event: MessageEvent) => {
        try {
          const message = JSON.parse(String(event.data)) as JobSocketMessage;
          if (message && typeof message.type === "string") handle(message);
        } catch {
          // not JSON: ignore
        }
      };
      socket.onclose = (event: CloseEvent) => {
        socket = null;
        if (stopped) return;
        if (event.code === 4403) {
          setState("idle");
          return;
        }
        const delay = Math.min(MAX_DELAY_MS, 1_000 * 2 ** attempt) * (0.8 + Math.random() * 0.4);
        attempt += 1;
        setState("reconnecting");
        timer = window.setTimeout(connect, delay);
      };
    };

    connect();
    return () => {
      stopped = true;
      window.clearTimeout(timer);
      if (socket) {
        socket.onclose = null;
        socket.onmessage = null;
        socket.close();
      }
    };
  }, [jobId, active]);

  return { live, state };
}
