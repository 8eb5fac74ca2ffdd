// Live messages from /ws/notifications/, with reconnect and exponential backoff.
import { useEffect, useRef, useState } from "react";
import type { SocketMessage } from "../api/types";

export type SocketState = "connecting" | "open" | "reconnecting";

export interface ReceivedMessage {
  /** Stable key: tasks are updated in place by kind and id; other messages get a sequence number. */
  key: string;
  receivedAt: Date;
  message: SocketMessage;
}

const MAX_MESSAGES = 50;
const BASE_DELAY_MS = 1_000;
const MAX_DELAY_MS = 30_000;

export function notificationsSocketUrl(): string {
  const scheme = window.location.protocol === "https:" ? "wss" : "ws";
  return `${scheme}://${window.location.host}/ws/notifications/`;
}

function messageKey(message: SocketMessage, seq: number): string {
  if (message.type === "task" && "kind" in message && "id" in message) return `task:${String(message.kind)}:${String(message.id)}`;
  return `msg:${seq}`;
}

export function useNotificationsSocket(enabled = true) {
  const [state, setState] = useState<SocketState>("connecting");
  const [messages, setMessages] = useState<ReceivedMessage[]>([]);
  const [retryInMs, setRetryInMs] = useState<number | null>(null);
  const seq = useRef(0);

  useEffect(() => {
    if (!enabled) return;
    let socket: WebSocket | null = null;
    let timer: number | undefined;
    let attempt = 0;
    let stopped = false;

    const connect = () => {
      setState(attempt === 0 ? "connecting" : "reconnecting");
      setRetryInMs(null);
      socket = new WebSocket(notificationsSocketUrl());
      socket.onopen = () => {
        attempt = 0;
        setState("open");
      };
      socket.onmessage = (event: MessageEvent) => {
        let message: SocketMessage;
        try {
          message = JSON.parse(String(event.data)) as SocketMessage;
        } catch {
          return;
        }
        if (!message || typeof message !== "object" || typeof message.type !== "string") return;
        seq.current += 1;
        const entry: ReceivedMessage = { key: messageKey(message, seq.current), receivedAt: new Date(), message };
        setMessages((previous) => [entry, ...previous.filter((m) => m.key !== entry.key)].slice(0, MAX_MESSAGES));
      };
      socket.onclose = () => {
        socket = null;
        if (stopped) return;
        const delay = Math.min(MAX_DELAY_MS, BASE_DELAY_MS * 2 ** attempt) * (0.8 + Math.random() * 0.4);
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
        socket.close();
      }
    };
  }, [enabled]);

  return { state, messages, retryInMs, clear: () => setMessages([]) };
}
