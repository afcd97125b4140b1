import { strict as assert } from 'node:assert';
import { test } from 'node:test';

import {
  filterRuns,
  formatDuration,
  formatValue,
  pageOf,
  parseAssignments,
  parseGates,
  roleOf,
  Run,
  wallClock,
  runColumns,
  shortRunId,
  sortRuns,
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

test('sorting: numbers as numbers, missing values last in both directions', () => {
  assert.deepEqual(sortRuns(RUNS, 'metrics.accuracy', true).map(r => r.id), ['r3', 'r1', 'r2']);
  assert.deepEqual(sortRuns(RUNS, 'metrics.accuracy', false).map(r => r.id), ['r1', 'r3', 'r2']);
  assert.deepEqual(sortRuns(RUNS, 'params.C', true).map(r => r.id), ['r3', 'r2', 'r1']);
});

test('filter by words and comparisons', () => {
  assert.deepEqual(filterRuns(RUNS, 'accuracy>0.95').runs.map(r => r.id), ['r3']);
  assert.deepEqual(filterRuns(RUNS, 'status=failed').runs.map(r => r.id), ['r2']);
  assert.deepEqual(filterRuns(RUNS, 'C>=10 succeeded').runs.map(r => r.id), ['r3']);
  assert.deepEqual(filterRuns(RUNS, 'kernel=rbf').runs.map(r => r.id), ['r1']);
  assert.deepEqual(filterRuns(RUNS, 'DIGITS').runs.length, 3);
  assert.match(filterRuns(RUNS, 'acuracy>0.9').error ?? '', /acuracy/);
});

test('pages of a long table', () => {
  const rows = Array.from({ length: 2501 }, (_, i) => i);
  assert.deepEqual(pageOf(rows, 0, 100).rows.length, 100);
  assert.equal(pageOf(rows, 0, 100).pages, 26);
  assert.deepEqual(pageOf(rows, 99, 100).rows, [2500]);
  assert.deepEqual(pageOf([], 3, 100), { rows: [], page: 0, pages: 1 });
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
