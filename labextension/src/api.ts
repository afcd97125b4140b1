/**
 * Calls to the server extension (`/mlops/api/...`) through JupyterLab's ServerConnection, which adds the
 * token and the XSRF header the server checks. A non-2xx answer throws an ApiError carrying the server's
 * message (and, for a notebook that cannot become a pipeline, its problems with their cells).
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

export interface Problem {
  cell: number | null;
  message: string;
  fix: string;
  snippet: string;
}

export class ApiError extends Error {
  constructor(message: string, readonly status: number, readonly problems: Problem[] = []) {
    super(message);
  }
}

export function apiUrl(...parts: string[]): string {
  const settings = ServerConnection.makeSettings();
  return URLExt.join(settings.baseUrl, 'mlops', 'api', ...parts.map(encodeURIComponent));
}

export async function request<T = unknown>(method: string, path: string[], body?: unknown, query = ''): Promise<T> {
  const settings = ServerConnection.makeSettings();
  const init: RequestInit = { method };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers = { 'Content-Type': 'application/json' };
  }
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(apiUrl(...path) + query, init, settings);
  } catch (error) {
    throw new ApiError(`the Jupyter server did not answer: ${error}`, 0);
  }
  const text = await response.text();
  let data: { message?: string; problems?: Problem[] } = {};
  try {
    data = text ? JSON.parse(text) : {};
  } catch {
    data = { message: text.slice(0, 300) };
  }
  if (!response.ok) {
    if (response.status === 404 && !data.message) {
      data.message = 'the jupyter-mlops server extension is not enabled: `jupyter server extension enable jupyter_mlops`';
    }
    throw new ApiError(data.message || response.statusText, response.status, data.problems || []);
  }
  return data as T;
}
