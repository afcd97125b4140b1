/**
 * The "MLOps" sidebar: the active notebook's tags and pipeline, the actions (run, sweep, register, deploy,
 * schedule), and the tables (runs, models, deployments, schedules) kept live by polling the server extension.
 */
import { NotebookPanel, INotebookTracker } from '@jupyterlab/notebook';
import { ReactWidget } from '@jupyterlab/ui-components';
import React, { useCallback, useEffect, useMemo, useRef, useState } from 'react';

import { ApiError, Problem, request } from './api';
import {
  CRON_PRESETS,
  cellValue,
  filterRuns,
  formatDuration,
  formatValue,
  pageOf,
  wallClock,
  parseAssignments,
  parseGates,
  Role,
  ROLE_TAGS,
  roleOf,
  Run,
  runColumns,
  shortRunId,
  sortRuns,
  toggleRole
} from './logic';

export interface PanelOptions {
  tracker: INotebookTracker;
  openStepNotebook: (runId: string, step: string) => void;
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

interface Step {
  name: string;
  kind: string;
  cells: number[];
  depends_on: string[];
  metrics: string[];
}
interface Validation {
  ok: boolean;
  pipeline?: { steps: Step[]; parameters: Record<string, { default: unknown; help: string }> };
  problems?: Problem[];
  warnings?: string[];
}
type Notice = { kind: 'info' | 'error'; text: string } | null;

/** An engine as GET /mlops/api/engines describes it (jupyter_mlops/engines/abc.py). */
interface EngineSetting {
  name: string;
  flag: string;
  help: string;
  verbs: string[];
  type: 'text' | 'integer' | 'number' | 'flag';
  default: string | number | boolean | null;
}
interface Engine {
  name: string;
  summary: string;
  verbs: string[];
  options: EngineSetting[];
}
/** What a form sends for its engine: `backend` and that engine's `settings`. */
interface EngineChoice {
  backend: string;
  settings: Record<string, string | boolean>;
}

const PAGE_SIZE = 100;

/** Re-render when a Lumino signal fires (the active notebook or cell changed). */
function useSignal(signal: { connect: (fn: () => void) => void; disconnect: (fn: () => void) => void } | null) {
  const [, bump] = useState(0);
  useEffect(() => {
    if (!signal) {
      return;
    }
    const fn = () => bump(n => n + 1);
    signal.connect(fn);
    return () => {
      signal.disconnect(fn);
    };
  }, [signal]);
}

function PanelView({ tracker, openStepNotebook }: PanelOptions): JSX.Element {
  useSignal(tracker.currentChanged as any);
  useSignal(tracker.activeCellChanged as any);
  const panel = tracker.currentWidget;
  const [notice, setNotice] = useState<Notice>(null);
  const [validation, setValidation] = useState<Validation | null>(null);
  const [tab, setTab] = useState<'runs' | 'models' | 'deployments' | 'schedules'>('runs');
  const [action, setAction] = useState<'run' | 'sweep' | 'register' | 'deploy' | 'schedule' | null>('run');
  const [runs, setRuns] = useState<Run[]>([]);
  const [jobs, setJobs] = useState<any[]>([]);
  const [models, setModels] = useState<any[]>([]);
  const [deployments, setDeployments] = useState<any[]>([]);
  const [schedules, setSchedules] = useState<any[]>([]);
  const [engines, setEngines] = useState<Engine[]>([]);
  const path = panel?.context.path ?? null;

  useEffect(() => {  // the engines registered on the server: the forms offer those that can do their verb
    request<{ engines: Engine[] }>('GET', ['engines']).then(d => setEngines(d.engines), () => setEngines([]));
  }, []);

  const report = useCallback((error: unknown) => {
    const text = error instanceof Error ? error.message : String(error);
    setNotice({ kind: 'error', text });
  }, []);

  // -- validation of the notebook as it is in the editor (saved or not) ----------------------------------------
  const validate = useCallback(async (target: NotebookPanel | null) => {
    if (!target || !target.context.isReady) {
      setValidation(null);
      return;
    }
    try {
      const notebook = target.context.model.toJSON();
      setValidation(await request<Validation>('POST', ['validate'], { path: target.context.path, notebook }));
    } catch (error) {
      setValidation({ ok: false, problems: [{ cell: null, message: String((error as Error).message), fix: '', snippet: '' }] });
    }
  }, []);

  useEffect(() => {
    if (!panel) {
      setValidation(null);
      return;
    }
    let timer: number | undefined;
    const later = () => {
      window.clearTimeout(timer);
      timer = window.setTimeout(() => void validate(panel), 600);
    };
    void panel.context.ready.then(() => {
      void validate(panel);
      panel.context.model.contentChanged.connect(later);
    });
    return () => {
      window.clearTimeout(timer);
      panel.context.model?.contentChanged.disconnect(later);
    };
  }, [panel, validate]);

  // -- live tables: poll fast while something runs, slowly otherwise -------------------------------------------
  const refresh = useCallback(async () => {
    try {
      const data = await request<{ runs: Run[]; jobs: any[] }>('GET', ['runs']);
      setRuns(data.runs);
      setJobs(data.jobs);
      if (tab === 'models') {
        setModels((await request('GET', ['models'])).models);
      } else if (tab === 'deployments') {
        setDeployments((await request('GET', ['deployments'])).deployments);
      } else if (tab === 'schedules') {
        setSchedules((await request('GET', ['schedules'])).schedules);
      }
    } catch (error) {
      report(error);
    }
  }, [tab, report]);
  const busy = jobs.length > 0 || runs.some(r => r.status === 'running');
  useEffect(() => {
    void refresh();
    const timer = window.setInterval(() => void refresh(), busy ? 1500 : 8000);
    return () => window.clearInterval(timer);
  }, [refresh, busy]);

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
  const act = async (what: string, call: () => Promise<any>, after?: (data: any) => string) => {
    setNotice({ kind: 'info', text: `${what}...` });
    try {
      if (panel?.context.model.dirty) {
        await panel.context.save(); // runs read the saved file: save first, as a user would expect
      }
      const data = await call();
      setNotice({ kind: 'info', text: after ? after(data) : `${what}: done` });
      void refresh();
    } catch (error) {
      report(error);
      if (error instanceof ApiError && error.problems.length) {
        setValidation({ ok: false, problems: error.problems });
      }
    }
  };

  const steps = validation?.pipeline?.steps ?? [];
  const metrics = [...new Set(steps.flatMap(s => s.metrics || []))];
  const parameters = validation?.pipeline?.parameters ?? {};

  return (
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
            onRun={(text, engine) => act('starting the run', () => request('POST', ['runs'],
              { path, parameters: parseAssignments(text), ...engine }), d => `run ${d.run_id} started`)} />
        )}
        {action === 'sweep' && (
          <SweepForm disabled={!path || !validation?.ok} metrics={metrics} parameters={parameters} engines={engines}
            onSweep={body => act('starting the sweep', () => request('POST', ['sweeps'], { path, ...body }),
              d => `sweep started: ${d.trials} trials`)} />
        )}
        {action === 'register' && (
          <RegisterForm runs={runs} metrics={metrics}
            onRegister={body => act('registering', () => request('POST', ['models'], body),
              d => `registered ${d.name} version ${d.version}`)} />
        )}
        {action === 'deploy' && (
          <DeployForm models={models} loadModels={async () => setModels((await request('GET', ['models'])).models)}
            onDeploy={body => act('deploying', () => request('POST', ['deployments'], body),
              d => `${d.name}: ${d.status} at ${d.url}`)} />
        )}
        {action === 'schedule' && (
          <ScheduleForm disabled={!path || !validation?.ok}
            onSchedule={body => act('adding the schedule', () => request('POST', ['schedules'], { path, ...body }),
              d => `schedule ${d.name}: next run ${wallClock(d.next_tick)} (${d.timezone})`)} />
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
        {tab === 'runs' && <RunsTable runs={runs} openStepNotebook={openStepNotebook} report={report} />}
        {tab === 'models' && <ModelsTable models={models}
          act={(what, call) => act(what, call)} />}
        {tab === 'deployments' && <DeploymentsTable deployments={deployments} />}
        {tab === 'schedules' && <SchedulesTable schedules={schedules} act={(what, call) => act(what, call)} />}
      </section>
    </div>
  );
}

// -- forms ------------------------------------------------------------------------------------------------------------
function Field(props: { label: string; children: React.ReactNode; hint?: string }): JSX.Element {
  return (
    <label className="mlops-field">
      <span>{props.label}</span>
      {props.children}
      {props.hint && <small className="mlops-muted">{props.hint}</small>}
    </label>
  );
}

function guarded(fn: () => void, report: (e: unknown) => void) {
  try {
    fn();
  } catch (error) {
    report(error);
  }
}

function FormError({ error }: { error: string | null }): JSX.Element | null {
  return error ? <p className="mlops-form-error" role="alert">{error}</p> : null;
}

/** The Backend choice (only when more than one engine can do `verb`) and the chosen engine's settings. */
function useEngineChoice(engines: Engine[], verb: string): [EngineChoice, JSX.Element | null] {
  const able = engines.filter(e => e.verbs.includes(verb));
  const [backend, setBackend] = useState('local');
  const [settings, setSettings] = useState<Record<string, string | boolean>>({});
  const chosen = able.find(e => e.name === backend);
  const fields = (chosen?.options ?? []).filter(o => o.verbs.includes(verb));
  const element = able.length < 2 ? null : (
    <>
      <Field label="Backend" hint={chosen?.summary}>
        <select value={backend} data-testid={`mlops-${verb}-backend`}
          onChange={e => { setBackend(e.target.value); setSettings({}); }}>
          {able.map(e => <option key={e.name}>{e.name}</option>)}
        </select>
      </Field>
      {fields.map(o => (
        <Field key={o.name} label={o.flag} hint={o.help}>
          {o.type === 'flag'
            ? <input type="checkbox" checked={settings[o.name] === true}
              onChange={e => setSettings({ ...settings, [o.name]: e.target.checked })} />
            : <input type={o.type === 'text' ? 'text' : 'number'} value={String(settings[o.name] ?? '')}
              placeholder={o.default === null ? '' : String(o.default)} data-testid={`mlops-${verb}-${o.name}`}
              onChange={e => setSettings({ ...settings, [o.name]: e.target.value })} />}
        </Field>
      ))}
    </>
  );
  return [{ backend: chosen ? backend : 'local', settings: chosen ? settings : {} }, element];
}

function RunForm(props: { disabled: boolean; parameters: Record<string, any>; engines: Engine[];
  onRun: (text: string, engine: EngineChoice) => void }) {
  const [text, setText] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [engine, engineFields] = useEngineChoice(props.engines, 'run');
  const names = Object.keys(props.parameters);
  return (
    <div className="mlops-form">
      <Field label="Parameters" hint={names.length ? `defaults: ${names.map(n =>
        `${n}=${formatValue(props.parameters[n].default)}`).join(', ')}` : 'the notebook has no parameters cell'}>
        <textarea rows={2} value={text} placeholder="C = 10" data-testid="mlops-run-params"
          onChange={e => setText(e.target.value)} />
      </Field>
      {engineFields}
      <FormError error={error} />
      <button className="mlops-primary" disabled={props.disabled} data-testid="mlops-run"
        onClick={() => guarded(() => { parseAssignments(text); setError(null); props.onRun(text, engine); },
          e => setError((e as Error).message))}>Run pipeline</button>
    </div>
  );
}

function SweepForm(props: { disabled: boolean; metrics: string[]; parameters: Record<string, any>;
  engines: Engine[]; onSweep: (body: any) => void }) {
  const [engine, engineFields] = useEngineChoice(props.engines, 'sweep');
  const [space, setSpace] = useState('');
  const [parallel, setParallel] = useState(2);
  const [metric, setMetric] = useState('');
  const [direction, setDirection] = useState('maximize');
  const [samples, setSamples] = useState('');
  const [error, setError] = useState<string | null>(null);
  return (
    <div className="mlops-form">
      <Field label="Search space" hint="lists 1,10,100 · ranges 0.1..10:5 or 1e-4..1e-1:4:log · ints 1..8">
        <textarea rows={3} value={space} placeholder={`${Object.keys(props.parameters)[0] ?? 'C'} = 0.1,1,10`}
          onChange={e => setSpace(e.target.value)} data-testid="mlops-sweep-space" />
      </Field>
      <div className="mlops-row">
        <Field label="Parallel">
          <input type="number" min={1} value={parallel} onChange={e => setParallel(Number(e.target.value))} />
        </Field>
        <Field label="Random samples">
          <input type="number" min={1} value={samples} placeholder="all" onChange={e => setSamples(e.target.value)} />
        </Field>
      </div>
      <div className="mlops-row">
        <Field label="Optimise">
          <select value={metric} onChange={e => setMetric(e.target.value)}>
            <option value="">(no metric)</option>
            {props.metrics.map(m => <option key={m}>{m}</option>)}
          </select>
        </Field>
        <Field label="Direction">
          <select value={direction} onChange={e => setDirection(e.target.value)}>
            <option>maximize</option><option>minimize</option>
          </select>
        </Field>
      </div>
      {engineFields}
      <FormError error={error} />
      <button className="mlops-primary" disabled={props.disabled} data-testid="mlops-sweep"
        onClick={() => guarded(() => {
          const parsed = parseAssignments(space);
          if (!Object.keys(parsed).length) {
            throw new Error('give at least one parameter to sweep, e.g. "C = 0.1,1,10"');
          }
          setError(null);
          props.onSweep({ space: parsed, parallel, metric: metric || null, direction,
            samples: samples ? Number(samples) : null, ...engine });
        }, e => setError((e as Error).message))}>Start sweep</button>
    </div>
  );
}

function RegisterForm(props: { runs: Run[]; metrics: string[]; onRegister: (body: any) => void }) {
  const succeeded = props.runs.filter(r => r.status === 'succeeded').slice(0, 200);
  const [run, setRun] = useState('best');
  const [name, setName] = useState('');
  const [metric, setMetric] = useState('');
  const [gates, setGates] = useState('');
  const [error, setError] = useState<string | null>(null);
  const known = [...new Set([...props.metrics, ...succeeded.flatMap(r => Object.keys(r.metrics))])];
  return (
    <div className="mlops-form">
      <Field label="Run">
        <select value={run} onChange={e => setRun(e.target.value)}>
          <option value="best">best run by the metric</option>
          {succeeded.map(r => <option key={r.id} value={r.id}>{r.id} {Object.entries(r.metrics).map(([k, v]) =>
            `${k}=${formatValue(v)}`).join(' ')}</option>)}
        </select>
      </Field>
      <div className="mlops-row">
        <Field label="Model name"><input value={name} onChange={e => setName(e.target.value)} placeholder="digits" /></Field>
        <Field label="Metric">
          <select value={metric} onChange={e => setMetric(e.target.value)}>
            <option value="">(none)</option>
            {known.map(m => <option key={m}>{m}</option>)}
          </select>
        </Field>
      </div>
      <Field label="Quality gates" hint="one per line or comma-separated; a failed gate registers nothing">
        <textarea rows={2} value={gates} placeholder="accuracy >= 0.9" onChange={e => setGates(e.target.value)} />
      </Field>
      <FormError error={error} />
      <button className="mlops-primary" onClick={() => guarded(() => {
        if (!name.trim()) {
          throw new Error('give the model a name, e.g. "digits"');
        }
        if (run === 'best' && !metric) {
          throw new Error('"best run" needs the metric that ranks the runs');
        }
        setError(null);
        props.onRegister({ run, name: name.trim(), metric: metric || null, require: parseGates(gates) });
      }, e => setError((e as Error).message))}>Register</button>
    </div>
  );
}

function DeployForm(props: { models: any[]; loadModels: () => Promise<void>; onDeploy: (body: any) => void }) {
  const { loadModels } = props;
  useEffect(() => { void loadModels().catch(() => undefined); }, [loadModels]);
  const [name, setName] = useState('');
  const [port, setPort] = useState(8080);
  const [canary, setCanary] = useState('');
  const [weight, setWeight] = useState(10);
  const [shadow, setShadow] = useState('');
  const [error, setError] = useState<string | null>(null);
  const model = props.models.find(m => m.name === name);
  const versions: number[] = model ? model.versions.map((v: any) => v.version) : [];
  return (
    <div className="mlops-form">
      <div className="mlops-row">
        <Field label="Model">
          <select value={name} onChange={e => setName(e.target.value)}>
            <option value="">(choose)</option>
            {props.models.map(m => <option key={m.name}>{m.name}</option>)}
          </select>
        </Field>
        <Field label="Port"><input type="number" value={port} onChange={e => setPort(Number(e.target.value))} /></Field>
      </div>
      <p className="mlops-muted">primary: {model ? `version ${model.aliases.production ?? Math.max(...versions)}` +
        (model.aliases.production ? ' (production)' : ' (latest)') : '-'}</p>
      <div className="mlops-row">
        <Field label="Canary version">
          <select value={canary} onChange={e => setCanary(e.target.value)}>
            <option value="">(none)</option>{versions.map(v => <option key={v}>{v}</option>)}
          </select>
        </Field>
        <Field label={`Canary weight: ${weight}%`}>
          <input type="range" min={0} max={100} value={weight} disabled={!canary}
            onChange={e => setWeight(Number(e.target.value))} />
        </Field>
      </div>
      <Field label="Shadow version" hint="gets a copy of every request; answers compared, never returned">
        <select value={shadow} onChange={e => setShadow(e.target.value)}>
          <option value="">(none)</option>{versions.map(v => <option key={v}>{v}</option>)}
        </select>
      </Field>
      <FormError error={error} />
      <button className="mlops-primary" onClick={() => guarded(() => {
        if (!name) {
          throw new Error('choose a registered model');
        }
        setError(null);
        props.onDeploy({ name, port, canary: canary || null, weight, shadow: shadow || null });
      }, e => setError((e as Error).message))}>Deploy</button>
    </div>
  );
}

function ScheduleForm(props: { disabled: boolean; onSchedule: (body: any) => void }) {
  const [name, setName] = useState('');
  const [cron, setCron] = useState('0 3 * * *');
  const [timezone, setTimezone] = useState(Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC');
  const [params, setParams] = useState('');
  const [preview, setPreview] = useState<{ next?: string[]; error?: string }>({});
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    const timer = window.setTimeout(() => {
      request('POST', ['cron'], { cron, timezone })
        .then(d => setPreview({ next: d.next }))
        .catch(e => setPreview({ error: (e as Error).message }));
    }, 300);
    return () => window.clearTimeout(timer);
  }, [cron, timezone]);
  return (
    <div className="mlops-form">
      <Field label="Name"><input value={name} onChange={e => setName(e.target.value)} placeholder="nightly" /></Field>
      <div className="mlops-row">
        <Field label="Cron"><input value={cron} onChange={e => setCron(e.target.value)} /></Field>
        <Field label="Preset">
          <select value="" onChange={e => e.target.value && setCron(e.target.value)}>
            <option value="">(choose)</option>
            {CRON_PRESETS.map(p => <option key={p.cron} value={p.cron}>{p.label}</option>)}
          </select>
        </Field>
      </div>
      <Field label="Timezone"><input value={timezone} onChange={e => setTimezone(e.target.value)} /></Field>
      <p className={preview.error ? 'mlops-form-error' : 'mlops-muted'} data-testid="mlops-cron-preview">
        {preview.error ?? (preview.next ? `next (${timezone}): ${preview.next.slice(0, 3).map(wallClock)
          .join(' · ')}` : '')}
      </p>
      <Field label="Parameters"><textarea rows={2} value={params} onChange={e => setParams(e.target.value)} /></Field>
      <FormError error={error} />
      <button className="mlops-primary" disabled={props.disabled} onClick={() => guarded(() => {
        if (!name.trim()) {
          throw new Error('give the schedule a name, e.g. "nightly"');
        }
        setError(null);
        props.onSchedule({ name: name.trim(), cron, timezone, parameters: parseAssignments(params) });
      }, e => setError((e as Error).message))}>Add schedule</button>
    </div>
  );
}

