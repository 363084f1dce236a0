/** Starts, restarts and stops the server, and keeps the status bar in step with it. */

import * as os from "node:os";
import * as vscode from "vscode";
import {
  type ClientSettings,
  classifyChange,
  clientSettings,
  launchSettings,
  SECTION,
  type ServerCommand,
  type ServerConfiguration,
  serverCommand,
  serverConfiguration,
  type SettingReader,
  type Variables,
} from "./settings";
import type { CompletionTiming } from "./completionRequests";
import type { StatusView } from "./status";
import { RecentTimings } from "./timing";

export const STATUS_METHOD = "replitLsp/status";
/** The statistics of the server's recent completions and pre-warms. */
export const COMPLETIONS_METHOD = "replitLsp/completions";
/** VS Code's "Trigger Inline Suggestion". */
export const TRIGGER_INLINE_SUGGESTION = "editor.action.inlineSuggest.trigger";
/** The server's command for a word or line of a suggestion accepted. */
export const PARTIAL_ACCEPT_COMMAND = "replitLsp.didPartiallyAcceptSuggestion";
const ACCEPT_PART: Record<"word" | "line", string> = {
  word: "editor.action.inlineSuggest.acceptNextWord",
  line: "editor.action.inlineSuggest.acceptNextLine",
};
export const POLL_INTERVAL_MS = 500;

export type ClientState = "starting" | "running" | "stopped";

/** The part of `LanguageClient` the controller uses, so tests can give a fake one. */
export interface ServerClient {
  start(): Promise<void>;
  /** Shuts the server down and releases the client. */
  stop(): Promise<void>;
  sendRequest<R>(method: string, params: unknown): Promise<R>;
  sendNotification(method: string, params: unknown): Promise<void>;
  /** Whether a completion request for the document waits for its answer. */
  isCompleting(uri: string): boolean;
  onDidChangeState(listener: (state: ClientState) => void): vscode.Disposable;
}

export interface ClientOptions extends CompletionTiming {
  command: ServerCommand;
  cwd: string | undefined;
  /** Called at every (re)start of the process, so it always sends the current settings. */
  initializationOptions: () => ServerConfiguration;
  output: vscode.LogOutputChannel;
  /** Called after a server command ran, such as the one that reports an acceptance. */
  onCommandExecuted: () => void;
}

export type ClientFactory = (options: ClientOptions) => ServerClient;

/** The answer to `replitLsp/status`. */
export interface ServerStatus {
  state: "idle" | "loading" | "ready" | "error";
  message: string;
  /** What loading is doing now ("reading weights", "compiling", ...) and its percentage. */
  stage?: string;
  percent?: number | null;
  engine_id: number | null;
  pid: number;
  suggestions?: SuggestionCounts;
}

/** One record of `replitLsp/completions`. */
export interface CompletionRecord {
  sequence: number;
  uri: string;
  line: number;
  character: number;
  prompt_tokens: number;
  reused_tokens: number;
  generated_tokens: number;
  /** Why it ended: "end of completion", "cancelled", "prewarm", ... */
  finish: string;
  milliseconds: number;
}

/** What became of the server's suggestions, from `replitLsp/status`. */
export interface SuggestionCounts {
  shown: number;
  accepted: number;
  partially_accepted: number;
  mean_latency_ms: number | null;
}

export class ServerController implements vscode.Disposable {
  private client: ServerClient | undefined;
  private subscription: vscode.Disposable | undefined;
  /** Counts starts and stops: events and polls of an older client are ignored. */
  private generation = 0;
  private pollId = 0;
  /** The latest suggestion the server sent, which a partial acceptance refers to. */
  private suggestion: string | undefined;
  /** Starts, stops and setting updates run one after another, in call order. */
  private queue: Promise<void> = Promise.resolve();
  private readonly timings = new RecentTimings();
  private readonly ready = new vscode.EventEmitter<void>();
  /** Fires when a server's model becomes ready. */
  readonly onReady = this.ready.event;

  constructor(
    private readonly createClient: ClientFactory,
    private readonly status: StatusView,
    private readonly output: vscode.LogOutputChannel,
  ) {}

