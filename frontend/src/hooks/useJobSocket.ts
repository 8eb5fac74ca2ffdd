// Live metrics, logs and status of one training job: /ws/training/<id>/ plus backfill by seq.
//
// Points and log lines are kept by `seq` (deduplicated, sorted). The REST endpoints
// (GET metrics/?after_seq=N, logs/?after_seq=N) are the source of truth: they are read on load, after every
// (re)connect, when a pushed message reveals a gap, and periodically while the job is active, so a reload or a
// dropped connection never loses a point. `after_seq` is the highest seq the server has confirmed by a complete
// backfill (not the highest seen over the socket), so a point pushed before an earlier one was fetched cannot
// hide that earlier one.
import { useCallback, useEffect, useRef, useState } from "react";
import { BACKFILL_PAGE, fetchLogs, fetchMetrics } from "../api/training";
import type { JobSocketMessage, LogLine, MetricPoint } from "../api/types";
import { socketUrl, useReconnectingSocket, type SocketState } from "./useReconnectingSocket";

export type JobSocketState = SocketState;
/** The server closes with 4403 when the job is not the user's (or the session ended): no point reconnecting. */
export const JOB_SOCKET_FINAL_CODES: readonly number[] = [4403];

export interface JobStatusMessage {
  status: string;
  phase?: string;
  error?: string;
  model?: number;
  [key: string]: unknown;
}

/** Backfill period while the job is active: short when the socket is down (poll mode), long as a safety net. */
const POLL_OPEN_MS = 15_000;
const POLL_CLOSED_MS = 3_000;
const FLUSH_MS = 120;
/** Log lines kept in memory for the tail. */
const MAX_LOGS = 5_000;

export function jobSocketUrl(jobId: number): string {
  return socketUrl(`/ws/training/${jobId}/`);
}

/** A seq-keyed collection: dedupes, keeps order, and remembers the server-confirmed watermark. */
class SeqStore<T extends { seq: number }> {
  items: T[] = [];
  private seen = new Set<number>();
  /** Highest seq confirmed complete by a backfill: the next backfill asks for everything after it. */
  confirmed = 0;
  /** Highest seq held (from the socket or a backfill). */
  highest = 0;

  /** Merge items; true when anything was added. */
  merge(incoming: T[]): boolean {
    let added = false;
    let unordered = false;
    for (const item of incoming) {
      if (typeof item?.seq !== "number" || this.seen.has(item.seq)) continue;
      this.seen.add(item.seq);
      if (item.seq < this.highest) unordered = true;
      this.highest = Math.max(this.highest, item.seq);
      this.items.push(item);
      added = true;
    }
    if (unordered) this.items.sort((a, b) => a.seq - b.seq);
    return added;
  }

  trim(max: number): void {
    if (this.items.length > max) this.items = this.items.slice(this.items.length - max);
  }
}

function asPoint(message: Record<string, unknown>): MetricPoint {
  const { type: _type, ...point } = message;
  return point as unknown as MetricPoint;
}

/**
 * Metric points and log lines of a job, kept complete.
 * `active` (the job is queued/starting/running/recovering) opens the socket and reconnects it with backoff.
 */