// -- tables -----------------------------------------------------------------------------------------------------------
function RunsTable(props: { runs: Run[]; openStepNotebook: (run: string, step: string) => void;
  report: (e: unknown) => void }) {
  const [query, setQuery] = useState('');
  const [sort, setSort] = useState<{ key: string; descending: boolean }>({ key: 'started', descending: true });
  const [page, setPage] = useState(0);
  const [open, setOpen] = useState<string | null>(null);
  const { params, metrics } = useMemo(() => runColumns(props.runs), [props.runs]);
  const filtered = useMemo(() => filterRuns(props.runs, query), [props.runs, query]);
  const sorted = useMemo(() => sortRuns(filtered.runs, sort.key, sort.descending), [filtered, sort]);
  const shown = pageOf(sorted, page, PAGE_SIZE);
  const columns: [string, string][] = [['id', 'run'], ['status', 'status'], ['duration', 'duration'],
    ...params.map(p => [`params.${p}`, p] as [string, string]),
    ...metrics.map(m => [`metrics.${m}`, m] as [string, string])];
  const header = (key: string, label: string) => (
    <th key={key} aria-sort={sort.key === key ? (sort.descending ? 'descending' : 'ascending') : 'none'}
      className={key.startsWith('metrics.') ? 'mlops-metric' : key.startsWith('params.') ? 'mlops-param' : ''}
      onClick={() => setSort({ key, descending: sort.key === key ? !sort.descending : true })}>
      {label}{sort.key === key ? (sort.descending ? ' ▾' : ' ▴') : ''}
    </th>
  );
  return (
    <div>
      <input className="mlops-filter" placeholder="filter: accuracy>0.9 status=failed C=10 ..." value={query}
        onChange={e => { setQuery(e.target.value); setPage(0); }} data-testid="mlops-runs-filter" />
      {filtered.error && <p className="mlops-form-error">{filtered.error}</p>}
      <div className="mlops-table-scroll">
        <table className="mlops-table" data-testid="mlops-runs">
          <thead><tr>{columns.map(([k, l]) => header(k, l))}</tr></thead>
          <tbody>
            {shown.rows.map(run => (
              <React.Fragment key={run.id}>
                <tr className={`mlops-status-${run.status}${open === run.id ? ' mlops-selected' : ''}`}
                  onClick={() => setOpen(open === run.id ? null : run.id)} data-run={run.id}>
                  <td title={`${run.id} · ${run.path ?? run.notebook}${run.sweep_id ? ` · sweep ${run.sweep_id}` : ''}`}>
                    {shortRunId(run.id)}{run.sweep_id ? ' ⋯' : ''}</td>
                  <td><span className={`mlops-status mlops-status-${run.status}`}>{run.status}</span>
                    {run.status === 'running' && run.steps_total ? ` ${run.steps_done}/${run.steps_total}` : ''}</td>
                  <td>{formatDuration(run.duration)}</td>
                  {columns.slice(3).map(([k]) => <td key={k}>{formatValue(cellValue(run, k))}</td>)}
                </tr>
              </React.Fragment>
            ))}
          </tbody>
        </table>
      </div>
      {open && (  // below the table, not inside it: the steps need the panel's width, not a column's
        <div className="mlops-run-detail" data-testid="mlops-run-detail">
          <RunDetail id={open} status={props.runs.find(r => r.id === open)?.status ?? ''}
            open={props.openStepNotebook} report={props.report} />
        </div>
      )}
      <div className="mlops-pager">
        <span>{sorted.length} of {props.runs.length} runs</span>
        {shown.pages > 1 && (
          <span>
            <button disabled={shown.page === 0} onClick={() => setPage(shown.page - 1)}>‹</button>
            {` page ${shown.page + 1} / ${shown.pages} `}
            <button disabled={shown.page >= shown.pages - 1} onClick={() => setPage(shown.page + 1)}>›</button>
          </span>
        )}
      </div>
    </div>
  );
}

