// Authenticated shell: sidebar navigation, top bar with the user menu, and the routed page.
import { Suspense } from "react";
import { NavLink, Outlet, useLocation, useNavigate } from "react-router-dom";
import { useLogout, useMe } from "../api/auth";
import type { User } from "../api/types";
import { Icon, type IconName } from "./Icon";
import { Spinner } from "./ui";

const NAV: { to: string; label: string; icon: IconName; end?: boolean }[] = [
  { to: "/", label: "Dashboard", icon: "dashboard", end: true },
  { to: "/datasets", label: "Datasets", icon: "datasets" },
  { to: "/training", label: "Training", icon: "training" },
  { to: "/models", label: "Models", icon: "models" },
  { to: "/playground", label: "Playground", icon: "spark" },
  { to: "/settings", label: "Settings", icon: "settings" },
];

export function displayName(user: User): string {
  return user.display_name?.trim() || user.username;
}

function initials(name: string): string {
  const parts = name.split(/[\s._-]+/).filter(Boolean);
  const letters = parts.length > 1 ? parts[0][0] + parts[1][0] : name.slice(0, 2);
  return letters.toUpperCase();
}

export function Logo() {
  return (
    <span className="logo">
      <span className="logo__mark" aria-hidden="true">
        <svg viewBox="0 0 24 24" width="16" height="16" fill="none" stroke="currentColor" strokeWidth="2.2" strokeLinecap="round">
          <path d="M4 5c1.5 7 5 12.5 16 13.5" />
          <circle cx="20" cy="18.5" r="0.6" fill="currentColor" />
        </svg>
      </span>
      <span className="logo__text">finetune</span>
    </span>
  );
}

function Sidebar() {
  return (
    <aside className="sidebar">
      <div className="sidebar__inner">
        <div className="sidebar__brand">
          <Logo />
        </div>
        <nav className="sidebar__nav" aria-label="Main">
          <ul>
            {NAV.map((item) => (
              <li key={item.to}>
                <NavLink to={item.to} end={item.end} className={({ isActive }) => `nav-link${isActive ? " is-active" : ""}`}>
                  <Icon name={item.icon} size={17} />
                  <span>{item.label}</span>
                </NavLink>
              </li>
            ))}
          </ul>
        </nav>
        <div className="sidebar__footer">
          <a className="nav-link nav-link--muted" href="/api/docs/">
            <Icon name="search" size={17} />
            <span>API reference</span>
          </a>
        </div>
      </div>
    </aside>
  );
}

function pageTitle(pathname: string): string {
  const match = NAV.filter((n) => (n.end ? pathname === n.to : pathname.startsWith(n.to))).pop();
  return match?.label ?? "";
}

function UserMenu({ user }: { user: User }) {
  const logout = useLogout();
  const navigate = useNavigate();
  const name = displayName(user);
  const signOut = () => logout.mutate(undefined, { onSettled: () => navigate("/login", { replace: true }) });
  return (
    <div className="user-menu" data-testid="user-menu">
      <span className="avatar" aria-hidden="true">
        {initials(name)}
      </span>
      <span className="user-menu__text">
        <span className="user-menu__name">{name}</span>
        {name !== user.username && <span className="user-menu__sub">@{user.username}</span>}
      </span>
      <button type="button" className="btn btn--ghost btn--sm" onClick={signOut} disabled={logout.isPending}>
        <Icon name="logout" size={16} />
        <span>Sign out</span>
      </button>
    </div>
  );
}

export function AppLayout() {
  const me = useMe();
  const { pathname } = useLocation();
  const user = me.data;
  return (
    <div className="app">
      <a className="skip-link" href="#main">
        Skip to content
      </a>
      <Sidebar />
      <div className="app__main">
        <header className="topbar">
          <div className="topbar__title">{pageTitle(pathname)}</div>
          {user && <UserMenu user={user} />}
        </header>
        <main id="main" className="content" tabIndex={-1}>
          <Suspense
            fallback={
              <div className="content__loading">
                <Spinner size={20} label="Loading page" />
              </div>
            }
          >
            <Outlet />
          </Suspense>
        </main>
      </div>
    </div>
  );
}
