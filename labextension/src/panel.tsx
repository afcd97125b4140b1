/**
 * The "MLOps" sidebar: the active notebook's tags and pipeline, the actions (run, sweep, register, deploy,
 * schedule), and the tables (runs, models, deployments, schedules) kept live by polling the server extension.
 * The forms are in forms.tsx, the tables in tables.tsx, the hooks (validation, polling) in hooks.ts.
 */
import { INotebookTracker } from '@jupyterlab/notebook';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { ReactWidget } from '@jupyterlab/ui-components';
import React, { useCallback, useEffect, useState } from 'react';

import { ApiError, request } from './api';
import { ChartView, RenderMime } from './chart';
import { DeployForm, RegisterForm, RunForm, ScheduleForm, SweepForm } from './forms';
import { Tab, useEngines, useSignal, useTables, useValidation } from './hooks';
import { FIRST_PAGE, jobOutcome, offeredMetrics, Outcome, parseAssignments, Role, ROLE_TAGS, roleOf, RunQuery, toggleRole, wallClock } from './logic';
import { DeploymentsTable, ModelsTable, RunsTable, SchedulesTable } from './tables';
import { DeployAnswer, Job, RegisterAnswer, Schedule } from './types';

export interface PanelOptions {
  tracker: INotebookTracker;
  openStepNotebook: (runId: string, step: string) => void;
  rendermime: IRenderMimeRegistry | null; // draws the charts (JupyterLab's Vega-Lite renderer)
}

export class MlopsPanel extends ReactWidget {
  constructor(private options: PanelOptions) {
    super();
    this.id = 'jupyter-mlops-panel';
    this.addClass('mlops-panel');
    this.title.caption = 'MLOps';
  }

  render(): JSX.Element {
    return <PanelView {...this.options} />;
  }
}

type Notice = Outcome | null;

