/**
 * The panel's tables: runs (filter, sort, pages, a run's steps and their output notebooks), models (promote,
 * rollback), deployments (up or down, traffic split, drift) and schedules (pause, resume, run now, delete).
 */
import React, { useEffect, useMemo, useRef, useState } from 'react';

import { request } from './api';
import { ChartView } from './chart';
import { PAGE_SIZE } from './hooks';
import {
  cellValue, formatBytes, formatDuration, formatValue, pageCount, runColumns, runsChartQuery, RunQuery, shortRunId, wallClock
} from './logic';
import { AbTest, Act, Deployment, Model, Rollout, RunDetails, RunList, ScheduleList } from './types';

/** One page of runs, as the server filtered, sorted and paged them; the filter, sort and page are the panel's. */
export function RunsTable(props: { list: RunList | null; error: string | null; query: RunQuery;
  setQuery: (query: RunQuery) => void; openStepNotebook: (run: string, step: string) => void;
  report: (e: unknown) => void; path: string | null; resume: (run: string) => void }) {
  const { query, setQuery } = props;
  const [open, setOpen] = useState<string | null>(null);
  const [chart, setChart] = useState(false);
  const [compareWith, setCompareWith] = useState<string | null>(null);
  const runs = useMemo(() => props.list?.runs ?? [], [props.list]);
  const { params, metrics } = useMemo(() => runColumns(runs), [runs]);
  const { page, pages } = pageCount(props.list?.total ?? 0, query.page, PAGE_SIZE);
  // metrics first after the run and its status: at the sidebar's default width they are what shows
  const mixed = new Set(runs.map(r => r.path ?? r.notebook)).size > 1; // then a column says whose run it is
  const columns: [string, string][] = [['id', 'run'], ['status', 'status'],
    ...(mixed ? [['notebook', 'notebook'] as [string, string]] : []),
    ...metrics.map(m => [`metrics.${m}`, m] as [string, string]),
    ...params.map(p => [`params.${p}`, p] as [string, string]), ['duration', 'duration']];
  const detail = useRef<HTMLDivElement>(null);
  // opened below: into view. Braces, not an arrow's value: Chromium's scrollIntoView now returns a promise, which
  // React then took for the effect's clean-up and crashed the panel on the next run opened
  useEffect(() => { detail.current?.scrollIntoView({ block: 'nearest' }); }, [open]);
  const header = (key: string, label: string) => (
    <th key={key} aria-sort={query.sort === key ? (query.descending ? 'descending' : 'ascending') : 'none'}
      className={key.startsWith('metrics.') ? 'mlops-metric' : key.startsWith('params.') ? 'mlops-param' : ''}
      onClick={() => setQuery({ ...query, sort: key, descending: query.sort === key ? !query.descending : true,
        page: 0 })}>
      {label}{query.sort === key ? (query.descending ? ' ▾' : ' ▴') : ''}
    </th>
  );
  return (
    <div>
      <input className="mlops-filter" placeholder="filter: accuracy>0.9 status=failed C=10 ..." value={query.filter}
        onChange={e => setQuery({ ...query, filter: e.target.value, page: 0 })} data-testid="mlops-runs-filter" />
      <div className="mlops-runs-tools">
        <label title={props.path ?? 'open a notebook'}>
          <input type="checkbox" data-testid="mlops-this-notebook" disabled={!props.path && !query.notebook}
            checked={!!query.notebook}
            onChange={e => setQuery({ ...query, notebook: e.target.checked ? props.path : null, page: 0 })} />
          {' '}this notebook only</label>
        <button className="mlops-link" aria-pressed={chart} data-testid="mlops-runs-chart-toggle"
          onClick={() => setChart(!chart)}>{chart ? 'hide chart' : 'chart'}</button>
      </div>
      {props.error && <p className="mlops-form-error" data-testid="mlops-filter-error">{props.error}</p>}
      {chart && <ChartView kind="runs" query={runsChartQuery(query)} version={props.list?.total} />}
      <div className="mlops-table-scroll">
        <table className="mlops-table" data-testid="mlops-runs">
          <thead><tr>{columns.map(([k, l]) => header(k, l))}</tr></thead>
          <tbody>
            {runs.map(run => (
              <React.Fragment key={run.id}>
                <tr className={`mlops-status-${run.status}${open === run.id ? ' mlops-selected' : ''}`}
                  onClick={() => setOpen(open === run.id ? null : run.id)} data-run={run.id}>
                  <td title={`${run.id} · ${run.path ?? run.notebook}${run.sweep_id ? ` · sweep ${run.sweep_id}` : ''}`}>
                    {shortRunId(run.id)}{run.sweep_id ? ' ⋯' : ''}</td>
                  <td><span className={`mlops-status mlops-status-${run.status}`}>{run.status}</span>
                    {run.status === 'running' && run.steps_total ? ` ${run.steps_done}/${run.steps_total}` : ''}</td>
                  {columns.slice(2, -1).map(([k]) => <td key={k}>{k === 'notebook'
                    ? (run.path ?? run.notebook).split('/').pop() : formatValue(cellValue(run, k))}</td>)}
                  <td>{formatDuration(run.duration)}</td>
                </tr>
              </React.Fragment>
            ))}
          </tbody>
        </table>
      </div>
      {open && (  // below the table, not inside it: the steps need the panel's width, not a column's
        <div className="mlops-run-detail" data-testid="mlops-run-detail" ref={detail}>
          <RunDetail id={open} status={runs.find(r => r.id === open)?.status ?? ''}
            open={props.openStepNotebook} report={props.report} resume={props.resume} />
          {compareWith && compareWith !== open ? (
            <>
              <button className="mlops-link" onClick={() => setCompareWith(null)}>stop comparing</button>
              <ChartView kind="compare" query={{ runs: `${compareWith},${open}` }} />
            </>
          ) : (
            <button className="mlops-link" data-testid="mlops-compare" onClick={() => setCompareWith(open)}>
              {compareWith ? 'comparing: open another run' : 'compare with another run'}</button>
          )}
        </div>
      )}
      <div className="mlops-pager" data-testid="mlops-pager">
        <span>{props.list ? `${props.list.total} run${props.list.total === 1 ? '' : 's'}` : 'loading runs...'}
          {props.list?.filter ? ` match${props.list.total === 1 ? 'es' : ''} "${props.list.filter}"` : ''}</span>
        {pages > 1 && (
          <span>
            <button disabled={page === 0} onClick={() => setQuery({ ...query, page: page - 1 })}>‹</button>
            {` page ${page + 1} / ${pages} `}
            <button disabled={page >= pages - 1} onClick={() => setQuery({ ...query, page: page + 1 })}>›</button>
          </span>
        )}
      </div>
    </div>
  );
}