function RunDetail(props: { id: string; status: string; open: (run: string, step: string) => void;
  report: (e: unknown) => void }) {
  const [run, setRun] = useState<any>(null);
  const { id, status, report } = props;
  const alive = useRef(true);
  useEffect(() => {
    alive.current = true;
    request('GET', ['runs', id]).then(r => alive.current && setRun(r)).catch(report);
    return () => { alive.current = false; };
  }, [id, status, report]);
  if (!run) {
    return <span className="mlops-muted">loading...</span>;
  }
  return (
    <div>
      <div className="mlops-muted">run <code>{run.id}</code> · {run.path ?? run.notebook}
        {run.sweep_id ? ` · sweep ${run.sweep_id}` : ''}{run.schedule ? ` · schedule ${run.schedule}` : ''}</div>
      {run.error && <pre className="mlops-form-error">{run.error}</pre>}
      <ul className="mlops-run-steps">
        {run.steps.map((s: any) => (
          <li key={s.name}>
            <span className={`mlops-status mlops-status-${s.status}`}>{s.status}</span> <b>{s.name}</b>{' '}
            <span className="mlops-muted">{formatDuration(s.duration)}</span>{' '}
            {s.has_notebook && (
              <button className="mlops-link" data-testid={`mlops-open-${s.name}`}
                onClick={() => props.open(run.id, s.name)}>open output</button>
            )}
          </li>
        ))}
      </ul>
    </div>
  );
}

