// Run-time settings. The page needs nothing from the internet: without a
// tile URL the map shows district outlines and sensors on a plain
// background. A tile server can be set with `?tiles=<url template>` or a
// `config.json` beside the page: `{"tiles": {"url": "...", "attribution": "..."}}`.

export interface TileConfig {
  url: string;
  attribution: string;
  maxZoom: number;
}

export interface PageConfig {
  tiles: TileConfig | null;
}

interface ConfigFile {
  tiles?: { url?: string; attribution?: string; max_zoom?: number };
}

export async function loadConfig(): Promise<PageConfig> {
  const fromQuery = new URLSearchParams(location.search).get("tiles");
  if (fromQuery) return { tiles: { url: fromQuery, attribution: "", maxZoom: 19 } };
  try {
    const response = await fetch("config.json", { cache: "no-cache" });
    if (!response.ok) return { tiles: null };
    const file = (await response.json()) as ConfigFile;
    const url = file.tiles?.url;
    if (!url) return { tiles: null };
    return { tiles: { url, attribution: file.tiles?.attribution ?? "", maxZoom: file.tiles?.max_zoom ?? 19 } };
  } catch {
    // No file, or not JSON: the default (no tiles) is a working map.
    return { tiles: null };
  }
}
