// Routes: public auth pages, the authenticated app shell and a 404.
import { lazy } from "react";
import { createBrowserRouter, Outlet, RouterProvider } from "react-router-dom";
import { FullPageSpinner, RedirectIfAuthed, RequireAuth } from "./auth/guards";
import { AppLayout } from "./components/AppLayout";
import { LoginPage, SignupPage } from "./pages/AuthPages";
import NotFoundPage from "./pages/NotFoundPage";
import { RouteError } from "./pages/RouteError";

// Heavier pages load on demand (later issues add charts and tables to them).
const DashboardPage = lazy(() => import("./pages/DashboardPage"));
const SettingsPage = lazy(() => import("./pages/SettingsPage"));
const DatasetsListPage = lazy(() => import("./pages/datasets/DatasetsListPage"));
const DatasetUploadPage = lazy(() => import("./pages/datasets/upload/DatasetUploadPage"));
const DatasetDetailPage = lazy(() => import("./pages/datasets/DatasetDetailPage"));
const TrainingListPage = lazy(() => import("./pages/training/TrainingListPage"));
const NewTrainingPage = lazy(() => import("./pages/training/new/NewTrainingPage"));
const TrainingJobPage = lazy(() => import("./pages/training/TrainingJobPage"));
const SweepPage = lazy(() => import("./pages/training/SweepPage"));
const ModelsListPage = lazy(() => import("./pages/models/ModelsListPage"));
const ModelDetailPage = lazy(() => import("./pages/models/ModelDetailPage"));
const CompareModelsPage = lazy(() => import("./pages/models/CompareModelsPage"));
const BaseModelsPage = lazy(() => import("./pages/models/BaseModelsPage"));
const PlaygroundPage = lazy(() => import("./pages/models/playground/PlaygroundPage"));

const router = createBrowserRouter([
  {
    element: <Outlet />,
    errorElement: <RouteError />,
    hydrateFallbackElement: <FullPageSpinner />,
    children: [
      {
        path: "/login",
        element: (
          <RedirectIfAuthed>
            <LoginPage />
          </RedirectIfAuthed>
        ),
      },
      {
        path: "/signup",
        element: (
          <RedirectIfAuthed>
            <SignupPage />
          </RedirectIfAuthed>
        ),
      },
      {
        path: "/",
        element: (
          <RequireAuth>
            <AppLayout />
          </RequireAuth>
        ),
        children: [
          { index: true, element: <DashboardPage /> },
          { path: "datasets", element: <DatasetsListPage /> },
          { path: "datasets/upload", element: <DatasetUploadPage /> },
          { path: "datasets/:id", element: <DatasetDetailPage /> },
          { path: "training", element: <TrainingListPage /> },
          { path: "training/new", element: <NewTrainingPage /> },
          { path: "training/jobs/:id", element: <TrainingJobPage /> },
          { path: "training/sweeps/:id", element: <SweepPage /> },
          { path: "models", element: <ModelsListPage /> },
          { path: "models/base", element: <BaseModelsPage /> },
          { path: "models/compare", element: <CompareModelsPage /> },
          { path: "models/:id", element: <ModelDetailPage /> },
          { path: "playground", element: <PlaygroundPage /> },
          { path: "settings", element: <SettingsPage /> },
        ],
      },
      { path: "*", element: <NotFoundPage /> },
    ],
  },
]);

export function App() {
  return <RouterProvider router={router} />;
}
