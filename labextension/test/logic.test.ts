import { strict as assert } from 'node:assert';
import { test } from 'node:test';

import {
  FIRST_PAGE,
  formatDuration,
  formatValue,
  jobOutcome,
  offeredMetrics,
  pageCount,
  parseAssignments,
  parseGates,
  roleOf,
  Run,
  wallClock,
  runColumns,
  parameterExample,
  runListQuery,
  runsChartQuery,
  shortRunId,
  toggleRole
} from '../src/logic';

function run(id: string, status: string, params: Record<string, unknown>, metrics: Record<string, number>): Run {
  return {
    id, status, params, metrics, path: 'project/digits.ipynb', notebook: '/srv/project/digits.ipynb',
    started: null, duration: null, sweep_id: null, schedule: null, error: null
  };
}

const RUNS = [
  run('r1', 'succeeded', { C: 1, kernel: 'rbf' }, { accuracy: 0.91 }),
  run('r2', 'failed', { C: 10 }, {}),
  run('r3', 'succeeded', { C: 100, kernel: 'linear' }, { accuracy: 0.97, f1: 0.96 })
];

test('a role button replaces the other role tag and keeps foreign tags', () => {
  assert.deepEqual(toggleRole(['data', 'hide-input'], 'train'), ['hide-input', 'train']);
  assert.deepEqual(toggleRole(['imports'], 'data'), ['data']);
  assert.deepEqual(toggleRole([], 'evaluate'), ['evaluate']);
});

test('clicking the role a cell has removes it', () => {
  assert.deepEqual(toggleRole(['train', 'after:data'], 'train'), ['after:data']);
});

test('a cell that stops being a step loses its step name and dependencies', () => {
  assert.deepEqual(toggleRole(['step:prep', 'after:data', 'x'], 'skip'), ['x', 'skip']);
  assert.deepEqual(toggleRole(['step:prep', 'after:data'], 'train'), ['step:prep', 'after:data', 'train']);
});

test('badges name the role, Kale aliases included', () => {
  assert.deepEqual(roleOf(['hide-input', 'serve']), { role: 'serve', label: 'serve' });
  assert.deepEqual(roleOf(['pipeline-parameters']), { role: 'parameters', label: 'pipeline-parameters' });
  assert.deepEqual(roleOf(['block:load']), { role: 'custom', label: 'load' });
  assert.equal(roleOf(['hide-input']), null);
});

test('columns cover every parameter and metric', () => {
  assert.deepEqual(runColumns(RUNS), { params: ['C', 'kernel'], metrics: ['accuracy', 'f1'] });
});

test('the table asks the server for one page, filtered and sorted', () => {
  assert.equal(runListQuery(FIRST_PAGE, 100), '?filter=&sort=started&order=desc&offset=0&limit=100');
  const query = { filter: ' accuracy>0.9 C=10 ', sort: 'metrics.accuracy', descending: false, page: 3, notebook: null };
  const asked = new URLSearchParams(runListQuery(query, 50));
  assert.deepEqual(Object.fromEntries(asked), {
    filter: 'accuracy>0.9 C=10', sort: 'metrics.accuracy', order: 'asc', offset: '150', limit: '50'
  });
});

test("the table and its chart keep to this notebook's runs when asked", () => {
  const mine = { ...FIRST_PAGE, notebook: 'project/my model.ipynb', sort: 'metrics.val.loss', filter: ' C=1 ' };
  assert.equal(new URLSearchParams(runListQuery(mine, 100)).get('notebook'), 'project/my model.ipynb');
  assert.deepEqual(runsChartQuery(mine), { notebook: 'project/my model.ipynb', metric: 'val.loss', filter: 'C=1' });
  assert.deepEqual(runsChartQuery(FIRST_PAGE), {});
});

test('pages of a long table', () => {
  assert.deepEqual(pageCount(2501, 0, 100), { page: 0, pages: 26 });
  assert.deepEqual(pageCount(2501, 99, 100), { page: 25, pages: 26 });
  assert.deepEqual(pageCount(0, 3, 100), { page: 0, pages: 1 });
});

test('form text becomes parameters and gates, or an error naming the line', () => {
  assert.deepEqual(parseAssignments('C = 0.1..10:5:log\n# comment\n\ngamma: 0.001,0.01'),
    { C: '0.1..10:5:log', gamma: '0.001,0.01' });
  assert.throws(() => parseAssignments('C = 1\noops'), /line 2 \("oops"\)/);
  assert.deepEqual(parseGates('accuracy >= 0.9, f1>0.8'), ['accuracy>=0.9', 'f1>0.8']);
  assert.throws(() => parseGates('accuracy is good'), /accuracyisgood/);
});

