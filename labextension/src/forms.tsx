/**
 * The panel's action forms (run, sweep, register, deploy, schedule): each checks what it can in the browser and
 * hands a typed body to the panel, which sends it and reports the answer.
 */
import React, { useEffect, useState } from 'react';

import { request } from './api';
import {
  CRON_PRESETS, FIRST_PAGE, formatValue, parameterExample, parseAssignments, parseGates, Run, runListQuery, wallClock
} from './logic';
import {
  DeployBody, Engine, EngineChoice, Model, Parameter, RegisterBody, RunList, ScheduleBody, SweepBody
} from './types';

export function Field(props: { label: string; children: React.ReactNode; hint?: string }): JSX.Element {
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

export function FormError({ error }: { error: string | null }): JSX.Element | null {
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

export function RunForm(props: { disabled: boolean; parameters: Record<string, Parameter>; engines: Engine[];
  known: boolean; onRun: (text: string, engine: EngineChoice) => void }) {
  const [text, setText] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [engine, engineFields] = useEngineChoice(props.engines, 'run');
  const names = Object.keys(props.parameters);
  return (
    <div className="mlops-form">
      <Field label="Parameters" hint={!props.known ? 'its parameters show once the pipeline has no problems'
        : names.length ? `defaults: ${names.map(n => `${n}=${formatValue(props.parameters[n].default)}`).join(', ')}`
          : 'the notebook has no parameters cell'}>
        <textarea rows={2} value={text} placeholder={parameterExample(props.parameters, false)}
          data-testid="mlops-run-params"
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

export function SweepForm(props: { disabled: boolean; metrics: string[]; parameters: Record<string, Parameter>;
  engines: Engine[]; onSweep: (body: SweepBody) => void }) {
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
        <textarea rows={3} value={space} placeholder={parameterExample(props.parameters, true)}
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
          <select value={metric} onChange={e => setMetric(e.target.value)} data-testid="mlops-sweep-metric">
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

export function RegisterForm(props: { metrics: string[]; path: string | null;
  onRegister: (body: RegisterBody) => void }) {
  const [succeeded, setSucceeded] = useState<Run[]>([]);
  useEffect(() => {  // the newest succeeded runs to choose from, whatever the run table shows
    request<RunList>('GET', ['runs'], undefined,
      runListQuery({ ...FIRST_PAGE, filter: 'status=succeeded' }, 200)).then(d => setSucceeded(d.runs), () => undefined);
  }, []);
  const [run, setRun] = useState('best');
  const [name, setName] = useState('');
  const [metric, setMetric] = useState('');
  const [gates, setGates] = useState('');
  const [error, setError] = useState<string | null>(null);
  const known = [...new Set([...props.metrics, ...succeeded.flatMap(r => Object.keys(r.metrics))])];
  // the notebook's name as a model name: letters, digits and - _ . only
  const suggested = (props.path?.split('/').pop()?.replace(/\.ipynb$/, '') ?? 'model').replace(/[^A-Za-z0-9_.-]+/g, '-');
  return (
    <div className="mlops-form">
      <Field label="Run">
        <select value={run} onChange={e => setRun(e.target.value)}>
          <option value="best">{props.path ? 'best run of this notebook by the metric' : 'best run by the metric'}
          </option>
          {succeeded.map(r => <option key={r.id} value={r.id}>{r.id} {Object.entries(r.metrics).map(([k, v]) =>
            `${k}=${formatValue(v)}`).join(' ')}</option>)}
        </select>
      </Field>
      <div className="mlops-row">
        <Field label="Model name"><input value={name} onChange={e => setName(e.target.value)}
          placeholder={suggested} /></Field>
        <Field label="Metric">
          <select value={metric} onChange={e => setMetric(e.target.value)}>
            <option value="">(none)</option>
            {known.map(m => <option key={m}>{m}</option>)}
          </select>
        </Field>
      </div>
      <Field label="Quality gates" hint="one per line or comma-separated; a failed gate registers nothing">
        <textarea rows={2} value={gates} placeholder={`${known[0] ?? 'accuracy'} >= 0.9`}
          onChange={e => setGates(e.target.value)} />
      </Field>
      <FormError error={error} />
      <button className="mlops-primary" onClick={() => guarded(() => {
        if (!name.trim()) {
          throw new Error(`give the model a name, e.g. "${suggested}"`);
        }
        if (run === 'best' && !metric) {
          throw new Error('"best run" needs the metric that ranks the runs');
        }
        setError(null);
        props.onRegister({ run, name: name.trim(), metric: metric || null, require: parseGates(gates),
          ...(run === 'best' && props.path ? { path: props.path } : {}) });
      }, e => setError((e as Error).message))}>Register</button>
    </div>
  );
}

export function DeployForm(props: { models: Model[]; loadModels: () => Promise<void>; onDeploy: (body: DeployBody) => void }) {
  const { loadModels } = props;
  useEffect(() => { void loadModels().catch(() => undefined); }, [loadModels]);
  const [name, setName] = useState('');
  const [port, setPort] = useState(8080);
  const [canary, setCanary] = useState('');
  const [weight, setWeight] = useState(10);
  const [shadow, setShadow] = useState('');
  const [keep, setKeep] = useState(false);
  const [progressive, setProgressive] = useState(false);
  const [steps, setSteps] = useState('10,25,50,100');
  const [interval, setStepInterval] = useState('5m');
  const [minRequests, setMinRequests] = useState(100);
  const [error, setError] = useState<string | null>(null);
  const model = props.models.find(m => m.name === name);
  const versions: number[] = model ? model.versions.map(v => v.version) : [];
  return (
    <div className="mlops-form">
      <div className="mlops-row">
        <Field label="Model">
          <select value={name} onChange={e => setName(e.target.value)} data-testid="mlops-deploy-model">
            <option value="">(choose)</option>
            {props.models.map(m => <option key={m.name}>{m.name}</option>)}
          </select>
        </Field>
        <Field label="Port"><input type="number" value={port} onChange={e => setPort(Number(e.target.value))}
          data-testid="mlops-deploy-port" /></Field>
      </div>
      <p className="mlops-muted">primary: {model ? `version ${model.aliases.production ?? Math.max(...versions)}` +
        (model.aliases.production ? ' (production)' : ' (latest)') : '-'}</p>
      <div className="mlops-row">
        <Field label="Canary version">
          <select value={canary} onChange={e => setCanary(e.target.value)}>
            <option value="">(none)</option>{versions.map(v => <option key={v}>{v}</option>)}
          </select>
        </Field>
        <Field label={progressive ? 'Canary weight: by steps' : `Canary weight: ${weight}%`}>
          <input type="range" min={0} max={100} value={weight} disabled={!canary || progressive}
            onChange={e => setWeight(Number(e.target.value))} />
        </Field>
      </div>
      <label className="mlops-check" title="the scheduler raises the canary's weight each step while its errors,
latency and outcomes are as good as the primary's; at 100% it becomes production, otherwise it goes back to 0">
        <input type="checkbox" checked={progressive} disabled={!canary} data-testid="mlops-deploy-progressive"
          onChange={e => setProgressive(e.target.checked)} /> progressive: raise the canary step by step while healthy
      </label>
      {progressive && canary && (
        <div className="mlops-row">
          <Field label="Steps (%)"><input value={steps} onChange={e => setSteps(e.target.value)}
            data-testid="mlops-deploy-steps" /></Field>
          <Field label="Each step"><input value={interval} onChange={e => setStepInterval(e.target.value)}
            data-testid="mlops-deploy-interval" /></Field>
          <Field label="Min requests"><input type="number" value={minRequests} min={1}
            onChange={e => setMinRequests(Number(e.target.value))} data-testid="mlops-deploy-min-requests" /></Field>
        </div>
      )}
      <Field label="Shadow version" hint="gets a copy of every request; answers compared, never returned">
        <select value={shadow} onChange={e => setShadow(e.target.value)}>
          <option value="">(none)</option>{versions.map(v => <option key={v}>{v}</option>)}
        </select>
      </Field>
      <label className="mlops-check" title="otherwise the server stops when this JupyterLab's server stops">
        <input type="checkbox" checked={keep} onChange={e => setKeep(e.target.checked)}
          data-testid="mlops-deploy-keep" /> keep serving after JupyterLab stops</label>
      <FormError error={error} />
      <button className="mlops-primary" data-testid="mlops-deploy" onClick={() => guarded(() => {
        if (!name) {
          throw new Error('choose a registered model');
        }
        setError(null);
        props.onDeploy({ name, port, canary: canary || null, weight, shadow: shadow || null, keep,
          progressive: progressive && canary ? { steps, interval, min_requests: minRequests } : null });
      }, e => setError((e as Error).message))}>Deploy</button>
    </div>
  );
}

const TRIGGERS: { value: ScheduleBody['trigger']; label: string }[] = [
  { value: 'cron', label: 'on a clock (cron)' },
  { value: 'data-change', label: 'when the data it reads changes' },
  { value: 'drift', label: "when a deployed model's inputs drift" }
];

export function ScheduleForm(props: { disabled: boolean; onSchedule: (body: ScheduleBody) => void;
  models?: string[] }) {
  const [name, setName] = useState('');
  const [trigger, setTrigger] = useState<ScheduleBody['trigger']>('cron');
  const [cron, setCron] = useState('0 3 * * *');
  const [every, setEvery] = useState('5m');
  const [model, setModel] = useState('');
  const [register, setRegister] = useState('');
  const [gate, setGate] = useState('');
  const [timezone, setTimezone] = useState(Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC');
  const [params, setParams] = useState('');
  const [preview, setPreview] = useState<{ next?: string[]; error?: string }>({});
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    if (trigger !== 'cron') {
      setPreview({});
      return;
    }
    const timer = window.setTimeout(() => {
      request<{ next: string[] }>('POST', ['cron'], { cron, timezone })
        .then(d => setPreview({ next: d.next }))
        .catch(e => setPreview({ error: (e as Error).message }));
    }, 300);
    return () => window.clearTimeout(timer);
  }, [cron, timezone, trigger]);
  return (
    <div className="mlops-form">
      <Field label="Name"><input value={name} onChange={e => setName(e.target.value)} placeholder="nightly" /></Field>
      <Field label="Fire">
        <select value={trigger} data-testid="mlops-schedule-trigger"
          onChange={e => setTrigger(e.target.value as ScheduleBody['trigger'])}>
          {TRIGGERS.map(t => <option key={t.value} value={t.value}>{t.label}</option>)}
        </select>
      </Field>
      {trigger === 'cron' ? (
        <>
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
        </>
      ) : (
        <div className="mlops-row">
          {trigger === 'drift' && (
            <Field label="Model">
              <input value={model} list="mlops-schedule-models" onChange={e => setModel(e.target.value)}
                placeholder={props.models?.[0] ?? 'wine'} />
              <datalist id="mlops-schedule-models">{(props.models ?? []).map(m => <option key={m} value={m} />)}</datalist>
            </Field>
          )}
          <Field label="Check every"><input value={every} onChange={e => setEvery(e.target.value)}
            placeholder="5m" /></Field>
        </div>
      )}
      {trigger === 'data-change' && (
        <p className="mlops-muted">The files, folders and URLs its last run read are compared every check; the first
          check runs it once to set the baseline.</p>
      )}
      <div className="mlops-row">
        <Field label="Then register as"><input value={register} onChange={e => setRegister(e.target.value)}
          placeholder="(optional) model name" /></Field>
        <Field label="If"><input value={gate} onChange={e => setGate(e.target.value)}
          placeholder="accuracy>=0.9" disabled={!register.trim()} /></Field>
      </div>
      <Field label="Parameters"><textarea rows={2} value={params} onChange={e => setParams(e.target.value)} /></Field>
      <FormError error={error} />
      <button className="mlops-primary" disabled={props.disabled} onClick={() => guarded(() => {
        if (!name.trim()) {
          throw new Error('give the schedule a name, e.g. "nightly"');
        }
        if (trigger === 'drift' && !model.trim()) {
          throw new Error('name the deployed model whose drift fires this schedule');
        }
        setError(null);
        const body: ScheduleBody = { name: name.trim(), trigger, timezone, parameters: parseAssignments(params) };
        if (trigger === 'cron') {
          body.cron = cron;
        } else {
          body.every = every.trim() || undefined;
        }
        if (trigger === 'drift') {
          body.model = model.trim();
        }
        if (register.trim()) {
          body.register = register.trim();
          body.require = gate.trim() ? [gate.trim()] : [];
        }
        props.onSchedule(body);
      }, e => setError((e as Error).message))}>Add schedule</button>
    </div>
  );
}