export function useJobSocket(jobId: number, active: boolean, onStatus?: (message: JobStatusMessage) => void) {
  const [points, setPoints] = useState<MetricPoint[]>([]);
  const [logs, setLogs] = useState<LogLine[]>([]);
  const [checkpointStep, setCheckpointStep] = useState<number | null>(null);
  const [loaded, setLoaded] = useState(false);
  const [backfillError, setBackfillError] = useState<string | null>(null);

  const onStatusRef = useRef(onStatus);
  useEffect(() => {
    onStatusRef.current = onStatus;
  }, [onStatus]);

  // Everything below belongs to one job id; a new id replaces the whole bundle, so late answers for the old job
  // land in a bundle nobody reads.
  const bundle = useRef({
    jobId,
    metrics: new SeqStore<MetricPoint>(),
    logs: new SeqStore<LogLine>(),
    running: false,
    again: false,
    flushTimer: undefined as number | undefined,
  });
  if (bundle.current.jobId !== jobId) {
    window.clearTimeout(bundle.current.flushTimer);
    bundle.current = { jobId, metrics: new SeqStore(), logs: new SeqStore(), running: false, again: false, flushTimer: undefined };
  }

  const scheduleFlush = useCallback(() => {
    const b = bundle.current;
    if (b.flushTimer !== undefined) return;
    b.flushTimer = window.setTimeout(() => {
      b.flushTimer = undefined;
      if (bundle.current !== b) return;
      b.logs.trim(MAX_LOGS);
      setPoints(b.metrics.items.slice());
      setLogs(b.logs.items.slice());
    }, FLUSH_MS);
  }, []);

  /** Fetch everything after the confirmed watermarks; single-flight (a request during a run queues one more). */
  const backfill = useCallback(async () => {
    const b = bundle.current;
    if (b.running) {
      b.again = true;
      return;
    }
    b.running = true;
    try {
      do {
        b.again = false;
        for (const [store, fetcher] of [
          [b.metrics, fetchMetrics],
          [b.logs, fetchLogs],
        ] as const) {
          for (;;) {
            const page: { seq: number }[] = await fetcher(b.jobId, store.confirmed);
            if (bundle.current !== b) return;
            if ((store as SeqStore<{ seq: number }>).merge(page)) scheduleFlush();
            if (page.length) store.confirmed = Math.max(store.confirmed, page[page.length - 1].seq);
            if (page.length < BACKFILL_PAGE) break;
          }
        }
      } while (b.again);
      setBackfillError(null);
    } catch (error) {
      if (bundle.current === b) setBackfillError(error instanceof Error ? error.message : "Could not load the metrics.");
    } finally {
      if (bundle.current === b) {
        b.running = false;
        setLoaded(true);
      }
    }
  }, [scheduleFlush]);

  // Reset the visible state and load everything stored so far whenever the job changes.
  useEffect(() => {
    setPoints([]);
    setLogs([]);
    setLoaded(false);
    setCheckpointStep(null);
    setBackfillError(null);
    void backfill();
  }, [jobId, backfill]);

  // Polling backfills while the job is active: often while the socket is down, rarely as a safety net.
  const socketOpen = useRef(false);
  const pollRef = useRef<() => void>(() => undefined);
  useEffect(() => {
    socketOpen.current = false;
    if (!active) {
      void backfill(); // the last points of a run that just finished
      return;
    }
    let pollTimer: number | undefined;
    let stopped = false;
    const poll = () => {
      window.clearTimeout(pollTimer);
      if (stopped) return;
      pollTimer = window.setTimeout(() => {
        void backfill();
        poll();
      }, socketOpen.current ? POLL_OPEN_MS : POLL_CLOSED_MS);
    };
    pollRef.current = poll;
    poll();
    return () => {
      stopped = true;
      window.clearTimeout(pollTimer);
      pollRef.current = () => undefined;
    };
  }, [jobId, active, backfill]);

  const handle = (message: JobSocketMessage) => {
    const b = bundle.current;
    if (message.type === "metric") {
      const point = asPoint(message as unknown as Record<string, unknown>);
      const gap = point.seq > b.metrics.highest + 1;
      if (b.metrics.merge([point])) scheduleFlush();
      if (gap) void backfill();
    } else if (message.type === "log") {
      const line: LogLine = {
        seq: message.seq,
        level: message.level ?? "info",
        line: message.line ?? "",
        time: message.time ?? new Date().toISOString(), // pushed lines carry no time: the moment it arrived
      };
      const gap = line.seq > b.logs.highest + 1;
      if (b.logs.merge([line])) scheduleFlush();
      if (gap) void backfill();
    } else if (message.type === "checkpoint") {
      if (typeof message.step === "number") setCheckpointStep((prev) => Math.max(prev ?? 0, message.step));
    } else if (message.type === "status") {
      onStatusRef.current?.(message as JobStatusMessage);
    }
  };

  // The socket, while the job is active (a 4403 leaves it closed: polling still shows what the API allows).
  const { state } = useReconnectingSocket<JobSocketMessage>(
    active ? jobSocketUrl(jobId) : null,
    {
      onMessage: handle,
      onOpen: () => {
        socketOpen.current = true;
        void backfill(); // whatever was published while we were away
        pollRef.current();
      },
      onClose: () => {
        socketOpen.current = false;
        pollRef.current(); // poll-only until the socket is back
      },
    },
    { finalCodes: JOB_SOCKET_FINAL_CODES },
  );

  return { points, logs, state, checkpointStep, loaded, backfillError, backfill };
}
