// The home page: counts, running jobs with live progress (/ws/training/<id>/), recent jobs, charts of jobs and
// training hours per day, success rate, final loss by method and quota usage (/api/dashboard/stats/ and
// /api/dashboard/analytics/), then the platform's health and live notifications.
import { useQueryClient } from "@tanstack/react-query";
import { useCallback, useState } from "react";
import { Link } from "react-router-dom";
import { useMe } from "../api/auth";
import { errorMessage } from "../api/client";
import { dashboardKeys, useDashboardAnalytics, useDashboardStats } from "../api/dashboard";
import { displayName } from "../components/AppLayout";
import { HoursPerDayChart, JobsPerDayChart, LossByMethodChart } from "../components/dashboard/DashboardCharts";
import { RecentJobs, RunningJobs } from "../components/dashboard/JobLists";
import { QuotaBars } from "../components/dashboard/QuotaBars";
import { GettingStarted, HealthCard, NotificationsCard } from "../components/dashboard/SystemCards";
import { Icon, type IconName } from "../components/Icon";
import { Banner, Card, EmptyState, PageHeader, Spinner } from "../components/ui";
import { formatPercent } from "../lib/format";
import "../styles/dashboard.css";

const WINDOWS = [7, 30, 90] as const;

function StatTile({ icon, label, value, detail, to, testId }: { icon: IconName; label: string; value: string | number; detail?: string; to?: string; testId: string }) {
  const body = (
    <>
      <span className="db-tile__icon">
        <Icon name={icon} size={18} />
      </span>
      <span className="db-tile__text">
        <span className="db-tile__label">{label}</span>
        <span className="db-tile__value" data-testid={`${testId}-value`}>
          {value}
        </span>
        {detail && <span className="db-tile__detail">{detail}</span>}
      </span>
    </>
  );
  return to ? (
    <Link to={to} className="db-tile" data-testid={testId}>
      {body}
    </Link>
  ) : (
    <div className="db-tile" data-testid={testId}>
      {body}
    </div>
  );
}

export default function DashboardPage() {
  const me = useMe();
  const name = me.data ? displayName(me.data) : "";
  const [days, setDays] = useState<number>(30);
  const stats = useDashboardStats();
  const analytics = useDashboardAnalytics(days);
  const queryClient = useQueryClient();
  // A running job changed status over its socket: refresh the counts, lists and charts from the API.
  const refresh = useCallback(() => {
    void queryClient.invalidateQueries({ queryKey: dashboardKeys.stats });
    void queryClient.invalidateQueries({ queryKey: ["dashboard", "analytics"] });
  }, [queryClient]);

  const s = stats.data;
  const a = analytics.data;
  const isNew = !!s && s.datasets === 0 && s.jobs.total === 0;
  const running = s?.running_jobs.length ?? 0;

  return (
    <>
      <PageHeader title={name ? `Welcome, ${name}` : "Dashboard"} description="Your datasets, training runs and models at a glance." />
      {stats.isError && <Banner tone="error">{errorMessage(stats.error)}</Banner>}
      {stats.isPending ? (
        <div className="center-pad">
          <Spinner label="Loading your dashboard" />
        </div>
      ) : s ? (
        <>
          <div className="db-tiles" data-testid="dashboard-stats">
            <StatTile icon="datasets" label="Datasets" value={s.datasets} detail={`${s.dataset_versions} version${s.dataset_versions === 1 ? "" : "s"}`} to="/datasets" testId="stat-datasets" />
            <StatTile icon="models" label="Models" value={s.models} detail="fine-tuned" to="/models" testId="stat-models" />
            <StatTile icon="training" label="Training jobs" value={s.jobs.total} detail={running ? `${running} active now` : "none active"} to="/training" testId="stat-jobs" />
            <StatTile
              icon="check"
              label="Success rate"
              value={formatPercent(s.success_rate)}
              detail={`${s.jobs.by_status.succeeded ?? 0} succeeded · ${s.jobs.by_status.failed ?? 0} failed`}
              testId="stat-success"
            />
          </div>
          {isNew && <GettingStarted />}
          <div className="grid grid--dashboard">
            <Card title="Running jobs" icon="activity" description="Progress arrives live from the training workers." testId="running-card">
              {running ? (
                <RunningJobs jobs={s.running_jobs} onStatus={refresh} />
              ) : (
                <EmptyState icon="training" title="Nothing is training" action={<Link to="/training/new" className="btn btn--primary btn--sm tr-link-btn">New training run</Link>}>
                  Launch a run and follow its progress here.
                </EmptyState>
              )}
            </Card>
            <Card title="Quotas" icon="lock" description="What you have used against your limits." testId="quota-card">
              <QuotaBars quota={s.quota} />
            </Card>
          </div>
        </>
      ) : null}

      <Card
        title="Activity"
        icon="activity"
        testId="analytics-card"
        description={a ? `${a.jobs_created} job${a.jobs_created === 1 ? "" : "s"} created · ${a.training_hours.toFixed(2)} training hours · success rate ${formatPercent(a.success_rate)} (last ${a.days} days)` : "Jobs and training time per day."}
        actions={
          <div className="db-window" role="group" aria-label="Period">
            {WINDOWS.map((d) => (
              <button key={d} type="button" className={`db-window__btn${d === days ? " is-active" : ""}`} aria-pressed={d === days} onClick={() => setDays(d)}>
                {d} days
              </button>
            ))}
          </div>
        }
      >
        {analytics.isError ? (
          <Banner tone="error">{errorMessage(analytics.error)}</Banner>
        ) : !a ? (
          <div className="center-pad">
            <Spinner label="Loading charts" />
          </div>
        ) : (
          <div className="db-charts">
            <div>
              <h3 className="db-chart__title">Jobs per day</h3>
              <JobsPerDayChart data={a.jobs_per_day} />
            </div>
            <div>
              <h3 className="db-chart__title">Training hours per day</h3>
              <HoursPerDayChart data={a.training_hours_per_day} />
            </div>
            <div>
              <h3 className="db-chart__title">Final loss by method</h3>
              <LossByMethodChart data={a.final_loss_by_method} />
            </div>
          </div>
        )}
      </Card>

      {s && s.recent_jobs.length > 0 && (
        <Card title="Recent jobs" icon="training" actions={<Link to="/training" className="btn btn--secondary btn--sm tr-link-btn">All jobs</Link>} testId="recent-card">
          <RecentJobs jobs={s.recent_jobs} />
        </Card>
      )}

      <div className="grid grid--dashboard">
        <NotificationsCard />
        <HealthCard />
      </div>
    </>
  );
}
