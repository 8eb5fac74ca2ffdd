// 404 for unknown client routes.
import { Link, useLocation } from "react-router-dom";
import { Logo } from "../components/AppLayout";

export default function NotFoundPage() {
  const { pathname } = useLocation();
  return (
    <div className="auth">
      <div className="auth__panel">
        <div className="auth__brand">
          <Logo />
        </div>
        <main className="auth__card not-found">
          <p className="not-found__code">404</p>
          <h1 className="auth__title">Page not found</h1>
          <p className="auth__subtitle">
            There is no page at <code className="code">{pathname}</code>. It may have moved, or the link may be mistyped.
          </p>
          <Link to="/" className="btn btn--primary btn--md btn--block">
            <span>Go to the dashboard</span>
          </Link>
        </main>
      </div>
    </div>
  );
}
