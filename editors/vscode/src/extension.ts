/** The extension's entry point: wires the output channel, status bar, commands and server. */

import * as vscode from "vscode";
import { CLIENT_NAME, createLanguageClient } from "./client";
import { type ClientFactory, readClientSettings, ServerController } from "./controller";
import { CursorIdleNotifier } from "./cursorIdle";
import { StatusView } from "./status";

export const COMMANDS = {
  restart: "replitLsp.restart",
  showOutput: "replitLsp.showOutput",
  showCompletions: "replitLsp.showCompletions",
  acceptWord: "replitLsp.acceptWord",
  acceptLine: "replitLsp.acceptLine",
} as const;

let active: ServerController | undefined;

export function activate(context: vscode.ExtensionContext): void {
  activateWith(context, createLanguageClient);
}

/** `activate` with the client factory given, so tests can run it without a server. */
export function activateWith(
  context: vscode.ExtensionContext,
  createClient: ClientFactory,
): ServerController {
  const output = vscode.window.createOutputChannel(CLIENT_NAME, { log: true });
  const status = new StatusView(COMMANDS.showOutput);
  const controller = new ServerController(createClient, status, output);
  const cursorIdle = new CursorIdleNotifier({
    readyClient: () => controller.readyClient(),
    onReady: controller.onReady,
    settings: readClientSettings,
  });
  context.subscriptions.push(
    output,
    status,
    controller,
    cursorIdle,
    vscode.commands.registerCommand(COMMANDS.restart, () => controller.restart()),
    vscode.commands.registerCommand(COMMANDS.showOutput, () => output.show(true)),
    vscode.commands.registerCommand(COMMANDS.showCompletions, () => controller.showCompletions()),
    vscode.commands.registerCommand(COMMANDS.acceptWord, () => controller.acceptPart("word")),
    vscode.commands.registerCommand(COMMANDS.acceptLine, () => controller.acceptPart("line")),
    vscode.workspace.onDidChangeConfiguration((event) => controller.onConfigurationChanged(event)),
    // The typing pace the debounce follows: the edits of the document being typed in.
    vscode.workspace.onDidChangeTextDocument((event) => {
      const active = vscode.window.activeTextEditor?.document;
      if (event.contentChanges.length > 0 && event.document === active) {
        controller.keystroke();
      }
    }),
  );
  active = controller;
  // The server answers `initialize` at once and loads the model in the background.
  void controller.start();
  return controller;
}

export function deactivate(): Promise<void> | undefined {
  const controller = active;
  active = undefined;
  return controller?.stop();
}
