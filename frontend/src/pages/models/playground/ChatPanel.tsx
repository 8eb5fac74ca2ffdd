// The playground's conversation column: the exchanges (one or two answer columns) and the composer.
import { useEffect, useRef, useState, type FormEvent, type KeyboardEvent } from "react";
import { Icon } from "../../../components/Icon";
import { Banner, Button } from "../../../components/ui";
import type { StreamSide } from "../../../hooks/useGenerateStream";
import { visibleText, type Answer, type Exchange } from "./usePlaygroundChat";

function AnswerBubble({ answer, side, streaming, label }: { answer: Answer; side: StreamSide; streaming: boolean; label?: string }) {
  const rate = answer.durationS && answer.durationS > 0 ? answer.tokens / answer.durationS : null;
  const text = visibleText(answer);
  return (
    <div className={`md-msg md-msg--assistant${side === "base" ? " md-msg--base" : ""}`} data-testid="assistant-message" data-side={side} data-streaming={streaming} data-tokens={answer.tokens}>
      {label && <div className="md-msg__label">{label}</div>}
      <div className="md-msg__text">
        {text}
        {streaming && <span className="md-caret" aria-hidden="true" />}
        {!streaming && !text && !answer.toolCalls.length && <span className="muted">(no answer)</span>}
      </div>
      {answer.toolCalls.length > 0 && (
        <div className="md-toolcalls" data-testid="tool-calls">
          {answer.toolCalls.map((call, i) => (
            <div key={i} className="md-toolcall" data-testid="tool-call" data-name={call.function.name}>
              <div className="md-toolcall__head">
                Calls <code>{call.function.name}</code>
              </div>
              <pre className="md-toolcall__args" data-testid="tool-call-arguments">
                {JSON.stringify(call.function.arguments ?? {}, null, 2)}
              </pre>
            </div>
          ))}
        </div>
      )}
      {(answer.tokens > 0 || streaming) && (
        <div className="md-msg__meta">
          {streaming && answer.tokens === 0 ? "Thinking…" : `${answer.tokens} tokens`}
          {rate !== null && !streaming ? ` · ${rate.toFixed(1)} tokens/s` : ""}
        </div>
      )}
    </div>
  );
}

/** Under the last answer's tool calls: the user plays the tool and sends its result back; the model goes on. */
function ToolResultForm({ names, onSend }: { names: string[]; onSend: (text: string) => boolean }) {
  const [result, setResult] = useState("");
  const submit = (event: FormEvent) => {
    event.preventDefault();
    if (result.trim() && onSend(result.trim())) setResult("");
  };
  return (
    <form className="md-toolresult" onSubmit={submit} data-testid="tool-result-form">
      <label htmlFor="tool-result-input" className="md-toolresult__label">
        Result of {names.join(", ")}
      </label>
      <textarea
        id="tool-result-input"
        className="input"
        rows={2}
        placeholder='What the tool returned, e.g. {"temperature": 18}'
        value={result}
        onChange={(e) => setResult(e.target.value)}
        data-testid="tool-result-input"
      />
      <Button type="submit" size="sm" variant="secondary" icon="send" disabled={!result.trim()} data-testid="tool-result-send">
        Send result
      </Button>
    </form>
  );
}

function ExchangeView({ exchange: e, onToolResult }: { exchange: Exchange; onToolResult?: (text: string) => boolean }) {
  const calls = e.model.toolCalls;
  return (
    <div className="md-exchange">
      {e.role === "tool" ? (
        <div className="md-msg md-msg--user md-msg--tool" data-testid="tool-message">
          <div className="md-msg__label">Tool result</div>
          <div className="md-msg__text">{e.user}</div>
        </div>
      ) : (
        <div className="md-msg md-msg--user" data-testid="user-message">
          <div className="md-msg__text">{e.user}</div>
        </div>
      )}
      {e.base ? (
        <div className="md-answers">
          <AnswerBubble answer={e.base} side="base" streaming={e.streaming} label="Base" />
          <AnswerBubble answer={e.model} side="model" streaming={e.streaming} label="Fine-tuned" />
        </div>
      ) : (
        <AnswerBubble answer={e.model} side="model" streaming={e.streaming} />
      )}
      {onToolResult && !e.streaming && !e.base && calls.length > 0 && (
        <ToolResultForm names={calls.map((c) => c.function.name)} onSend={onToolResult} />
      )}
      {e.error && (
        <Banner tone="error" testId="generate-error">
          {e.error}
        </Banner>
      )}
      {e.fallback && e.base && !e.base.text && <p className="muted small">The live connection was unavailable, so only the fine-tuned answer was fetched.</p>}
    </div>
  );
}

