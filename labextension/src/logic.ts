/**
 * The panel's logic without JupyterLab or React: cell tags, the run table's columns and the query for its page
 * (the server filters, sorts and pages), and the forms' text parsed into API bodies. Kept pure so node's test runner checks it (test/logic.test.ts).
 */
import type { Job, Validation } from './types';

/** The tags the panel's buttons put on a cell; a cell has at most one of them. */
export const ROLE_TAGS = ['parameters', 'setup', 'data', 'train', 'evaluate', 'serve', 'skip'] as const;
export type Role = (typeof ROLE_TAGS)[number];

/** Tags meaning the same as one of ours (Kale's, and our aliases), as the Python side reads them. */
const ROLE_ALIASES: Record<string, Role> = {
  imports: 'setup',
  functions: 'setup',
  'pipeline-parameters': 'parameters'
};

/** The role a cell's tags give it, for its badge: one of ROLE_TAGS, `step:NAME` as "custom", or null. */
export function roleOf(tags: readonly string[]): { role: string; label: string } | null {
  for (const tag of tags) {
    if ((ROLE_TAGS as readonly string[]).includes(tag)) {
      return { role: tag, label: tag };
    }
    if (tag in ROLE_ALIASES) {
      return { role: ROLE_ALIASES[tag], label: tag };
    }
  }
  const named = tags.find(t => t.startsWith('step:') || t.startsWith('block:'));
  return named ? { role: 'custom', label: named.slice(named.indexOf(':') + 1) } : null;
}

/**
 * A cell's tags after clicking the `role` button: the role replaces any other role tag; clicking the role the
 * cell already has removes it. Other tools' tags stay. A cell that stops being a step loses `step:`/`after:`.
 */
export function toggleRole(tags: readonly string[], role: Role): string[] {
  const isRole = (t: string) => (ROLE_TAGS as readonly string[]).includes(t) || t in ROLE_ALIASES;
  const had = tags.includes(role);
  const kept = tags.filter(t => !isRole(t));
  if (had) {
    return kept;
  }
  const stepLike = ['data', 'train', 'evaluate', 'serve'].includes(role);
  const cleaned = stepLike ? kept : kept.filter(t => !/^(step|block|after|prev):/.test(t));
  return [...cleaned, role];
}

export interface Run {
  id: string;
  status: string;
  path: string | null;
  notebook: string;
  params: Record<string, unknown>;
  metrics: Record<string, number>;
  started: string | null;
  duration: number | null;
  sweep_id: string | null;
  schedule: string | null;
  error: string | null;
  steps_done?: number;
  steps_total?: number;
}

/** The run table's columns: fixed ones, then every parameter and metric any run has (sorted by name). */
export function runColumns(runs: readonly Run[]): { params: string[]; metrics: string[] } {
  const params = new Set<string>();
  const metrics = new Set<string>();
  for (const run of runs) {
    Object.keys(run.params || {}).forEach(k => params.add(k));
    Object.keys(run.metrics || {}).forEach(k => metrics.add(k));
  }
  return { params: [...params].sort(), metrics: [...metrics].sort() };
}

/** The value a column key names: `params.C`, `metrics.accuracy`, or a run field (`status`, `duration`, ...). */
export function cellValue(run: Run, key: string): unknown {
  if (key.startsWith('params.')) {
    return run.params?.[key.slice(7)];
  }
  if (key.startsWith('metrics.')) {
    return run.metrics?.[key.slice(8)];
  }
  return (run as unknown as Record<string, unknown>)[key];
}

/** What the run table asks the server for: its filter words, sort column and direction, and one page. */
export interface RunQuery {
  filter: string;
  sort: string;
  descending: boolean;
  page: number;
  notebook: string | null; // only this notebook's runs (its path from the server's root)
}

export const FIRST_PAGE: RunQuery = { filter: '', sort: 'started', descending: true, page: 0, notebook: null };

/**
 * The query string of GET /runs for `query`: the server filters (`accuracy>0.9 status=failed C=10 digits`), sorts
 * and pages, so the panel holds one page however many runs the workspace has.
 */