export function RunDetail(props: { id: string; status: string; open: (run: string, step: string) => void;
  report: (e: unknown) => void; resume: (run: string) => void }) {
  const [run, setRun] = useState<RunDetails | null>(null);
  const { id, status, report } = props;
  const alive = useRef(true);
  useEffect(() => {
    alive.current = true;
    request<RunDetails>('GET', ['runs', id]).then(r => alive.current && setRun(r)).catch(report);
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
      {(run.status === 'failed' || run.status === 'cancelled') && (
        <button className="mlops-link" data-testid="mlops-resume" onClick={() => props.resume(run.id)}
          title="rerun the failed steps, reusing the unchanged ones upstream; the notebook is read again, fixes included">
          resume from the failed step</button>
      )}
      <ul className="mlops-run-steps">
        {run.steps.map(s => (
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
      <DataChecks run={run} />
    </div>
  );
}

/** What a run read and what its data checks found (each finding names step, variable and column). */
function DataChecks(props: { run: RunDetails }) {
  const { data, data_checks: checks } = props.run;
  return (
    <div data-testid="mlops-run-data">
      {checks.findings.length > 0 && (
        <div className="mlops-findings" data-testid="mlops-data-findings">
          <b>data checks</b> <span className="mlops-muted">against run <code>{checks.baseline}</code></span>
          <ul>{checks.findings.map((f, i) => <li key={i}>{f.message}</li>)}</ul>
        </div>
      )}
      {data.length > 0 && (
        <details>
          <summary className="mlops-muted">data read: {data.length} {data.length === 1 ? 'item' : 'items'}</summary>
          <ul className="mlops-data-reads">
            {data.map(d => (
              <li key={`${d.kind}:${d.path}`} title={`${d.method} ${d.digest ?? ''}`}>
                <code>{d.path}</code> <span className="mlops-muted">{d.kind}{d.size !== null ? `, ${formatBytes(d.size)}`
                  : ''}{d.step ? `, step ${d.step}` : ', --watch'} · {d.digest ? d.digest.slice(0, 12) : d.method}</span>
              </li>
            ))}
          </ul>
        </details>
      )}
    </div>
  );
}

export function ModelsTable(props: { models: Model[]; act: Act }) {
  if (!props.models.length) {
    return <p className="mlops-muted">no models yet: register a run (actions, register)</p>;
  }
  return (
    <table className="mlops-table" data-testid="mlops-models">
      <thead><tr><th>model</th><th>version</th><th>aliases</th><th>metrics</th><th /></tr></thead>
      <tbody>
        {props.models.flatMap(m => [...m.versions].reverse().map(v => {
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

export function DeploymentsTable(props: { deployments: Deployment[]; act: Act }) {
  const [charted, setCharted] = useState<string | null>(null);
  const charts = useRef<HTMLDivElement>(null);
  useEffect(() => { charts.current?.scrollIntoView({ block: 'nearest' }); }, [charted]); // opened below: into view
  if (!props.deployments.length) {
    return <p className="mlops-muted">no deployments yet (actions, deploy)</p>;
  }
  const shown = props.deployments.find(d => d.name === charted);
  return (
    <>
    <div className="mlops-table-scroll">
    <table className="mlops-table" data-testid="mlops-deployments">
      <thead><tr><th>model</th><th>server</th><th>variants</th><th>requests</th><th>drift</th><th /></tr></thead>
      <tbody>
        {props.deployments.map(d => (
          <tr key={d.name}>
            <td>{d.name}</td>
            <td>{d.up ? <a href={d.url ?? undefined} target="_blank" rel="noreferrer">{d.url}</a> : <span className="mlops-muted">down</span>}</td>
            <td>primary v{d.version ?? '?'}{d.spec?.canary ? `, canary v${d.spec.canary} ${d.spec.weight}%` : ''}
              {d.spec?.shadow ? `, shadow v${d.spec.shadow}` : ''}</td>
            <td>{d.requests ?? '-'}</td>
            <td className={d.drifted_features?.length ? 'mlops-drifted' : ''}>
              {d.monitor_error ? '-' : d.drifted_features?.length ? `${d.drifted_features.length} features drifted`
                : 'no drift'}{d.outliers ? `, ${d.outliers} outliers` : ''}
            </td>
            <td>
              <button className="mlops-link" data-testid={`mlops-undeploy-${d.name}`}
                onClick={() => props.act(`stopping ${d.name}`, () => request('DELETE', ['deployments', d.name]))}>
                {d.up ? 'stop' : 'remove'}</button>{' '}
              <button className="mlops-link" data-testid={`mlops-charts-${d.name}`} aria-pressed={charted === d.name}
                onClick={() => setCharted(charted === d.name ? null : d.name)}>charts</button>
            </td>
          </tr>
        ))}
      </tbody>
    </table>
    </div>
    {props.deployments.filter(d => d.rollout).map(d => (  // outside the table: wrapped at the panel's width
      <RolloutState key={d.name} name={d.name} rollout={d.rollout!} />
    ))}
    {shown && (  // below the table, scrolled into view: the charts need the panel's width
      <div data-testid="mlops-deployment-charts" ref={charts}>
        <ChartView kind="traffic" query={{ name: shown.name }} version={shown.requests} />
        {!shown.monitor_error && <ChartView kind="monitor" query={{ name: shown.name }} version={shown.requests} />}
        {!!shown.outcomes?.length && (
          <AbTestView name={shown.name} version={shown.outcomes.reduce((n, o) => n + o.n, 0)} />
        )}
        {shown.rollout && <RolloutDecisions rollout={shown.rollout} />}
      </div>
    )}
    </>
  );
}

const ROLLOUT_WORDS: Record<Rollout['status'], string> = {
  running: 'rolling out', promoted: 'promoted', rolled_back: 'rolled back', stopped: 'rollout stopped'
};

/** One line under the deployments table per rollout: where it is, and what it waits for. */
function RolloutState(props: { name: string; rollout: Rollout }) {
  const r = props.rollout;
  const step = r.status === 'running' ? ` step ${r.step + 1} of ${r.steps.length - 1}` : '';
  return (
    <div className={`mlops-rollout-state ${r.status === 'rolled_back' || r.warning ? 'mlops-drifted' : 'mlops-muted'}`}
      data-testid="mlops-rollout-state" title={r.warning ?? r.note ?? ''}>
      <small>{props.name} v{r.canary}: {ROLLOUT_WORDS[r.status]}{step}{r.note ? `, ${r.note}` : ''}
        {r.warning ? ` (${r.warning})` : ''}</small>
    </div>
  );
}

/** The rollout's decisions, each with its reason (deploy history). */
function RolloutDecisions(props: { rollout: Rollout }) {
  const r = props.rollout;
  return (
    <div data-testid="mlops-rollout">
      <b>Rollout of v{r.canary}</b> <span className="mlops-muted">against v{r.primary_version}: {r.steps.map(
        w => `${w}%`).join(', ')}</span>
      <ol className="mlops-decisions">  {/* a list, not a table: the reasons are sentences, wrapped at any width */}
        {r.decisions.map(d => (
          <li key={`${d.step}:${d.action}`} className={d.action === 'rolled_back' ? 'mlops-drifted' : ''}>
            <span className="mlops-muted">{new Date(d.at * 1000).toLocaleTimeString()}</span>{' '}
            <b>{d.action.replace('_', ' ')}</b>, canary at {d.weight}%: {d.reason}
          </li>
        ))}
      </ol>
    </div>
  );
}

/** The deployment's variants compared on the outcomes sent back for their answers. */
function AbTestView(props: { name: string; version: number }) {
  const [found, setFound] = useState<AbTest | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    request<AbTest>('GET', ['deployments', props.name]).then(setFound).catch(e => setError((e as Error).message));
  }, [props.name, props.version]);
  if (error) {
    return <p className="mlops-form-error">{error}</p>;
  }
  if (!found) {
    return null;
  }
  const pct = (v: number) => found.metric === 'accuracy' ? `${(v * 100).toFixed(1)}%` : v.toPrecision(4);
  return (
    <div data-testid="mlops-abtest">
      <b>A-B test</b> <span className="mlops-muted">{found.metric}, 95% intervals</span>
      <div className="mlops-table-scroll">
      <table className="mlops-table">
        <thead><tr><th>variant</th><th>n</th><th>{found.metric}</th><th>verdict</th></tr></thead>
        <tbody>
          {found.variants.map(v => (
            <tr key={`${v.variant}:${v.version}`}>
              <td>{v.variant} v{v.version}</td><td>{v.n}</td>
              <td>{pct(v.value)} <small>[{pct(v.low)}, {pct(v.high)}]</small></td>
              <td title={v.p_value !== undefined ? `p = ${v.p_value.toPrecision(3)}` : ''}>
                {v.verdict ?? 'baseline'}{v.more_needed ? <small> (~{v.more_needed} more to see it)</small> : null}</td>
            </tr>
          ))}
        </tbody>
      </table>
      </div>
      {found.note && <p className="mlops-muted">{found.note}</p>}
    </div>
  );
}

/** Whether a scheduler is alive to fire the schedules: a warning with the fix when none is. */
function SchedulerState(props: { list: ScheduleList }) {
  const alive = props.list.schedulers;
  if (!alive.length) {
    return <p className="mlops-form-error" data-testid="mlops-scheduler-state">{props.list.warning}</p>;
  }
  const last = Math.max(...alive.map(s => s.last_pass));
  return (
    <p className="mlops-muted" data-testid="mlops-scheduler-state">
      scheduler running{alive.length > 1 ? ` (${alive.length})` : ''}: last pass {Math.max(0, Math.round(
        Date.now() / 1000 - last))} s ago
    </p>
  );
}

export function SchedulesTable(props: { schedules: ScheduleList | null; act: Act }) {
  if (!props.schedules) {
    return null;
  }
  const state = <SchedulerState list={props.schedules} />;
  if (!props.schedules.schedules.length) {
    return <>{state}<p className="mlops-muted">no schedules yet (actions, schedule)</p></>;
  }
  const action = (name: string, what: string) => props.act(`${what} ${name}`,
    () => request('POST', ['schedules', name], { action: what }));
  return (
    <>{state}
    <table className="mlops-table" data-testid="mlops-schedules">
      <thead><tr><th>schedule</th><th>when</th><th>next</th><th>status</th><th /></tr></thead>
      <tbody>
        {props.schedules.schedules.map(s => (
          <tr key={s.name}>
            <td title={s.path ?? s.notebook}>{s.name}</td><td>{s.when}{s.cron ? <small> {s.timezone}</small> : null}</td>
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
    </>
  );
}
