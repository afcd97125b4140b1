/**
 * What the server extension's endpoints answer (jupyter_mlops/server/handlers.py) and what the forms send, typed
 * once so a change on either side shows up at compile time.
 */
import { Problem } from './api';
import { Run } from './logic';

export type { Problem, Run };

export interface Step {
  name: string;
  kind: string;
  cells: number[];
  depends_on: string[];
  metrics: string[];
}

export interface Parameter {
  default: unknown;
  help: string;
  type?: string; // inferred from the parameters cell: int, float, str, bool, ...
  source?: string; // the default as written in the cell
}

/** POST /validate */
export interface Validation {
  ok: boolean;
  /** `metrics`: the names the notebook's code logs (log_metrics keywords, Kale's pipeline-metrics) */
  pipeline?: { steps: Step[]; parameters: Record<string, Parameter>; metrics?: string[] };
  problems?: Problem[];
  warnings?: string[];
  /** metric names its earlier runs logged */
  seen_metrics?: string[];
}

/** A background job of the server (a run, a sweep, a schedule fired now). */
export interface Job {
  id: string;
  kind: string;
  status: string;
  result: unknown;
  error: string | null;
  started: number;
  finished: number | null;
  run_id?: string;
  trials?: number;
}

/** GET /runs: one page of the runs the filter keeps */
export interface RunList {
  runs: Run[];
  jobs: Job[];
  total: number; // runs the filter keeps
  running: number; // runs running in the workspace
  filter: string; // the filter this page answers (the one in the box may be newer)
  offset: number;
  limit: number;
}

/** One step of GET /runs/ID */
export interface RunStep {
  name: string;
  kind: string;
  status: string;
  duration: number | null;
  error: string | null;
  has_notebook: boolean;
}

/** One thing a run read (GET /runs/ID `data`): a file, a folder or a URL, fingerprinted */
export interface DataRead {
  path: string; // relative to the server's root when inside it
  kind: 'file' | 'folder' | 'url' | 'omitted';
  size: number | null;
  digest: string | null;
  method: string; // sha256 | sampled | listing | fsspec-checksum | missing | unreadable | omitted
  step: string | null; // null: named with --watch
}

/** A data check's finding: it names the step, the variable and the column */
export interface DataFinding {
  step: string;
  variable: string;
  column: string | null;
  check: string;
  message: string;
}

/** GET /runs/ID */
export interface RunDetails extends Run {
  steps: RunStep[];
  data: DataRead[];
  data_checks: { baseline: string | null; findings: DataFinding[] };
}

export interface ModelVersion {
  version: number;
  run_id: string;
  metrics: Record<string, number>;
  params: Record<string, unknown>;
  created: string | null;
}

/** GET /models: each model with its versions and aliases */
export interface Model {
  name: string;
  versions: ModelVersion[];
  aliases: Record<string, number>;
}

/** GET /deployments */
export interface Deployment {
  name: string;
  url: string | null;
  up: boolean;
  spec: { canary: number | null; weight: number; shadow: number | null; sticky_header: string | null } | null;
  version?: number;
  requests?: number;
  outliers?: number;
  drifted_features?: string[];
  monitor_error?: string;
  /** outcomes joined to its answers, per variant and version (POST /feedback) */
  outcomes?: { variant: string; version: number; n: number; accuracy: number | null; mean_reward: number | null }[];
  /** its latest progressive rollout (deploy --progressive), with every decision */
  rollout?: Rollout | null;
}

export interface RolloutDecision {
  step: number;
  action: 'started' | 'advanced' | 'promoted' | 'rolled_back' | 'stopped';
  weight: number;
  reason: string;
  at: number;
}

export interface Rollout {
  id: number;
  canary: number;
  primary_version: number;
  steps: number[];
  step: number;
  status: 'running' | 'promoted' | 'rolled_back' | 'stopped';
  weight: number;
  note: string | null;
  warning?: string;
  decisions: RolloutDecision[];
}

/** GET /deployments/NAME: the A-B test on the joined outcomes */
export interface AbTest {
  name: string;
  metric: 'accuracy' | 'reward';
  note: string | null;
  variants: {
    variant: string; version: number; n: number; value: number; low: number; high: number;
    difference?: number; p_value?: number; verdict?: string; more_needed?: number | null;
  }[];
}

/** POST /deployments */
export interface DeployAnswer {
  name: string;
  status: string;
  url: string | null;
}

/** GET /schedules */
export interface Schedule {
  name: string;
  notebook: string;
  path?: string | null;
  cron: string | null;
  /** what fires it, in words: the cron, "on data change (checked every 60 s)", "on drift of wine (...)" */
  when: string;
  timezone: string;
  status: 'active' | 'paused';
  next_tick: string | null;
  /** on the answer to adding one: said when no scheduler is running to fire it */
  warning?: string | null;
}

/** GET /schedules: the schedules, and whether any scheduler is alive to fire them. */
export interface ScheduleList {
  schedules: Schedule[];
  schedulers: { owner: string; last_pass: number; interval: number }[];
  warning: string | null;
}

/** A setting of an engine, as GET /engines describes it (jupyter_mlops/engines/abc.py). */
export interface EngineSetting {
  name: string;
  flag: string;
  help: string;
  verbs: string[];
  type: 'text' | 'integer' | 'number' | 'flag';
  default: string | number | boolean | null;
}

/** GET /engines */
export interface Engine {
  name: string;
  summary: string;
  verbs: string[];
  options: EngineSetting[];
}

/** What a form sends for its engine: `backend` and that engine's `settings`. */
export interface EngineChoice {
  backend: string;
  settings: Record<string, string | boolean>;
}

// -- request bodies -------------------------------------------------------------------------------------------------
export interface SweepBody extends EngineChoice {
  space: Record<string, string>;
  parallel: number;
  metric: string | null;
  direction: string;
  samples: number | null;
}

export interface RegisterBody {
  run: string;
  name: string;
  metric: string | null;
  require: string[];
  path?: string; // "best" among this notebook's runs
}

export interface DeployBody {
  name: string;
  port: number;
  canary: string | null;
  weight: number;
  shadow: string | null;
  keep: boolean; // serving on after the Jupyter server stops (else it stops with it)
  /** the canary's weight raised step by step while healthy (deploy --progressive) */
  progressive: { steps: string; interval: string; min_requests: number } | null;
}

export interface ScheduleBody {
  name: string;
  /** what fires it: a cron (`cron`), a change of the data it reads, or drift of a deployed model (`model`) */
  trigger: 'cron' | 'data-change' | 'drift';
  cron?: string;
  every?: string; // how often a trigger is checked, e.g. "5m"
  model?: string;
  threshold?: number;
  register?: string; // a succeeded run's model becomes a new version of it, behind `require`
  require?: string[];
  timezone: string;
  parameters: Record<string, string>;
}

/** How a table asks the panel to do something and report it (the notice line). */
export type Act = (what: string, call: () => Promise<unknown>) => void;

/** POST /models: the version registered; `warning` when the run was registered already */
export interface RegisterAnswer {
  name: string;
  version: number;
  warning?: string | null;
}