function ModelsTable(props: { models: any[]; act: (what: string, call: () => Promise<any>) => void }) {
  if (!props.models.length) {
    return <p className="mlops-muted">no models yet: register a run (actions, register)</p>;
  }
  return (
    <table className="mlops-table" data-testid="mlops-models">
      <thead><tr><th>model</th><th>version</th><th>aliases</th><th>metrics</th><th /></tr></thead>
      <tbody>
        {props.models.flatMap(m => [...m.versions].reverse().map((v: any) => {
          const aliases = Object.entries(m.aliases).filter(([, n]) => n === v.version).map(([a]) => a);
          return (
            <tr key={`${m.name}:${v.version}`}>
              <td>{m.name}</td><td>{v.version}</td>
              <td>{aliases.map(a => <span key={a} className="mlops-alias">{a}</span>)}</td>
              <td>{Object.entries(v.metrics).map(([k, x]) => `${k}=${formatValue(x)}`).join(' ')}</td>
              <td>
                {!aliases.includes('production') && (
                  <button className="mlops-link" onClick={() => props.act(`promoting ${m.name} v${v.version}`,
                    () => request('POST', ['models', m.name, 'promote'], { version: v.version }))}>promote</button>
                )}
                {aliases.includes('production') && (
                  <button className="mlops-link" onClick={() => props.act(`rolling back ${m.name}`,
                    () => request('POST', ['models', m.name, 'rollback'], {}))}>rollback</button>
                )}
              </td>
            </tr>
          );
        }))}
      </tbody>
    </table>
  );
}

