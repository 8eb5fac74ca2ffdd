// /playground: chat with one of your fine-tuned models or a base model. System prompt, temperature, top-p and
// max new tokens; the answer streams in token by token over /ws/models/<id>/generate/; side-by-side mode answers
// the same prompt with the base model and the fine-tuned model in two columns.
import { useEffect, useMemo, useRef, useState, type FormEvent, type KeyboardEvent } from "react";
import { Link, useSearchParams } from "react-router-dom";
import { errorMessage } from "../../api/client";
import { useBaseCatalog, useModels, type BaseModel, type ChatTurn, type FineTunedModel } from "../../api/models";
import { Icon } from "../../components/Icon";
import { modelLabel } from "../../components/models/TaskBits";
import { Banner, Button, Card, EmptyState, PageHeader, Spinner } from "../../components/ui";
import { useGenerateStream, type GenerateTarget, type StreamSide } from "../../hooks/useGenerateStream";
import "../../styles/models.css";

interface Answer {
  text: string;
  /** Streamed pieces so far; replaced by the server's token count when the answer is done. */
  tokens: number;
  /** Generation time measured by the server (excludes model loading). */
  durationS: number | null;
  startedAt: number;
  firstTokenAt: number | null;
  endedAt: number | null;
}

interface Exchange {
  id: number;
  user: string;
  model: Answer;
  base: Answer | null;
  streaming: boolean;
  error: string | null;
  fallback: boolean;
}

const newAnswer = (): Answer => ({ text: "", tokens: 0, durationS: null, startedAt: performance.now(), firstTokenAt: null, endedAt: null });

function parseTarget(value: string): GenerateTarget | null {
  const match = /^(m|b):(\d+)$/.exec(value);
  if (!match) return null;
  return { kind: match[1] === "m" ? "model" : "base", id: Number(match[2]) };
}

function Slider({
  id,
  label,
  value,
  min,
  max,
  step,
  onChange,
  hint,
}: {
  id: string;
  label: string;
  value: number;
  min: number;
  max: number;
  step: number;
  onChange: (v: number) => void;
  hint: string;
}) {
  return (
    <div className="field md-slider">
      <div className="field__label-row">
        <label htmlFor={id} className="field__label">
          {label}
        </label>
        <input
          type="number"
          className="input md-slider__number"
          aria-label={`${label} value`}
          value={value}
          min={min}
          max={max}
          step={step}
          onChange={(e) => {
            const v = Number(e.target.value);
            if (Number.isFinite(v)) onChange(Math.min(max, Math.max(min, v)));
          }}
        />
      </div>
      <input id={id} type="range" className="md-range" min={min} max={max} step={step} value={value} onChange={(e) => onChange(Number(e.target.value))} />
      <p className="field__hint">{hint}</p>
    </div>
  );
}

function AnswerBubble({ answer, side, streaming, label }: { answer: Answer; side: StreamSide; streaming: boolean; label?: string }) {
  const rate = answer.durationS && answer.durationS > 0 ? answer.tokens / answer.durationS : null;
  return (
    <div className={`md-msg md-msg--assistant${side === "base" ? " md-msg--base" : ""}`} data-testid="assistant-message" data-side={side} data-streaming={streaming} data-tokens={answer.tokens}>
      {label && <div className="md-msg__label">{label}</div>}
      <div className="md-msg__text">
        {answer.text}
        {streaming && <span className="md-caret" aria-hidden="true" />}
        {!streaming && !answer.text && <span className="muted">(no answer)</span>}
      </div>
      {(answer.tokens > 0 || streaming) && (
        <div className="md-msg__meta">
          {streaming && answer.tokens === 0 ? "Thinking…" : `${answer.tokens} tokens`}
          {rate !== null && !streaming ? ` · ${rate.toFixed(1)} tokens/s` : ""}
        </div>
      )}
    </div>
  );
}

