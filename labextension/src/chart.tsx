/**
 * Charts in the panel: the Vega-Lite spec the server builds (GET /mlops/api/charts/KIND, the same spec `%mlops`
 * shows), drawn by JupyterLab's own Vega-Lite renderer from the rendermime registry, so a chart looks as it does in a
 * notebook and follows the light or dark theme, with no charting library of ours.
 */
import { IRenderMime } from '@jupyterlab/rendermime-interfaces';
import { IRenderMimeRegistry, MimeModel } from '@jupyterlab/rendermime';
import React, { createContext, useContext, useEffect, useRef, useState } from 'react';

import { request } from './api';

export const VEGA_LITE = 'application/vnd.vegalite.v5+json';

/** The registry the plugin was given; null where no renderer is available (the chart then says so). */
export const RenderMime = createContext<IRenderMimeRegistry | null>(null);

/** Whether JupyterLab shows a light theme; follows a change of theme (the renderer picks its theme per drawing). */
function useLightTheme(): string | undefined {
  const [light, setLight] = useState(document.body.dataset.jpThemeLight);
  useEffect(() => {
    const watcher = new MutationObserver(() => setLight(document.body.dataset.jpThemeLight));
    watcher.observe(document.body, { attributes: true, attributeFilter: ['data-jp-theme-light'] });
    return () => watcher.disconnect();
  }, []);
  return light;
}

/** The plotting width a chart gets in `host`: its width less the axes' labels, in steps of 20 px. */
function plotWidth(host: HTMLElement | null): number {
  return Math.max(120, Math.floor(((host?.clientWidth ?? 300) - 90) / 20) * 20);
}

/**
 * GET /charts/`kind`?`query`, drawn as wide as the panel is (the server sizes the spec); drawn again when
 * `version` changes (new runs, new requests), the panel is resized or the theme changes.
 */
export function ChartView(props: { kind: string; query: Record<string, string>; version?: unknown }) {
  const rendermime = useContext(RenderMime);
  const outer = useRef<HTMLDivElement>(null);
  const host = useRef<HTMLDivElement>(null);
  const [error, setError] = useState<string | null>(null);
  const [width, setWidth] = useState<number | null>(null);
  const light = useLightTheme();
  useEffect(() => {
    const box = outer.current;
    if (!box) {
      return;
    }
    setWidth(plotWidth(box));
    const watcher = new ResizeObserver(() => setWidth(plotWidth(box)));
    watcher.observe(box);
    return () => watcher.disconnect();
  }, []);
  const search = new URLSearchParams({ ...props.query, ...(width ? { width: String(width) } : {}) }).toString();
  useEffect(() => {
    if (width === null) {
      return;
    }
    let alive = true;
    let renderer: IRenderMime.IRenderer | null = null;
    const draw = async () => {
      try {
        const spec = await request<Record<string, unknown>>('GET', ['charts', props.kind], undefined,
          search ? `?${search}` : '');
        if (!alive || !host.current) {
          return;
        }
        if (!rendermime?.mimeTypes.includes(VEGA_LITE)) {
          throw new Error('this JupyterLab has no Vega-Lite renderer (@jupyterlab/vega5-extension) to draw charts');
        }
        renderer = rendermime.createRenderer(VEGA_LITE);
        host.current.replaceChildren(renderer.node);
        await renderer.renderModel(new MimeModel({ data: { [VEGA_LITE]: spec } as never, trusted: true }));
        setError(null);
      } catch (e) {
        if (alive) {
          setError(e instanceof Error ? e.message : String(e));
        }
      }
    };
    void draw();
    return () => {
      alive = false;
      renderer?.dispose();
    };
  }, [props.kind, search, rendermime, props.version, width, light]);
  return (
    <div className="mlops-chart" data-testid={`mlops-chart-${props.kind}`} ref={outer}>
      {error && <p className="mlops-form-error">{error}</p>}
      <div ref={host} />
    </div>
  );
}
