// Shown when rendering a route throws (e.g. a lazy chunk fails to load after a deploy).
import { useRouteError } from "react-router-dom";
import { Banner, Button } from "../components/ui";

export function RouteError() {
  const error = useRouteError();
  const message = error instanceof Error ? error.message : "An unexpected error occurred.";
  return (
    <div className="full-center">
      <div className="narrow">
        <Banner tone="error" title="Something went wrong" testId="page-error">
          {message}
        </Banner>
        <Button variant="primary" onClick={() => window.location.reload()}>
          Reload the page
        </Button>
      </div>
    </div>
  );
}