  start(): Promise<void> {
    return this.enqueue(() => this.startClient());
  }

  stop(): Promise<void> {
    return this.enqueue(() => this.stopClient());
  }

  restart(): Promise<void> {
    return this.enqueue(async () => {
      await this.stopClient();
      await this.startClient();
    });
  }

  /** Restarts for a launch setting; forwards a server setting without restarting. */
  onConfigurationChanged(event: vscode.ConfigurationChangeEvent): Promise<void> {
    switch (classifyChange((section) => event.affectsConfiguration(section))) {
      case "restart":
        this.output.info("launch settings changed: restarting the server");
        return this.restart();
      case "update":
        return this.enqueue(() => this.sendSettings());
      default:
        return Promise.resolve();
    }
  }

  /** Accepts the next word or line of the suggestion shown, and tells the server. */
  async acceptPart(kind: "word" | "line"): Promise<void> {
    await vscode.commands.executeCommand(ACCEPT_PART[kind]);
    const client = this.client;
    const suggestion = this.suggestion;
    if (client === undefined || suggestion === undefined) {
      return;
    }
    const params = { command: PARTIAL_ACCEPT_COMMAND, arguments: [suggestion] };
    try {
      await client.sendRequest("workspace/executeCommand", params);
    } catch (error) {
      this.output.warn(`reporting a partial acceptance: ${describe(error)}`);
      return;
    }
    await this.refreshCounts(client, this.generation);
  }

  /** Writes the server's recent completions and pre-warms to the log, and shows it. */
  async showCompletions(): Promise<void> {
    const client = this.client;
    if (client === undefined) {
      this.output.warn("no server is running");
    } else {
      try {
        const records = await client.sendRequest<CompletionRecord[]>(COMPLETIONS_METHOD, {
          since: 0,
        });
        this.output.info(`the server's last ${records.length} completions:`);
        records.forEach((record) => this.output.info(describeRecord(record)));
      } catch (error) {
        this.output.warn(`no completions from the server: ${describe(error)}`);
      }
    }
    this.output.show(true);
  }

  /** The client, when its server's model is ready for requests. */
  readyClient(): ServerClient | undefined {
    return this.status.state === "ready" ? this.client : undefined;
  }

  /** Records a keystroke, for the typing pace the debounce follows. */
  keystroke(): void {
    this.timings.keystroke(performance.now(), readClientSettings().debounce.maxMs);
  }

  dispose(): void {
    this.ready.dispose();
    void this.stop();
  }

  private enqueue(step: () => Promise<void>): Promise<void> {
    const next = this.queue.then(step, step);
    this.queue = next.catch(() => undefined);
    return next;
  }

  private async startClient(): Promise<void> {
    const generation = ++this.generation;
    const command = serverCommand(launchSettings(readSettings()), variables());
    this.output.info(`starting: ${[command.command, ...command.args].join(" ")}`);
    this.status.set("starting", "starting the server");
    const client = this.createClient({
      command,
      cwd: workspaceFolder(),
      initializationOptions: () => serverConfiguration(readSettings()),
      output: this.output,
      debounceMs: () => this.timings.debounceMs(readClientSettings().debounce),
      onCompletion: (latencyMs, suggestionId) => {
        if (generation === this.generation && this.status.state === "ready") {
          this.suggestion = suggestionId;
          this.timings.answered(latencyMs);
          const thresholdMs = readClientSettings().slowThresholdMs;
          const medianMs = this.timings.slowMedianMs(thresholdMs);
          this.status.completed(
            latencyMs,
            medianMs === undefined ? undefined : { medianMs, thresholdMs },
          );
          void this.refreshCounts(client, generation);
        }
      },
      onCommandExecuted: () => void this.refreshCounts(client, generation),
    });
    this.client = client;
    this.subscription = client.onDidChangeState((state) => {
      if (generation === this.generation) {
        this.onStateChanged(client, state);
      }
    });
    try {
      await client.start();
    } catch (error) {
      if (generation === this.generation) {
        const hint = `set ${SECTION}.serverPath or ${SECTION}.pythonPath`;
        this.output.error(`could not start ${command.command}: ${describe(error)} (${hint})`);
        this.status.set("error", `could not start ${command.command}: ${describe(error)}`);
      }
      return;
    }
    if (generation === this.generation) {
      // The client registers its inline completion provider only now, and VS Code does not
      // ask a new provider about what was typed before: without this, text typed while the
      // server started never gets a suggestion in that editor.
      void Promise.resolve(vscode.commands.executeCommand(TRIGGER_INLINE_SUGGESTION)).catch(
        (error: unknown) => this.output.warn(`asking for a suggestion: ${describe(error)}`),
      );
    }
  }

