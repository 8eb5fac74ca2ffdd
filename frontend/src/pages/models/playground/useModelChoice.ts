// Which model the playground talks to: "m:<id>" (fine-tuned) or "b:<id>" (base), kept in the URL (?model=, ?base=).
import { useEffect, useMemo, useState } from "react";
import { useSearchParams } from "react-router-dom";
import { useBaseCatalog, useModels, type BaseModel, type FineTunedModel } from "../../../api/models";
import type { GenerateTarget } from "../../../hooks/useGenerateStream";

export function parseTarget(value: string): GenerateTarget | null {
  const match = /^(m|b):(\d+)$/.exec(value);
  if (!match) return null;
  return { kind: match[1] === "m" ? "model" : "base", id: Number(match[2]) };
}

export function useModelChoice() {
  const [params, setParams] = useSearchParams();
  const models = useModels();
  const bases = useBaseCatalog();
  const [choice, setChoice] = useState(() => (params.get("model") ? `m:${params.get("model")}` : params.get("base") ? `b:${params.get("base")}` : ""));

  const fineTuned = useMemo(() => models.data ?? [], [models.data]);
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
    target?.kind === "base"
      ? (bases.data ?? []).find((b) => b.id === target.id)
      : selectedModel
        ? (bases.data ?? []).find((b) => b.id === selectedModel.base_model)
        : undefined;

  /** Choose another model (the caller clears the conversation). */
  const pick = (value: string) => {
    setChoice(value);
    const t = parseTarget(value);
    const next = new URLSearchParams(params);
    next.delete("model");
    next.delete("base");
    if (t) next.set(t.kind === "model" ? "model" : "base", String(t.id));
    setParams(next, { replace: true });
  };

  return { models, bases, fineTuned, baseList, choice, pick, target, selectedModel, selectedBase, compareParam: params.get("compare") === "1" };
}
