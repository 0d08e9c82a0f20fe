// Typed access to the query service's JSON API.

import type {
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