function Composer({ canSend, streaming, onSend, onStop }: { canSend: boolean; streaming: boolean; onSend: (text: string) => boolean; onStop: () => void }) {
  const [input, setInput] = useState("");
  const send = (event?: FormEvent) => {
    event?.preventDefault();
    if (onSend(input.trim())) setInput("");
  };
  const onKey = (event: KeyboardEvent<HTMLTextAreaElement>) => {
    if (event.key === "Enter" && !event.shiftKey && !event.nativeEvent.isComposing) {
      event.preventDefault();
      send();
    }
  };
  return (
    <form className="md-composer" onSubmit={send}>
      <label htmlFor="chat-input" className="sr-only">
        Message
      </label>
      <textarea
        id="chat-input"
        className="input md-composer__input"
        rows={2}
        placeholder={canSend ? "Ask something… (Enter to send, Shift+Enter for a new line)" : "Pick a model first"}
        value={input}
        onChange={(e) => setInput(e.target.value)}
        onKeyDown={onKey}
        disabled={!canSend}
        data-testid="chat-input"
      />
      {streaming ? (
        <Button type="button" variant="secondary" icon="x" onClick={onStop} data-testid="stop-button">
          Stop
        </Button>
      ) : (
        <Button type="submit" variant="primary" icon="send" disabled={!input.trim() || !canSend} data-testid="send-button">
          Send
        </Button>
      )}
    </form>
  );
}

export function ChatPanel({
  title,
  columns,
  chat,
  canSend,
  streaming,
  onSend,
  onStop,
  onNewChat,
  onToolResult,
}: {
  title: string;
  /** Side-by-side mode: the heads of the base and fine-tuned columns. */
  columns: [string, string] | null;
  chat: Exchange[];
  canSend: boolean;
  streaming: boolean;
  /** Send a prompt; false when it was not sent (empty, no model, or an answer still streaming). */
  onSend: (text: string) => boolean;
  onStop: () => void;
  onNewChat: () => void;
  /** Send a tool's result answering the last answer's calls; false when it was not sent. */
  onToolResult: (text: string) => boolean;
}) {
  const endRef = useRef<HTMLDivElement>(null);
  useEffect(() => {
    endRef.current?.scrollIntoView({ block: "nearest" });
  }, [chat]);
  return (
    <section className="card md-chat" aria-label="Conversation" data-testid="chat">
      <header className="md-chat__header">
        <div className="md-chat__title">
          <Icon name="spark" size={16} />
          <span>{title || "Conversation"}</span>
        </div>
        <Button size="sm" variant="ghost" onClick={onNewChat} disabled={!chat.length}>
          New chat
        </Button>
      </header>
      {columns && (
        <div className="md-columns-head">
          <span>{columns[0]}</span>
          <span>{columns[1]}</span>
        </div>
      )}
      <div className="md-chat__log" aria-live="polite">
        {chat.length === 0 ? (
          <div className="md-chat__empty">
            <p>Send a message to start. Try a prompt from your training data to see what the fine-tuning changed.</p>
          </div>
        ) : (
          chat.map((e, i) => <ExchangeView key={e.id} exchange={e} onToolResult={i === chat.length - 1 && !streaming ? onToolResult : undefined} />)
        )}
        <div ref={endRef} />
      </div>
      <Composer canSend={canSend} streaming={streaming} onSend={onSend} onStop={onStop} />
    </section>
  );
}
