// Entry point (the Django shell loads this file's build from static/frontend/.vite/manifest.json).
import { MutationCache, QueryCache, QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { keys } from "./api/auth";
import { ApiError, ensureCsrf } from "./api/client";
import { App } from "./App";
import "./styles/index.css";

// A 401/403 anywhere may mean the session ended: re-check /api/auth/me/, and RequireAuth redirects to /login if so.
function onApiError(error: unknown, queryKey?: readonly unknown[]) {
  if (!(error instanceof ApiError) || !error.isAuthError) return;
  if (queryKey && queryKey[0] === keys.me[0] && queryKey[1] === keys.me[1]) return;
  void queryClient.invalidateQueries({ queryKey: keys.me });
}

const queryClient: QueryClient = new QueryClient({
  queryCache: new QueryCache({ onError: (error, query) => onApiError(error, query.queryKey) }),
  mutationCache: new MutationCache({ onError: (error) => onApiError(error) }),
  defaultOptions: {
    queries: {
      // Retry network errors and 5xx only; a 4xx will not change by asking again.
      retry: (failureCount, error) =>
        failureCount < 2 && (!(error instanceof ApiError) || error.status === 0 || error.status >= 500),
      refetchOnWindowFocus: true,
      staleTime: 10_000,
    },
  },
});

void ensureCsrf();

const root = document.getElementById("root");
if (!root) throw new Error("Missing <div id=\"root\"> in the page shell.");

createRoot(root).render(
  <StrictMode>
    <QueryClientProvider client={queryClient}>
      <App />
    </QueryClientProvider>
  </StrictMode>,
);