/** The metrics a sweep can optimise: those the notebook's code logs, then any more its earlier runs logged. */
export function offeredMetrics(validation: Validation | null): string[] {
  const steps = validation?.pipeline?.steps ?? [];
  return [...new Set([...(validation?.pipeline?.metrics ?? []), ...steps.flatMap(s => s.metrics || []),
    ...(validation?.seen_metrics ?? [])])];
}

export function runListQuery(query: RunQuery, pageSize: number): string {
  const search = new URLSearchParams({
    filter: query.filter.trim(), sort: query.sort, order: query.descending ? 'desc' : 'asc',
    offset: String(Math.max(0, query.page) * pageSize), limit: String(pageSize)
  });
  if (query.notebook) {
    search.set('notebook', query.notebook);
  }
  return `?${search.toString()}`;
}

/** The query of GET /charts/runs for the table as it is: its notebook, and the metric it is sorted by if any. */
export function runsChartQuery(query: RunQuery): Record<string, string> {
  const chart: Record<string, string> = {};
  if (query.notebook) {
    chart.notebook = query.notebook;
  }
  if (query.sort.startsWith('metrics.')) {
    chart.metric = query.sort.slice('metrics.'.length);
  }
  if (query.filter.trim()) {
    chart.filter = query.filter.trim();
  }
  return chart;
}

/** How many pages `total` runs make, and the page to show (the last one, when runs went away). */
export function pageCount(total: number, page: number, size: number): { page: number; pages: number } {
  const pages = Math.max(1, Math.ceil(total / size));
  return { page: Math.min(Math.max(0, page), pages - 1), pages };
}

/**
 * Form text into `{name: value}`: one `name = value` (or `name: value`) per line or comma-free entry. Values stay
 * strings: the server types them against the notebook's parameters cell, and reads sweep ranges (`0.1..10:5:log`)
 * and lists (`1,10,100`) from them. Throws naming the line that is not `name = value`.
 */
export function parseAssignments(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  text.split('\n').forEach((line, i) => {
    const trimmed = line.trim();
    if (!trimmed || trimmed.startsWith('#')) {
      return;
    }
    const match = /^([A-Za-z_]\w*)\s*[=:]\s*(.+)$/.exec(trimmed);
    if (!match) {
      throw new Error(`line ${i + 1} ("${trimmed}") is not "name = value", e.g. "C = 0.1,1,10"`);
    }
    out[match[1]] = match[2].trim();
  });
  return out;
}

/** Quality gates, one per line or comma-separated: `accuracy >= 0.9`. Throws naming a malformed one. */
export function parseGates(text: string): string[] {
  return text
    .split(/[\n,]/)
    .map(g => g.replace(/\s+/g, ''))
    .filter(Boolean)
    .map(g => {
      if (!/^[A-Za-z_][\w.]*(>=|<=|>|<|==)-?[\d.]+(e-?\d+)?$/.test(g)) {
        throw new Error(`gate "${g}" is not METRIC OP NUMBER, e.g. "accuracy>=0.9"`);
      }
      return g;
    });
}

/** The cron helper's presets. */
export const CRON_PRESETS: { label: string; cron: string }[] = [
  { label: 'every hour', cron: '0 * * * *' },
  { label: 'every day at 03:00', cron: '0 3 * * *' },
  { label: 'weekdays at 07:00', cron: '0 7 * * 1-5' },
  { label: 'every Monday at 06:00', cron: '0 6 * * 1' },
  { label: 'first of the month', cron: '0 4 1 * *' }
];

/** 0.4 s, 12 s, 3 min 5 s, 1 h 2 min. */
/** A schedule's time as the server sends it (ISO 8601 in the schedule's own timezone) read as a wall clock there:
 * `2026-11-24T03:00:00+01:00` -> `2026-11-24 03:00`. Not converted to the browser's zone: a 03:00 Berlin job
 * should read 03:00 wherever the panel is opened. */
export function wallClock(iso: string | null | undefined): string {
  return iso ? iso.slice(0, 16).replace('T', ' ') : '-';
}

/** A size in bytes as people read it: 812 B, 12.0 KiB, 3.4 MiB. */
export function formatBytes(size: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = size;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
}

