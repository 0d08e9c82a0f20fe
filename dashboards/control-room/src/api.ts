// Typed access to the query service's JSON API.

import type {
  Alert,
  AlertDetail,
  DistrictFeature,
  DistrictSummary,
  FeatureCollection,
  Overview,
  PointFeature,
  Sensor,
  SensorProps,
  Series,
} from "./types";

export const API = "/api/v1";

/** An error response of the API (`{"code","message","parameter"?}`) or a transport failure. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly code?: string,
  ) {
    super(message);
  }
}

async function getJson<T>(path: string, signal?: AbortSignal, cache: RequestCache = "default"): Promise<T> {
  const response = await fetch(API + path, { headers: { Accept: "application/json" }, signal, cache });
  return readJson<T>(response);
}

/** An operator's action: JSON body, bearer token. */
async function postJson<T>(path: string, token: string, body: unknown): Promise<T> {
  const response = await fetch(API + path, {
    method: "POST",
    headers: { Accept: "application/json", "Content-Type": "application/json", Authorization: `Bearer ${token}` },
    body: JSON.stringify(body),
  });
  return readJson<T>(response);
}

async function readJson<T>(response: Response): Promise<T> {
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    let code: string | undefined;
    try {
      const body = (await response.json()) as { code?: string; message?: string };
      message = body.message ?? message;
      code = body.code;
    } catch {
      // Not JSON (a proxy's error page): the status line says enough.
    }
    throw new ApiError(response.status, message, code);
  }
  return (await response.json()) as T;
}

const enc = encodeURIComponent;

export const api = {
  // Revalidated (ETag) on every load: the stream only brings what happens
  // after it, so the layer must not be an older copy from the HTTP cache.
  sensorsGeojson: () => getJson<FeatureCollection<PointFeature<SensorProps>>>("/map/sensors.geojson", undefined, "no-cache"),
  districtsGeojson: () => getJson<FeatureCollection<DistrictFeature>>("/map/districts.geojson"),
  sensor: (id: string) => getJson<Sensor>(`/sensors/${enc(id)}`),
  overview: () => getJson<Overview>("/overview"),
  district: (name: string) => getJson<DistrictSummary>(`/districts/${enc(name)}`),
  series: (id: string, query: SeriesQuery, signal?: AbortSignal) =>
    getJson<Series>(`/sensors/${enc(id)}/series?${seriesParams(query)}`, signal),
  seriesCsvUrl: (id: string, query: SeriesQuery) => `${API}/sensors/${enc(id)}/series.csv?${seriesParams(query)}`,
  // Alerts change under the page's feet: never an HTTP-cached copy.
  activeAlerts: () => getJson<{ items: Alert[] }>("/alerts?state=active&limit=500", undefined, "no-store"),
  alert: (id: number) => getJson<AlertDetail>(`/alerts/${id}`, undefined, "no-store"),
  acknowledge: (id: number, token: string, note?: string) =>
    postJson<Alert>(`/alerts/${id}/acknowledge`, token, note ? { note } : {}),
  resolve: (id: number, token: string, reason: string) => postJson<Alert>(`/alerts/${id}/resolve`, token, { reason }),
};

export interface SeriesQuery {
  from: Date;
  to: Date;
  points: number;
  agg: string;
  columns: string[];
}

function seriesParams(q: SeriesQuery): string {
  const params = new URLSearchParams({
    from: q.from.toISOString(),
    to: q.to.toISOString(),
    points: String(Math.max(10, Math.round(q.points))),
    agg: q.agg,
  });
  if (q.columns.length > 0) params.set("columns", q.columns.join(","));
  return params.toString();
}

/** Calls `load` until it succeeds, waiting longer after each failure (the service may be starting). */
export async function untilLoaded<T>(load: () => Promise<T>, onError: (error: Error) => void): Promise<T> {
  for (let delay = 1000; ; delay = Math.min(delay * 2, 15_000)) {
    try {
      return await load();
    } catch (error) {
      onError(error as Error);
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }
}
