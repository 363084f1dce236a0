/** The real client: `vscode-languageclient` over the server's stdin/stdout. */

import {
  type Executable,
  LanguageClient,
  type LanguageClientOptions,
  State,
} from "vscode-languageclient/node";
import { CompletionRequests } from "./completionRequests";
import type { ClientFactory, ClientOptions, ClientState, ServerClient } from "./controller";

/** Also the prefix of the `replitLsp.trace.server` setting the client reads. */
export const CLIENT_ID = "replitLsp";
export const CLIENT_NAME = "Replit LSP";
const STOP_TIMEOUT_MS = 5000;

const STATES: Record<State, ClientState> = {
  [State.Starting]: "starting",
  [State.Running]: "running",
  [State.Stopped]: "stopped",
  [State.StartFailed]: "stopped",
};

export const createLanguageClient: ClientFactory = (options: ClientOptions): ServerClient => {
  const requests = new CompletionRequests(options);
  const server: Executable = {
    command: options.command.command,
    args: options.command.args,
    options: { cwd: options.cwd, env: { ...process.env, ...options.command.env } },
  };
  const clientOptions: LanguageClientOptions = {
    // Every file; the server's `enabledLanguages` setting decides which it completes.
    documentSelector: [{ scheme: "file" }, { scheme: "untitled" }],
    outputChannel: options.output,
    traceOutputChannel: options.output,
    initializationOptions: options.initializationOptions,
    middleware: {
      provideInlineCompletionItems: requests.provide,
      // VS Code runs an item's command when the user accepts it; the client sends it on.
      executeCommand: async (command, args, next) => {
        const result: unknown = await next(command, args);
        options.onCommandExecuted();
        return result;
      },
    },
  };
  const client = new LanguageClient(CLIENT_ID, CLIENT_NAME, server, clientOptions);
  return {
    start: () => client.start(),
    stop: () => client.dispose(STOP_TIMEOUT_MS),
    sendRequest: <R>(method: string, params: unknown) => client.sendRequest<R>(method, params),
    sendNotification: (method, params) => client.sendNotification(method, params),
    isCompleting: (uri) => requests.isCompleting(uri),
    onDidChangeState: (listener) =>
      client.onDidChangeState((event) => listener(STATES[event.newState])),
  };
};