export function formatDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined) {
    return '';
  }
  if (seconds < 10) {
    return `${seconds.toFixed(1)} s`;
  }
  if (seconds < 60) {
    return `${Math.round(seconds)} s`;
  }
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) {
    return `${minutes} min ${Math.round(seconds % 60)} s`;
  }
  const hours = Math.floor(minutes / 60);
  if (hours < 48) {
    return `${hours} h ${minutes % 60} min`;
  }
  return `${Math.floor(hours / 24)} d ${hours % 24} h`; // a run left running for weeks read "26527 h 53 min"
}

/** Metric and parameter values, short. */
export function formatValue(value: unknown): string {
  if (value === undefined || value === null) {
    return '';
  }
  if (typeof value === 'number') {
    return Number.isInteger(value) ? String(value) : Number(value.toPrecision(4)).toString();
  }
  return String(value);
}

/** A run id (20261123-145100-940582) as the table shows it: its start, month-day hour:minute (UTC). */
export function shortRunId(id: string): string {
  const match = /^\d{4}(\d\d)(\d\d)-(\d\d)(\d\d)\d\d-/.exec(id);
  return match ? `${match[1]}-${match[2]} ${match[3]}:${match[4]}` : id;
}

/** What the panel's notice says once a job it started has ended (null while it runs): the run's outcome and
 * metrics or its error; the sweep's trials and its best trial. */
/** What the notice says when a job ends; a sweep that scored trials also names its chart (GET /charts/sweep). */
export interface Outcome {
  kind: 'info' | 'error';
  text: string;
  chart?: { kind: string; query: Record<string, string> };
}

export function jobOutcome(job: Job): Outcome | null {
  if (job.status === 'running') {
    return null;
  }
  const metricsText = (metrics: Record<string, number> = {}) =>
    Object.entries(metrics).map(([k, v]) => `${k}=${formatValue(v)}`).join(' ');
  if (job.status === 'failed' || !job.result) {
    return { kind: 'error', text: `${job.kind} failed: ${job.error ?? 'no result'}` };
  }
  if (job.kind === 'run') {
    const run = job.result as { id: string; status: string; error: string | null; metrics?: Record<string, number> };
    return run.status === 'succeeded'
      ? { kind: 'info', text: `run ${run.id} succeeded ${metricsText(run.metrics)}`.trim() }
      : { kind: 'error', text: `run ${run.id} ${run.status}: ${run.error ?? ''}`.trim() };
  }
  if (job.kind === 'sweep') {
    const sweep = job.result as {
      id: string; metric: string | null; trials: { status: string }[];
      best: { id: string; metrics: Record<string, number>; params: Record<string, unknown> } | null;
    };
    const ok = sweep.trials.filter(t => t.status === 'succeeded').length;
    const head = `sweep ${sweep.id} ended: ${ok} of ${sweep.trials.length} trials succeeded`;
    if (!sweep.best) {
      return { kind: ok ? 'info' : 'error', text: sweep.metric ? `${head}; none logged ${sweep.metric}` : head };
    }
    const params = Object.entries(sweep.best.params).map(([k, v]) => `${k}=${formatValue(v)}`).join(' ');
    return { kind: 'info', text: `${head}; best ${sweep.best.id}: ${metricsText(sweep.best.metrics)} (${params})`,
      chart: { kind: 'sweep', query: { id: sweep.id } } };
  }
  return { kind: 'info', text: `${job.kind}: done` };
}

/**
 * Example text for the run and sweep forms from the notebook's own first parameter (they showed the digits
 * example's `C = 10` for every notebook): its default as written for a run; for a sweep, values around it (whole
 * numbers for an int: `max_depth = 3, 6`; a decade either side for a float, even one written `5.0`: `C = 0.5, 5, 50`).
 */
export function parameterExample(parameters: Record<string, { default: unknown; type?: string; source?: string }>,
  sweep: boolean): string {
  const [name] = Object.keys(parameters);
  if (name === undefined) {
    return '';
  }
  const { default: value, type, source } = parameters[name];
  if (!sweep || typeof value !== 'number' || !Number.isFinite(value)) {
    return `${name} = ${source ?? (typeof value === 'string' ? JSON.stringify(value) : formatValue(value))}`;
  }
  if (type === 'int' || (type === undefined && Number.isInteger(value))) {
    return `${name} = ${value}, ${value === 0 ? 1 : value * 2}`;
  }
  const around = [value / 10, value, value * 10].map(v => Number(v.toPrecision(3)));
  return `${name} = ${around.join(', ')}`;
}