  private onStateChanged(client: ServerClient, state: ClientState): void {
    if (state === "running") {
      void this.pollStatus(client, this.generation);
    } else if (state === "starting") {
      this.status.set("starting", "starting the server");
    } else if (this.status.state !== "error") {
      this.status.set("stopped", `the server stopped; run "Replit LSP: Restart Server"`);
    }
  }

  /** Asks the server for its state until the model is ready or has failed to load. */
  private async pollStatus(client: ServerClient, generation: number): Promise<void> {
    const pollId = ++this.pollId;
    const current = (): boolean => generation === this.generation && pollId === this.pollId;
    while (current()) {
      let answer: ServerStatus;
      try {
        answer = await client.sendRequest<ServerStatus>(STATUS_METHOD, {});
      } catch (error) {
        if (current()) {
          this.status.set("error", `no status from the server: ${describe(error)}`);
        }
        return;
      }
      if (!current()) {
        return;
      }
      if (answer.state === "ready" || answer.state === "error") {
        this.status.set(answer.state, answer.message);
        this.status.counted(answer.suggestions);
        if (answer.state === "ready") {
          this.ready.fire();
        }
        return;
      }
      this.status.set("loading", answer.message, answer.percent ?? undefined);
      await delay(POLL_INTERVAL_MS);
    }
  }

  /** Shows the server's latest suggestion counts. */
  private async refreshCounts(client: ServerClient, generation: number): Promise<void> {
    try {
      const answer = await client.sendRequest<ServerStatus>(STATUS_METHOD, {});
      if (generation === this.generation) {
        this.status.counted(answer.suggestions);
      }
    } catch (error) {
      this.output.warn(`no status from the server: ${describe(error)}`);
    }
  }

  private async sendSettings(): Promise<void> {
    const settings = serverConfiguration(readSettings());
    try {
      await this.client?.sendNotification("workspace/didChangeConfiguration", { settings });
    } catch (error) {
      this.output.error(`could not send the settings: ${describe(error)}`);
    }
  }

  private async stopClient(): Promise<void> {
    const client = this.client;
    this.generation++;
    this.client = undefined;
    this.subscription?.dispose();
    this.subscription = undefined;
    if (client === undefined) {
      return;
    }
    try {
      await client.stop();
    } catch (error) {
      this.output.warn(`stopping the server: ${describe(error)}`);
    }
    this.status.set("stopped", "the server is stopped");
  }
}

function readSettings(): SettingReader {
  const configuration = vscode.workspace.getConfiguration(SECTION);
  return (key) => configuration.get(key);
}

/** The extension's own settings, as they are now. */
export function readClientSettings(): ClientSettings {
  return clientSettings(readSettings());
}

function workspaceFolder(): string | undefined {
  return vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
}

function variables(): Variables {
  return { home: os.homedir(), workspaceFolder: workspaceFolder(), env: process.env };
}

/** "#12 file:///p/main.py 5:14 prewarm: prompt 40 tokens (32 reused), 0 generated, 3.1 ms" */
function describeRecord(record: CompletionRecord): string {
  return (
    `#${record.sequence} ${record.uri} ${record.line}:${record.character} ${record.finish}: ` +
    `prompt ${record.prompt_tokens} tokens (${record.reused_tokens} reused), ` +
    `${record.generated_tokens} generated, ${record.milliseconds} ms`
  );
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
