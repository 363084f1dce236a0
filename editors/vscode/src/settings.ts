/**
 * How the extension's settings become the server's command line and configuration, and the
 * client's own timing.
 *
 * Pure functions only (no `vscode` import), so they are tested directly.
 */

import type { DebounceSettings } from "./timing";

export const SECTION = "replitLsp";

/** Settings forwarded to the server as initializationOptions and didChangeConfiguration. */
export const SERVER_SETTING_KEYS = [
  "maxNewTokens",
  "invokedMaxNewTokens",
  "maxLines",
  "topK",
  "temperature",
  "enabledLanguages",
  "requestWaitSeconds",
  "prependFilePath",
  "backendUrl",
  "backendModel",
  "backendFields",
  "prewarm",
] as const;

/** Settings only the extension reads (besides `prewarm` and `enabledLanguages`, which the
 * server reads too): read afresh each time they are used. */
export const CLIENT_SETTING_KEYS = [
  "idleMs",
  "adaptiveDebounce",
  "debounceMinMs",
  "debounceMaxMs",
  "slowThresholdMs",
] as const;

/** Settings that decide how the server process starts: changing one restarts it. */
export const LAUNCH_SETTING_KEYS = ["serverPath", "pythonPath", "serverArgs", "serverEnv"] as const;

export type ServerSettingKey = (typeof SERVER_SETTING_KEYS)[number];
export type LaunchSettingKey = (typeof LAUNCH_SETTING_KEYS)[number];

/** Reads one key of the `replitLsp` section (VS Code's `WorkspaceConfiguration.get`). */
export type SettingReader = (key: string) => unknown;

/** The object the server reads: its keys are nested under the section name. */
export interface ServerConfiguration {
  [SECTION]: Partial<Record<ServerSettingKey, unknown>>;
}

/** Forwards every server setting that has a value; the server validates and reports bad ones. */
export function serverConfiguration(read: SettingReader): ServerConfiguration {
  const values: Partial<Record<ServerSettingKey, unknown>> = {};
  for (const key of SERVER_SETTING_KEYS) {
    const value = read(key);
    if (value !== undefined && value !== null) {
      values[key] = value;
    }
  }
  return { [SECTION]: values };
}

/** What the extension itself does with the settings. */
export interface ClientSettings {
  /** Tell the server where the cursor rests (`replitLsp/cursorIdle`). */
  prewarm: boolean;
  /** How long the cursor rests after a move before the server is told. */
  idleMs: number;
  debounce: DebounceSettings;
  /** The median answer time above which the status bar shows "slow". */
  slowThresholdMs: number;
  /** Language ids the server completes; empty: all. */
  enabledLanguages: string[];
}

/** package.json's defaults, for values of the wrong type. */
export const CLIENT_DEFAULTS: ClientSettings = {
  prewarm: true,
  idleMs: 300,
  debounce: { adaptive: true, minMs: 75, maxMs: 1000 },
  slowThresholdMs: 1500,
  enabledLanguages: [],
};

/** The client's settings, with wrong-typed values replaced by the defaults. */
export function clientSettings(read: SettingReader): ClientSettings {
  const minMs = duration(read("debounceMinMs"), CLIENT_DEFAULTS.debounce.minMs);
  const adaptive = read("adaptiveDebounce");
  const prewarm = read("prewarm");
  const languages = read("enabledLanguages");
  return {
    prewarm: typeof prewarm === "boolean" ? prewarm : CLIENT_DEFAULTS.prewarm,
    idleMs: duration(read("idleMs"), CLIENT_DEFAULTS.idleMs),
    debounce: {
      adaptive: typeof adaptive === "boolean" ? adaptive : CLIENT_DEFAULTS.debounce.adaptive,
      minMs,
      maxMs: Math.max(minMs, duration(read("debounceMaxMs"), CLIENT_DEFAULTS.debounce.maxMs)),
    },
    slowThresholdMs: duration(read("slowThresholdMs"), CLIENT_DEFAULTS.slowThresholdMs),
    enabledLanguages: Array.isArray(languages) ? languages.filter(isString) : [],
  };
}