export default function PlaygroundPage() {
  const [params, setParams] = useSearchParams();
  const models = useModels();
  const bases = useBaseCatalog();
  const stream = useGenerateStream();

  const initial = params.get("model") ? `m:${params.get("model")}` : params.get("base") ? `b:${params.get("base")}` : "";
  const [choice, setChoice] = useState(initial);
  const [system, setSystem] = useState("You are a helpful assistant.");
  const [temperature, setTemperature] = useState(0.7);
  const [topP, setTopP] = useState(0.9);
  const [maxNew, setMaxNew] = useState(128);
  const [sideBySide, setSideBySide] = useState(params.get("compare") === "1");
  const [input, setInput] = useState("");
  const [chat, setChat] = useState<Exchange[]>([]);
  const nextId = useRef(1);
  const endRef = useRef<HTMLDivElement>(null);

  const fineTuned = models.data ?? [];
  const baseList = useMemo(() => (bases.data ?? []).filter((b) => b.status === "available"), [bases.data]);

  // Default: the newest fine-tuned model, else the first base model.
  useEffect(() => {
    if (choice) return;
    if (fineTuned.length) setChoice(`m:${fineTuned[0].id}`);
    else if (models.isSuccess && baseList.length) setChoice(`b:${baseList[0].id}`);
  }, [choice, fineTuned, baseList, models.isSuccess]);

  const target = parseTarget(choice);
  const selectedModel: FineTunedModel | undefined = target?.kind === "model" ? fineTuned.find((m) => m.id === target.id) : undefined;
  const selectedBase: BaseModel | undefined =
    target?.kind === "base" ? (bases.data ?? []).find((b) => b.id === target.id) : selectedModel ? (bases.data ?? []).find((b) => b.id === selectedModel.base_model) : undefined;
  const canCompare = target?.kind === "model";
  const compare = sideBySide && canCompare;

  useEffect(() => {
    endRef.current?.scrollIntoView({ block: "nearest" });
  }, [chat]);

  const pick = (value: string) => {
    stream.stop();
    setChoice(value);
    setChat([]);
    const t = parseTarget(value);
    const next = new URLSearchParams(params);
    next.delete("model");
    next.delete("base");
    if (t) next.set(t.kind === "model" ? "model" : "base", String(t.id));
    setParams(next, { replace: true });
  };

  const update = (id: number, change: (e: Exchange) => Exchange) => setChat((list) => list.map((e) => (e.id === id ? change(e) : e)));

  const send = (event?: FormEvent) => {
    event?.preventDefault();
    const text = input.trim();
    if (!text || !target || stream.streaming) return;
    const messages: ChatTurn[] = [];
    if (system.trim()) messages.push({ role: "system", content: system.trim() });
    for (const e of chat) {
      messages.push({ role: "user", content: e.user });
      if (e.model.text) messages.push({ role: "assistant", content: e.model.text });
    }
    messages.push({ role: "user", content: text });
    const id = nextId.current++;
    setChat((list) => [...list, { id, user: text, model: newAnswer(), base: compare ? newAnswer() : null, streaming: true, error: null, fallback: false }]);
    setInput("");
    stream.start(target, { messages, max_new_tokens: maxNew, temperature, top_p: topP }, compare, {
      onToken: (side, piece) =>
        update(id, (e) => {
          const now = performance.now();
          const grow = (a: Answer): Answer => ({ ...a, text: a.text + piece, tokens: a.tokens + (piece ? 1 : 0), firstTokenAt: a.firstTokenAt ?? now, endedAt: now });
          // A base model's own tokens are marked "base" too: they belong in the single column then.
          if (side === "base" && e.base) return { ...e, base: grow(e.base) };
          return { ...e, model: grow(e.model) };
        }),
      onDone: ({ error, fallback, results }) =>
        update(id, (e) => {
          const settle = (a: Answer, stats: { tokens?: number; duration_s?: number } | undefined): Answer =>
            stats ? { ...a, tokens: stats.tokens ?? a.tokens, durationS: stats.duration_s ?? null } : a;
          return {
            ...e,
            model: settle(e.model, results?.model),
            base: e.base ? settle(e.base, results?.base) : null,
            streaming: false,
            error: error ?? null,
            fallback: !!fallback,
          };
        }),
    });
  };

  const onKey = (event: KeyboardEvent<HTMLTextAreaElement>) => {
    if (event.key === "Enter" && !event.shiftKey && !event.nativeEvent.isComposing) {
      event.preventDefault();
      send();
    }
  };

  const stop = () => {
    stream.stop();
    setChat((list) => list.map((e) => (e.streaming ? { ...e, streaming: false } : e)));
  };

  const loading = models.isPending || bases.isPending;
  const targetName = selectedModel ? modelLabel(selectedModel) : selectedBase?.name ?? "";

  return (
    <>
      <PageHeader
        title="Playground"
        description="Chat with a fine-tuned model or a base model. Answers stream in as they are generated."
        actions={
          selectedModel ? (
            <Link to={`/models/${selectedModel.id}`} className="btn btn--secondary btn--md tr-link-btn">
              <Icon name="models" size={16} />
              <span>Open {modelLabel(selectedModel)}</span>
            </Link>
          ) : undefined
        }
      />
      {loading ? (
        <div className="center-pad">
          <Spinner label="Loading models" />
        </div>
      ) : models.isError ? (
        <Banner tone="error">{errorMessage(models.error)}</Banner>
      ) : !fineTuned.length && !baseList.length ? (
        <Card>
          <EmptyState icon="spark" title="No model to chat with">
            No base model is available and you have no fine-tuned models yet.
          </EmptyState>
        </Card>
      ) : (
        <div className="md-playground">
          <Card title="Settings" className="md-playground__settings" testId="playground-settings">
            <div className="md-form">
              <div className="field">
                <label htmlFor="playground-model" className="field__label">
                  Model
                </label>
                <select id="playground-model" className="input tr-select" value={choice} onChange={(e) => pick(e.target.value)} data-testid="playground-model">
                  {!choice && <option value="">Pick a model…</option>}
                  {fineTuned.length > 0 && (
                    <optgroup label="Your fine-tuned models">
                      {fineTuned.map((m) => (
                        <option key={m.id} value={`m:${m.id}`}>
                          {modelLabel(m)}
                          {m.tag ? ` (${m.tag})` : ""}
                        </option>
                      ))}
                    </optgroup>
                  )}
                  {baseList.length > 0 && (
                    <optgroup label="Base models">
                      {baseList.map((b) => (
                        <option key={b.id} value={`b:${b.id}`}>
                          {b.name}
                        </option>
                      ))}
                    </optgroup>
                  )}
                </select>
                {selectedModel && <p className="field__hint">Fine-tuned from {selectedModel.base_model_name}.</p>}
              </div>
              <label className={`md-check${canCompare ? "" : " is-disabled"}`}>
                <input type="checkbox" checked={compare} disabled={!canCompare} onChange={(e) => setSideBySide(e.target.checked)} data-testid="side-by-side" />
                <span>
                  <span className="md-check__title">Side by side with the base model</span>
                  <span className="md-check__hint">{canCompare ? "Each prompt is answered by both, in two columns." : "Pick a fine-tuned model to compare it with its base."}</span>
                </span>
              </label>
              <div className="field">
                <label htmlFor="playground-system" className="field__label">
                  System prompt
                </label>
                <textarea id="playground-system" className="input md-textarea" rows={3} value={system} onChange={(e) => setSystem(e.target.value)} />
              </div>
              <Slider id="playground-temperature" label="Temperature" value={temperature} min={0} max={2} step={0.05} onChange={setTemperature} hint="0 always picks the likeliest token; higher is more varied." />
              <Slider id="playground-top-p" label="Top-p" value={topP} min={0.05} max={1} step={0.05} onChange={setTopP} hint="Sample only from the most likely tokens making up this share." />
              <div className="field">
                <label htmlFor="playground-max-new" className="field__label">
                  Max new tokens
                </label>
                <input
                  id="playground-max-new"
                  type="number"
                  className="input"
                  min={1}
                  max={1024}
                  value={maxNew}
                  onChange={(e) => setMaxNew(Math.max(1, Math.min(1024, Math.round(Number(e.target.value) || 1))))}
                />
              </div>
            </div>
          </Card>

          <section className="card md-chat" aria-label="Conversation" data-testid="chat">
            <header className="md-chat__header">
              <div className="md-chat__title">
                <Icon name="spark" size={16} />
                <span>{targetName || "Conversation"}</span>
              </div>
              <Button size="sm" variant="ghost" onClick={() => { stop(); setChat([]); }} disabled={!chat.length}>
                New chat
              </Button>
            </header>
            {compare && (
              <div className="md-columns-head">
                <span>Base · {selectedBase?.name ?? selectedModel?.base_model_name}</span>
                <span>Fine-tuned · {selectedModel ? modelLabel(selectedModel) : ""}</span>
              </div>
            )}
            <div className="md-chat__log" aria-live="polite">
              {chat.length === 0 ? (
                <div className="md-chat__empty">
                  <p>Send a message to start. Try a prompt from your training data to see what the fine-tuning changed.</p>
                </div>
              ) : (
                chat.map((e) => (
                  <div key={e.id} className="md-exchange">
                    <div className="md-msg md-msg--user" data-testid="user-message">
                      <div className="md-msg__text">{e.user}</div>
                    </div>
                    {e.base ? (
                      <div className="md-answers">
                        <AnswerBubble answer={e.base} side="base" streaming={e.streaming} label="Base" />
                        <AnswerBubble answer={e.model} side="model" streaming={e.streaming} label="Fine-tuned" />
                      </div>
                    ) : (
                      <AnswerBubble answer={e.model} side="model" streaming={e.streaming} />
                    )}
                    {e.error && (
                      <Banner tone="error" testId="generate-error">
                        {e.error}
                      </Banner>
                    )}
                    {e.fallback && e.base && !e.base.text && <p className="muted small">The live connection was unavailable, so only the fine-tuned answer was fetched.</p>}
                  </div>
                ))
              )}
              <div ref={endRef} />
            </div>
            <form className="md-composer" onSubmit={send}>
              <label htmlFor="chat-input" className="sr-only">
                Message
              </label>
              <textarea
                id="chat-input"
                className="input md-composer__input"
                rows={2}
                placeholder={target ? "Ask something… (Enter to send, Shift+Enter for a new line)" : "Pick a model first"}
                value={input}
                onChange={(e) => setInput(e.target.value)}
                onKeyDown={onKey}
                disabled={!target}
                data-testid="chat-input"
              />
              {stream.streaming ? (
                <Button type="button" variant="secondary" icon="x" onClick={stop} data-testid="stop-button">
                  Stop
                </Button>
              ) : (
                <Button type="submit" variant="primary" icon="send" disabled={!input.trim() || !target} data-testid="send-button">
                  Send
                </Button>
              )}
            </form>
          </section>
        </div>
      )}
    </>
  );
}