function PanelView({ tracker, openStepNotebook, rendermime }: PanelOptions): JSX.Element {
  useSignal(tracker.currentChanged);
  useSignal(tracker.activeCellChanged);
  const panel = tracker.currentWidget;
  const [notice, setNotice] = useState<Notice>(null);
  const [watched, setWatched] = useState<string | null>(null); // the job the notice reports on
  useEffect(() => {
    if (!watched) {
      return;
    }
    const timer = window.setInterval(async () => {
      try {
        const outcome = jobOutcome(await request<Job>('GET', ['jobs', watched]));
        if (outcome) {
          setNotice(outcome);
          setWatched(null);
        }
      } catch {
        setWatched(null); // forgotten by the server (restarted): the table still shows the run
      }
    }, 1500);
    return () => window.clearInterval(timer);
  }, [watched]);
  const [tab, setTab] = useState<Tab>('runs');
  const [action, setAction] = useState<'run' | 'sweep' | 'register' | 'deploy' | 'schedule' | null>('run');
  const path = panel?.context.path ?? null;
  const report = useCallback((error: unknown) => {
    const text = error instanceof Error ? error.message : String(error);
    setNotice({ kind: 'error', text });
  }, []);
  const [validation, setValidation] = useValidation(panel);
  const [query, setQuery] = useState<RunQuery>(FIRST_PAGE);
  useEffect(() => { // "this notebook only" follows the notebook in front
    if (query.notebook && path && path !== query.notebook) {
      setQuery({ ...query, notebook: path, page: 0 });
    }
  }, [path, query]);
  const { list, listError, models, deployments, schedules, busy, refresh, loadModels } = useTables(tab, query, report);
  const engines = useEngines();

  // -- tagging -------------------------------------------------------------------------------------------------------
  const activeCell = panel?.content.activeCell ?? null;
  const activeTags: string[] = (activeCell?.model.getMetadata('tags') as string[]) ?? [];
  const tag = (role: Role) => {
    if (!activeCell) {
      setNotice({ kind: 'error', text: 'select a cell in the notebook first' });
      return;
    }
    if (activeCell.model.type !== 'code') {
      setNotice({ kind: 'error', text: 'only code cells take pipeline tags; select a code cell' });
      return;
    }
    const next = toggleRole(activeTags, role);
    if (next.length) {
      activeCell.model.setMetadata('tags', next);
    } else {
      activeCell.model.deleteMetadata('tags');
    }
    setNotice(null);
  };

  const jumpTo = (cell: number | null) => {
    if (!panel || cell === null) {
      return;
    }
    const notebook = panel.content;
    notebook.activeCellIndex = cell - 1;
    const widget = notebook.widgets[cell - 1];
    if (widget) {
      void notebook.scrollToCell(widget);
    }
  };

  // -- actions -----------------------------------------------------------------------------------------------------
  const act = async <T,>(what: string, call: () => Promise<T>, after?: (data: T) => string) => {
    setNotice({ kind: 'info', text: `${what}...` });
    try {
      if (panel?.context.model.dirty) {
        await panel.context.save(); // runs read the saved file: save first, as a user would expect
      }
      const data = await call();
      setNotice({ kind: 'info', text: after ? after(data) : `${what}: done` });
      // a run or sweep goes on in the background: the notice follows its job and says how it ended
      setWatched((data as { job?: string } | null)?.job ?? null);
      void refresh();
    } catch (error) {
      report(error);
      if (error instanceof ApiError && error.problems.length) {
        setValidation({ ok: false, problems: error.problems });
      }
    }
  };

  const steps = validation?.pipeline?.steps ?? [];
  const metrics = offeredMetrics(validation);
  const parameters = validation?.pipeline?.parameters ?? {};

  return (
    <RenderMime.Provider value={rendermime}>
    <div className="mlops-root">
      <header className="mlops-header">
        <h2>MLOps</h2>
        <span className="mlops-notebook" title={path ?? ''}>
          {path ?? 'open a notebook to tag and run it'}
        </span>
      </header>
      {notice && (
        <div className={`mlops-notice mlops-notice-${notice.kind}`} role="status" data-testid="mlops-notice">
          <pre>{notice.text}</pre>
          <button className="mlops-link" onClick={() => setNotice(null)} aria-label="dismiss">×</button>
        </div>
      )}
      {notice?.chart && <ChartView kind={notice.chart.kind} query={notice.chart.query} />}

      {panel && (
        <section className="mlops-section">
          <h3>Tag the active cell</h3>
          <div className="mlops-tag-buttons">
            {ROLE_TAGS.map(role => (
              <button key={role} data-testid={`mlops-tag-${role}`}
                className={`mlops-tag-button mlops-role-${role}`} aria-pressed={activeTags.includes(role)}
                onClick={() => tag(role)}>{role}</button>
            ))}
          </div>
          <h3>Pipeline</h3>
          {validation === null && <p className="mlops-muted">reading the notebook...</p>}
          {validation?.problems?.length ? (
            <ul className="mlops-problems" data-testid="mlops-problems">
              {validation.problems.map((p, i) => (
                <li key={i}>
                  <button className="mlops-link" onClick={() => jumpTo(p.cell)} disabled={p.cell === null}>
                    {p.cell !== null ? `cell ${p.cell}` : 'notebook'}
                  </button>{' '}
                  {p.message}
                  {p.fix && <div className="mlops-fix">fix: {p.fix}</div>}
                </li>
              ))}
            </ul>
          ) : null}
          {validation?.ok && (
            <ol className="mlops-steps" data-testid="mlops-steps">
              {steps.map(s => (
                <li key={s.name}>
                  <span className={`mlops-badge mlops-role-${roleOf([s.kind])?.role ?? 'custom'}`}>{s.kind}</span>
                  <b>{s.name}</b>{' '}
                  <button className="mlops-link" onClick={() => jumpTo(s.cells[0])}>
                    cell{s.cells.length > 1 ? 's' : ''} {s.cells.join(', ')}
                  </button>
                  {s.depends_on.length > 0 && <span className="mlops-muted"> after {s.depends_on.join(', ')}</span>}
                </li>
              ))}
              {steps.length === 0 && <li className="mlops-muted">no steps yet: tag a cell data, train, ...</li>}
            </ol>
          )}
          {validation?.warnings?.map((w, i) => <p key={i} className="mlops-muted">warning: {w}</p>)}
        </section>
      )}

      <section className="mlops-section">
        <nav className="mlops-tabs" aria-label="actions">
          {(['run', 'sweep', 'register', 'deploy', 'schedule'] as const).map(a => (
            <button key={a} aria-pressed={action === a} data-testid={`mlops-action-${a}`}
              onClick={() => setAction(action === a ? null : a)}>{a}</button>
          ))}
        </nav>
        {action === 'run' && (
          <RunForm disabled={!path || !validation?.ok} parameters={parameters} engines={engines}
            known={!!validation?.ok}
            onRun={(text, engine) => act('starting the run', () => request<{ run_id: string }>('POST', ['runs'],
              { path, parameters: parseAssignments(text), ...engine }), d => `run ${d.run_id} started`)} />
        )}
        {action === 'sweep' && (
          <SweepForm disabled={!path || !validation?.ok} metrics={metrics} parameters={parameters} engines={engines}
            onSweep={body => act('starting the sweep', () => request<{ trials: number }>('POST', ['sweeps'],
              { path, ...body }),
              d => `sweep started: ${d.trials} trials`)} />
        )}
        {action === 'register' && (
          <RegisterForm metrics={metrics} path={path}
            onRegister={body => act('registering', () => request<RegisterAnswer>('POST',
              ['models'], body),
              d => `registered ${d.name} version ${d.version}` + (d.warning ? `; warning: ${d.warning}` : ''))} />
        )}
        {action === 'deploy' && (
          <DeployForm models={models} loadModels={loadModels}
            onDeploy={body => act('deploying', () => request<DeployAnswer>('POST', ['deployments'], body),
              d => `${d.name}: ${d.status} at ${d.url}`)} />
        )}
        {action === 'schedule' && (
          <ScheduleForm disabled={!path || !validation?.ok} models={models.map(m => m.name)}
            onSchedule={body => act('adding the schedule', () => request<Schedule>('POST', ['schedules'],
              { path, ...body }),
              d => `schedule ${d.name}: ${d.cron ? `next run ${wallClock(d.next_tick)} (${d.timezone})`
                : `${d.when}, next check ${wallClock(d.next_tick)}`}` + (d.warning ? `; warning: ${d.warning}` : ''))} />
        )}
      </section>

      <section className="mlops-section mlops-tables">
        <nav className="mlops-tabs" aria-label="tables">
          {(['runs', 'models', 'deployments', 'schedules'] as const).map(t => (
            <button key={t} aria-pressed={tab === t} data-testid={`mlops-tab-${t}`} onClick={() => setTab(t)}>
              {t}{t === 'runs' && busy ? ' ●' : ''}
            </button>
          ))}
        </nav>
        {tab === 'runs' && <RunsTable list={list} error={listError} query={query} setQuery={setQuery} path={path}
          openStepNotebook={openStepNotebook} report={report}
          resume={id => act(`resuming ${id}`, () => request<{ job: string }>('POST', ['runs', id, 'resume']),
            () => `run ${id} resumed`)} />}
        {tab === 'models' && <ModelsTable models={models}
          act={(what, call) => act(what, call)} />}
        {tab === 'deployments' && <DeploymentsTable deployments={deployments} act={(what, call) => act(what, call)} />}
        {tab === 'schedules' && <SchedulesTable schedules={schedules} act={(what, call) => act(what, call)} />}
      </section>
    </div>
    </RenderMime.Provider>
  );
}