/** Whether the server completes documents of `languageId`. */
export function languageEnabled(settings: ClientSettings, languageId: string): boolean {
  return settings.enabledLanguages.length === 0 || settings.enabledLanguages.includes(languageId);
}

export const DEFAULT_SERVER_PATH = "replit-lsp";

export interface LaunchSettings {
  serverPath: string;
  pythonPath: string;
  serverArgs: string[];
  serverEnv: Record<string, string>;
}

/** The launch settings, with wrong-typed values replaced by the defaults. */
export function launchSettings(read: SettingReader): LaunchSettings {
  const serverPath = read("serverPath");
  const pythonPath = read("pythonPath");
  const serverArgs = read("serverArgs");
  const serverEnv = read("serverEnv");
  return {
    serverPath:
      typeof serverPath === "string" && serverPath.trim() ? serverPath.trim() : DEFAULT_SERVER_PATH,
    pythonPath: typeof pythonPath === "string" ? pythonPath.trim() : "",
    serverArgs: Array.isArray(serverArgs) ? serverArgs.filter(isString) : [],
    serverEnv: stringRecord(serverEnv),
  };
}

/** What `~`, `${userHome}`, `${workspaceFolder}` and `${env:NAME}` stand for. */
export interface Variables {
  home: string;
  workspaceFolder: string | undefined;
  env: Record<string, string | undefined>;
}

const VARIABLE = /\$\{(userHome|workspaceFolder|env:([A-Za-z_][A-Za-z0-9_]*))\}/g;

/** Expands the variables; `${workspaceFolder}` stays as written when no folder is open. */
export function expandVariables(text: string, vars: Variables): string {
  const expanded = text.replace(VARIABLE, (match, name: string, envName?: string) => {
    if (envName !== undefined) {
      return vars.env[envName] ?? "";
    }
    if (name === "userHome") {
      return vars.home;
    }
    return vars.workspaceFolder ?? match;
  });
  if (expanded === "~" || expanded.startsWith("~/") || expanded.startsWith("~\\")) {
    return vars.home + expanded.slice(1);
  }
  return expanded;
}

export interface ServerCommand {
  command: string;
  args: string[];
  env: Record<string, string>;
}

/** `replit-lsp --stdio ARGS`, or `PYTHON -m lsp_server.cli --stdio ARGS` when a Python is set. */
export function serverCommand(launch: LaunchSettings, vars: Variables): ServerCommand {
  const expand = (text: string): string => expandVariables(text, vars);
  const args = ["--stdio", ...launch.serverArgs.map(expand)];
  const env = Object.fromEntries(
    Object.entries(launch.serverEnv).map(([name, value]) => [name, expand(value)]),
  );
  if (launch.pythonPath) {
    return { command: expand(launch.pythonPath), args: ["-m", "lsp_server.cli", ...args], env };
  }
  return { command: expand(launch.serverPath), args, env };
}

/** Which kind of change a configuration event is, given VS Code's `affectsConfiguration`. */
export function classifyChange(
  affects: (section: string) => boolean,
): "restart" | "update" | "none" {
  if (LAUNCH_SETTING_KEYS.some((key) => affects(`${SECTION}.${key}`))) {
    return "restart";
  }
  if (SERVER_SETTING_KEYS.some((key) => affects(`${SECTION}.${key}`))) {
    return "update";
  }
  return "none";
}

function duration(value: unknown, fallback: number): number {
  return typeof value === "number" && Number.isFinite(value) && value >= 0 ? value : fallback;
}

function isString(value: unknown): value is string {
  return typeof value === "string";
}

function stringRecord(value: unknown): Record<string, string> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return {};
  }
  return Object.fromEntries(
    Object.entries(value).filter((entry): entry is [string, string] => isString(entry[1])),
  );
}
