// Route guards: RequireAuth sends anonymous users to /login?next=…; RedirectIfAuthed keeps signed-in users off /login.
import type { ReactNode } from "react";
import { Navigate, useLocation, useSearchParams } from "react-router-dom";
import { useMe } from "../api/auth";
import { errorMessage } from "../api/client";
import { Banner, Button, Spinner } from "../components/ui";

/** Only same-site relative paths are accepted as ?next= targets. */
export function safeNext(value: string | null): string {
  if (!value || !value.startsWith("/") || value.startsWith("//") || value.startsWith("/\\")) return "/";
  return value;
}

export function FullPageSpinner() {
  return (
    <div className="full-center">
      <Spinner size={22} label="Loading" />
    </div>
  );
}

function LoadError({ error, retry }: { error: unknown; retry: () => void }) {
  return (
    <div className="full-center">
      <div className="narrow">
        <Banner tone="error" title="Could not load your account">
          {errorMessage(error)}
        </Banner>
        <Button onClick={retry} variant="secondary">
          Try again
        </Button>
      </div>
    </div>
  );
}

export function RequireAuth({ children }: { children: ReactNode }) {
  const me = useMe();
  const location = useLocation();
  if (me.isPending) return <FullPageSpinner />;
  if (me.isError && me.data === undefined) return <LoadError error={me.error} retry={() => void me.refetch()} />;
  if (!me.data) {
    const next = location.pathname + location.search + location.hash;
    const to = next === "/" ? "/login" : `/login?next=${encodeURIComponent(next)}`;
    return <Navigate to={to} replace />;
  }
  return <>{children}</>;
}

export function RedirectIfAuthed({ children }: { children: ReactNode }) {
  const me = useMe();
  const [params] = useSearchParams();
  if (me.isPending) return <FullPageSpinner />;
  if (me.data) return <Navigate to={safeNext(params.get("next"))} replace />;
  return <>{children}</>;
}
