/**
 * The panel's React hooks: re-rendering on Lumino signals, validating the notebook as it is edited, polling the
 * tables (fast while something runs), and the engines the server offers.
 */
import { NotebookPanel } from '@jupyterlab/notebook';
import { useCallback, useEffect, useRef, useState } from 'react';

import { ApiError, request } from './api';
import { RunQuery, runListQuery } from './logic';
import { Deployment, Engine, Job, Model, RunList, ScheduleList, Validation } from './types';

export type Tab = 'runs' | 'models' | 'deployments' | 'schedules';

/** A Lumino signal, as far as re-rendering on it needs. */
interface Signal {
  connect(slot: () => void): unknown;
  disconnect(slot: () => void): unknown;
}

/** Re-render when a Lumino signal fires (the active notebook or cell changed). */
export function useSignal(signal: Signal | null): void {
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

/** The pipeline of the notebook as it is in the editor (saved or not), checked again 600 ms after each edit. */
export function useValidation(panel: NotebookPanel | null): [Validation | null, (v: Validation | null) => void] {
  const [validation, setValidation] = useState<Validation | null>(null);
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
  return [validation, setValidation];
}

export interface Tables {
  list: RunList | null;
  listError: string | null; // the server's word on the filter (a 400), shown under it
  jobs: Job[];
  models: Model[];
  deployments: Deployment[];
  schedules: ScheduleList | null;
  busy: boolean;
  refresh: () => Promise<void>;
  loadModels: () => Promise<void>;
}

export const PAGE_SIZE = 100;

/**
 * The page of runs `query` asks for (and the open tab's table), polled every 1.5 s while something runs, every
 * 8 s otherwise. A new filter is asked for once typing pauses.
 */
export function useTables(tab: Tab, query: RunQuery, report: (error: unknown) => void): Tables {
  const [list, setList] = useState<RunList | null>(null);
  const [listError, setListError] = useState<string | null>(null);
  const [jobs, setJobs] = useState<Job[]>([]);
  const [models, setModels] = useState<Model[]>([]);
  const [deployments, setDeployments] = useState<Deployment[]>([]);
  const [schedules, setSchedules] = useState<ScheduleList | null>(null);
  const [asked, setAsked] = useState(query);
  const typed = useRef(query.filter);
  useEffect(() => {
    const pause = query.filter === typed.current ? 0 : 300; // while the filter is being typed
    typed.current = query.filter;
    const timer = window.setTimeout(() => setAsked(query), pause);
    return () => window.clearTimeout(timer);
  }, [query]);
  const loadModels = useCallback(async () => {
    setModels((await request<{ models: Model[] }>('GET', ['models'])).models);
  }, []);
  const refresh = useCallback(async () => {
    try {
      try {
        const data = await request<RunList>('GET', ['runs'], undefined, runListQuery(asked, PAGE_SIZE));
        setList(data);
        setJobs(data.jobs);
        setListError(null);
      } catch (error) {
        if (!(error instanceof ApiError && error.status === 400)) {
          throw error;
        }
        setListError(error.message); // a filter naming nothing: said under the filter, the last page kept
      }
      if (tab === 'models') {
        await loadModels();
      } else if (tab === 'deployments') {
        setDeployments((await request<{ deployments: Deployment[] }>('GET', ['deployments'])).deployments);
      } else if (tab === 'schedules') {
        setSchedules(await request<ScheduleList>('GET', ['schedules']));
      }
    } catch (error) {
      report(error);
    }
  }, [tab, asked, report, loadModels]);
  const busy = jobs.length > 0 || (list?.running ?? 0) > 0;
  useEffect(() => {
    void refresh();
    const timer = window.setInterval(() => void refresh(), busy ? 1500 : 8000);
    return () => window.clearInterval(timer);
  }, [refresh, busy]);
  return { list, listError, jobs, models, deployments, schedules, busy, refresh, loadModels };
}

/** The engines registered on the server; the forms offer those that can do their verb. */
export function useEngines(): Engine[] {
  const [engines, setEngines] = useState<Engine[]>([]);
  useEffect(() => {
    request<{ engines: Engine[] }>('GET', ['engines']).then(d => setEngines(d.engines), () => setEngines([]));
  }, []);
  return engines;
}
