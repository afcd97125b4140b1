/**
 * The jupyter-mlops JupyterLab extension: the "MLOps" left-sidebar panel, coloured role badges on tagged cells,
 * and a main-area view of a run's executed step notebooks.
 */
import { ILabShell, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { IFrame, MainAreaWidget } from '@jupyterlab/apputils';
import { Cell } from '@jupyterlab/cells';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { LabIcon } from '@jupyterlab/ui-components';

import { apiUrl } from './api';
import { roleOf } from './logic';
import { MlopsPanel } from './panel';

const ICON = new LabIcon({
  name: 'jupyter-mlops:icon',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24"><g class="jp-icon3" fill="#616161">' +
    '<circle cx="5" cy="6" r="2.5"/><circle cx="5" cy="18" r="2.5"/><circle cx="19" cy="12" r="2.5"/>' +
    '<path d="M7 6.5h4.5l4.6 4.5h-1.4L10.9 8H7zM7 17.5h3.9l3.8-3h1.4l-4.6 4.5H7z"/></g></svg>'
});

/** Keep `data-mlops-role` / `data-mlops-label` on each cell's node in step with its tags (CSS draws the badge). */
function badgeCells(panel: NotebookPanel): void {
  const paint = (cell: Cell) => {
    const found = cell.model.type === 'code' ? roleOf((cell.model.getMetadata('tags') as string[]) ?? []) : null;
    if (found) {
      cell.node.dataset.mlopsRole = found.role;
      cell.node.dataset.mlopsLabel = found.label;
    } else {
      delete cell.node.dataset.mlopsRole;
      delete cell.node.dataset.mlopsLabel;
    }
  };
  const watched = new WeakSet<object>();
  const paintAll = () => {
    for (const cell of panel.content.widgets) {
      if (!watched.has(cell.model)) {
        watched.add(cell.model);
        cell.model.metadataChanged.connect(() => paint(cell));
      }
      paint(cell);
    }
  };
  void panel.context.ready.then(() => {
    paintAll();
    panel.content.model?.cells.changed.connect(() => requestAnimationFrame(paintAll));
  });
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'jupyter-mlops:plugin',
  description: 'Tag, run, sweep, register, deploy and schedule notebooks from a sidebar panel.',
  autoStart: true,
  requires: [INotebookTracker, ILabShell],
  optional: [IRenderMimeRegistry],
  activate: (app: JupyterFrontEnd, tracker: INotebookTracker, shell: ILabShell,
    rendermime: IRenderMimeRegistry | null) => {
    const openStepNotebook = (runId: string, step: string) => {
      const frame = new IFrame({ sandbox: ['allow-same-origin'] }); // the server's CSP blocks scripts as well
      frame.url = apiUrl('runs', runId, 'steps', step, 'notebook');
      const widget = new MainAreaWidget({ content: frame });
      widget.id = `mlops-step-${runId}-${step}`;
      widget.title.label = `${step} · ${runId}`;
      widget.title.icon = ICON;
      widget.title.closable = true;
      shell.add(widget, 'main');
    };
    app.commands.addCommand('mlops:open-step-notebook', {
      label: 'Open a run step’s executed notebook',
      execute: args => openStepNotebook(String(args.run), String(args.step))
    });

    const panel = new MlopsPanel({ tracker, openStepNotebook, rendermime });
    panel.title.icon = ICON;
    shell.add(panel, 'left', { rank: 600 });
    app.commands.addCommand('mlops:show-panel', {
      label: 'Show the MLOps panel',
      execute: () => shell.activateById(panel.id)
    });

    tracker.widgetAdded.connect((_, notebook) => badgeCells(notebook));
    tracker.forEach(badgeCells);
  }
};

export default plugin;
