// Sub-navigation of the Models section: fine-tuned models, the base-model catalogue, compare.
import { NavLink } from "react-router-dom";

const TABS = [
  { to: "/models", label: "Fine-tuned", end: true },
  { to: "/models/base", label: "Base models", end: false },
  { to: "/models/compare", label: "Compare", end: false },
];

export function ModelsTabs() {
  return (
    <nav className="ds-tabs md-tabs" aria-label="Models sections">
      {TABS.map((tab) => (
        <NavLink key={tab.to} to={tab.to} end={tab.end} className={({ isActive }) => `ds-tab${isActive ? " is-active" : ""}`}>
          {tab.label}
        </NavLink>
      ))}
    </nav>
  );
}
