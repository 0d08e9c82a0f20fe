// The live stream (`/api/v1/stream`, Server-Sent Events). EventSource
// resumes by itself with Last-Event-ID after a dropped connection; when it
// gives up (the service stopped, an HTTP error) we open a new one after a
// pause, and since that one cannot resume, the page reloads its data as on
// `reset`.

import { API } from "./api";
import type { AlertEvent, StreamReading } from "./types";

export interface StreamHandlers {
  readings: (readings: StreamReading[]) => void;
  alert: (alert: AlertEvent) => void;
  /** Missed events cannot be replayed: reload everything. */
  reset: () => void;
  status: (connected: boolean) => void;
}

export interface StreamStats {
  connected: boolean;
  events: number;
  resets: number;
  reconnects: number;
}

const RETRY_MS = [1000, 2000, 5000, 10000];

export function openStream(handlers: StreamHandlers, query = ""): StreamStats {
  const stats: StreamStats = { connected: false, events: 0, resets: 0, reconnects: 0 };
  let attempt = 0;

  const connect = (fresh: boolean) => {
    const source = new EventSource(`${API}/stream${query}`);
    source.onopen = () => {
      stats.connected = true;
      handlers.status(true);
      if (fresh && attempt > 0) {
        // A new connection after giving up: what happened meanwhile is lost.
        stats.resets++;
        handlers.reset();
      }
      attempt = 0;
    };
    source.onerror = () => {
      stats.connected = false;
      handlers.status(false);
      if (source.readyState === EventSource.CLOSED) retry(source);
    };
    source.addEventListener("readings", (event) => {
      stats.events++;
      const data = parse((event as MessageEvent<string>).data);
      if (Array.isArray(data)) handlers.readings(data as StreamReading[]);
    });
    source.addEventListener("alert", (event) => {
      stats.events++;
      const data = parse((event as MessageEvent<string>).data);
      if (data && typeof data === "object" && !Array.isArray(data)) handlers.alert(data as AlertEvent);
    });
    source.addEventListener("reset", () => {
      stats.resets++;
      handlers.reset();
    });
    source.addEventListener("shutdown", () => {
      // The service is stopping; its successor knows nothing of our position.
      stats.connected = false;
      handlers.status(false);
      retry(source);
    });
  };

  const retry = (source: EventSource) => {
    source.close();
    const delay = RETRY_MS[Math.min(attempt, RETRY_MS.length - 1)];
    attempt++;
    stats.reconnects++;
    setTimeout(() => connect(true), delay);
  };

  connect(false);
  return stats;
}

function parse(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}