test('durations and values read short', () => {
  assert.equal(formatDuration(0.42), '0.4 s');
  assert.equal(formatDuration(185), '3 min 5 s');
  assert.equal(formatDuration(5 * 3600 + 120), '5 h 2 min');
  assert.equal(formatDuration(26527 * 3600 + 53 * 60), '1105 d 7 h');
  assert.equal(formatDuration(3720), '1 h 2 min');
  assert.equal(formatValue(0.987654), '0.9877');
  assert.equal(formatValue(10), '10');
});

test("a schedule's times read as its own wall clock, not the browser's", () => {
  assert.equal(wallClock('2026-11-24T03:00:00+01:00'), '2026-11-24 03:00');
  assert.equal(wallClock('2026-11-24T08:30:00+05:30'), '2026-11-24 08:30');
  assert.equal(wallClock(null), '-');
});

test('run ids read as their start time, others stay as they are', () => {
  assert.equal(shortRunId('20261123-145100-940582'), '11-23 14:51');
  assert.equal(shortRunId('custom'), 'custom');
});

test('a sweep is offered the metrics the code logs, Kale metrics, then those earlier runs logged', () => {
  assert.deepEqual(offeredMetrics(null), []);
  assert.deepEqual(offeredMetrics({
    ok: true,
    pipeline: {
      steps: [{ name: 'evaluate', kind: 'metrics', cells: [3], depends_on: [], metrics: ['f1'] }],
      parameters: {},
      metrics: ['accuracy', 'f1']
    },
    seen_metrics: ['accuracy', 'loss']
  }), ['accuracy', 'f1', 'loss']);
});

test('the notice says how a run or a sweep it started ended', () => {
  const job = (kind: string, status: string, result: unknown, error: string | null = null) =>
    ({ id: 'j', kind, status, result, error, started: 0, finished: 1 });
  assert.equal(jobOutcome(job('run', 'running', null)), null);
  assert.deepEqual(jobOutcome(job('run', 'done', { id: 'r1', status: 'succeeded', error: null,
    metrics: { accuracy: 0.98765 } })), { kind: 'info', text: 'run r1 succeeded accuracy=0.9877' });
  assert.deepEqual(jobOutcome(job('run', 'done', { id: 'r2', status: 'failed', error: 'cell 4: ValueError' })),
    { kind: 'error', text: 'run r2 failed: cell 4: ValueError' });
  assert.deepEqual(jobOutcome(job('run', 'failed', null, 'the notebook has no parameters cell')),
    { kind: 'error', text: 'run failed: the notebook has no parameters cell' });
  const trials = [{ status: 'succeeded' }, { status: 'failed' }];
  assert.deepEqual(jobOutcome(job('sweep', 'done', { id: 's1', metric: 'accuracy', trials,
    best: { id: 't1', metrics: { accuracy: 0.99 }, params: { C: 5 } } })),
  { kind: 'info', text: 'sweep s1 ended: 1 of 2 trials succeeded; best t1: accuracy=0.99 (C=5)',
    chart: { kind: 'sweep', query: { id: 's1' } } });
  assert.deepEqual(jobOutcome(job('sweep', 'done', { id: 's2', metric: 'accuracy', trials: [{ status: 'failed' }],
    best: null })), { kind: 'error', text: 'sweep s2 ended: 0 of 1 trials succeeded; none logged accuracy' });
});

test("the forms' examples come from the notebook's own parameters", () => {
  const params = { max_depth: { default: 3, type: 'int', source: '3' }, lr: { default: 0.05 } };
  assert.equal(parameterExample(params, false), 'max_depth = 3');
  assert.equal(parameterExample(params, true), 'max_depth = 3, 6');
  const digits = { C: { default: 5, type: 'float', source: '5.0' } }; // 5.0 arrives in JSON as 5
  assert.equal(parameterExample(digits, false), 'C = 5.0');
  assert.equal(parameterExample(digits, true), 'C = 0.5, 5, 50');
  assert.equal(parameterExample({ lr: { default: 0.05 } }, true), 'lr = 0.005, 0.05, 0.5');
  assert.equal(parameterExample({ kernel: { default: 'rbf' } }, true), 'kernel = "rbf"');
  assert.equal(parameterExample({}, true), '');
});
