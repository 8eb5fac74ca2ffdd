// One websocket that stays connected: it reconnects after every drop with exponential backoff and jitter
// (1 s, 2 s, 4 s … up to 30 s), until the component unmounts or `url` becomes null. useNotificationsSocket,
// useJobSocket and useJobProgress are built on it; each only says what to do with a message.
import { useEffect, useRef, useState } from "react";

export type SocketState = "idle" | "connecting" | "open" | "reconnecting";

const BASE_DELAY_MS = 1_000;
const MAX_DELAY_MS = 30_000;

/** `ws(s)://<this host><path>`. */
export function socketUrl(path: string): string {
  const scheme = window.location.protocol === "https:" ? "wss" : "ws";
  return `${scheme}://${window.location.host}${path}`;
}

/** Wait before reconnect attempt `attempt` (0-based): doubling from 1 s, capped at 30 s, ±20 % jitter. */
export function reconnectDelay(attempt: number): number {
  return Math.min(MAX_DELAY_MS, BASE_DELAY_MS * 2 ** attempt) * (0.8 + Math.random() * 0.4);
}

export interface SocketHandlers<M> {
  /** Every message that parses as a JSON object with a string `type` (others are dropped). */
  onMessage: (message: M) => void;
  /** After every (re)connect. */
  onOpen?: () => void;
  /** After every drop, before the reconnect is scheduled (not when the hook itself closes the socket). */
  onClose?: (event: CloseEvent) => void;
}

export interface SocketOptions {
  /** Close codes after which the socket stays closed (state "idle"), e.g. 4403 "not yours / signed out". */
  finalCodes?: readonly number[];
}

/**
 * Keep a websocket to `url` open while `url` is not null. The handlers may change on every render; only a new
 * `url` reconnects. `retryInMs` is the wait before the pending reconnect (null when none is pending).
 */
export function useReconnectingSocket<M extends { type: string }>(url: string | null, handlers: SocketHandlers<M>, options: SocketOptions = {}) {
  const [state, setState] = useState<SocketState>(url ? "connecting" : "idle");
  const [retryInMs, setRetryInMs] = useState<number | null>(null);
  const handlersRef = useRef(handlers);
  useEffect(() => {
    handlersRef.current = handlers;
  });
  const finalCodes = (options.finalCodes ?? []).join(",");

  useEffect(() => {
    setRetryInMs(null);
    if (!url) {
      setState("idle");
      return;
    }
    const final = new Set(finalCodes ? finalCodes.split(",").map(Number) : []);
    let socket: WebSocket | null = null;
    let timer: number | undefined;
    let attempt = 0;
    let stopped = false;

    const connect = () => {
      if (stopped) return;
      setState(attempt === 0 ? "connecting" : "reconnecting");
      setRetryInMs(null);
      socket = new WebSocket(url);
      socket.onopen = () => {
        attempt = 0;
        setState("open");
        handlersRef.current.onOpen?.();
      };
      socket.onmessage = (event: MessageEvent) => {
        let message: unknown;
        try {
          message = JSON.parse(String(event.data));
        } catch {
          return;
        }
        if (message && typeof message === "object" && typeof (message as { type?: unknown }).type === "string") {
          handlersRef.current.onMessage(message as M);
        }
      };
      socket.onclose = (event: CloseEvent) => {
        socket = null;
        if (stopped) return;
        handlersRef.current.onClose?.(event);
        if (final.has(event.code)) {
          setState("idle");
          return;
        }
        const delay = reconnectDelay(attempt);
        attempt += 1;
        setState("reconnecting");
        setRetryInMs(Math.round(delay));
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
  }, [url, finalCodes]);

  return { state, retryInMs };
}