function DeploymentsTable(props: { deployments: any[] }) {
  if (!props.deployments.length) {
    return <p className="mlops-muted">no deployments yet (actions, deploy)</p>;
  }
  return (
    <table className="mlops-table" data-testid="mlops-deployments">
      <thead><tr><th>model</th><th>server</th><th>variants</th><th>requests</th><th>drift</th></tr></thead>
      <tbody>
        {props.deployments.map(d => (
          <tr key={d.name}>
            <td>{d.name}</td>
            <td>{d.up ? <a href={d.url} target="_blank" rel="noreferrer">{d.url}</a> : <span className="mlops-muted">down</span>}</td>
            <td>primary v{d.version ?? '?'}{d.spec?.canary ? `, canary v${d.spec.canary} ${d.spec.weight}%` : ''}
              {d.spec?.shadow ? `, shadow v${d.spec.shadow}` : ''}</td>
            <td>{d.requests ?? '-'}</td>
            <td className={d.drifted_features?.length ? 'mlops-drifted' : ''}>
              {d.monitor_error ? '-' : d.drifted_features?.length ? `${d.drifted_features.length} features drifted`
                : 'no drift'}{d.outliers ? `, ${d.outliers} outliers` : ''}
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

function SchedulesTable(props: { schedules: any[]; act: (what: string, call: () => Promise<any>) => void }) {
  if (!props.schedules.length) {
    return <p className="mlops-muted">no schedules yet (actions, schedule)</p>;
  }
  const action = (name: string, what: string) => props.act(`${what} ${name}`,
    () => request('POST', ['schedules', name], { action: what }));
  return (
    <table className="mlops-table" data-testid="mlops-schedules">
      <thead><tr><th>schedule</th><th>cron</th><th>next</th><th>status</th><th /></tr></thead>
      <tbody>
        {props.schedules.map(s => (
          <tr key={s.name}>
            <td title={s.path ?? s.notebook}>{s.name}</td><td>{s.cron} <small>{s.timezone}</small></td>
            <td>{s.next_tick ? wallClock(s.next_tick) : '-'}</td><td>{s.status}</td>
            <td>
              <button className="mlops-link" onClick={() => action(s.name, s.status === 'active' ? 'pause' : 'resume')}>
                {s.status === 'active' ? 'pause' : 'resume'}</button>{' '}
              <button className="mlops-link" onClick={() => action(s.name, 'run')}>run now</button>{' '}
              <button className="mlops-link" onClick={() => props.act(`deleting ${s.name}`,
                () => request('DELETE', ['schedules', s.name]))}>delete</button>
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}
