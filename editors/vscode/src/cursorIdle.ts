/**
 * Tells the server where the cursor rests (`replitLsp/cursorIdle`), so that it reads the text
 * before it into the model's cache while the user is not typing and the first suggestion there
 * comes quicker.
 *
 * Sent for the active editor's cursor when the server becomes ready, when the user switches to
 * an editor, and after the cursor has rested for `replitLsp.idleMs` after a move that was not
 * typing (a click, a search, a jump, arrow keys): a cursor move is typing when the document
 * changed since the previous move (VS Code reports the edit first, then the cursor it moved).
 * Never twice in a row for the same document version and
 * position, nor while a completion request for the document is in flight, nor for a language
 * outside `replitLsp.enabledLanguages`, nor with inline suggestions off, nor with
 * `replitLsp.prewarm` off.
 */

import * as vscode from "vscode";
import type { ServerClient } from "./controller";
import { type ClientSettings, languageEnabled } from "./settings";

export const CURSOR_IDLE_METHOD = "replitLsp/cursorIdle";
/** The schemes the client gives the server (its document selector). */
const SCHEMES = ["file", "untitled"];

/** What the notifier needs of the extension. */
export interface CursorIdleTarget {
  /** The client, when its server's model is ready; else undefined. */
  readyClient(): ServerClient | undefined;
  /** Fires when a server's model becomes ready. */
  onReady: vscode.Event<void>;
  settings(): ClientSettings;
}

/** The active editor's cursor at its last event. */
interface Rest {
  document: vscode.TextDocument;
  version: number;
  position: vscode.Position;
}

export class CursorIdleNotifier implements vscode.Disposable {
  private readonly subscriptions: vscode.Disposable[];
  private rest: Rest | undefined;
  /** The active document changed since the last selection change. */
  private editedSinceMove = false;
  private timer: ReturnType<typeof setTimeout> | undefined;
  /** The last notification: "uri version line character". */
  private lastSent: string | undefined;

  constructor(private readonly target: CursorIdleTarget) {
    this.subscriptions = [
      vscode.window.onDidChangeActiveTextEditor((editor) => this.shown(editor)),
      vscode.window.onDidChangeTextEditorSelection((event) => this.moved(event.textEditor)),
      vscode.workspace.onDidChangeTextDocument((event) => this.edited(event)),
      target.onReady(() => {
        this.lastSent = undefined; // a new server has seen nothing
        this.shown(vscode.window.activeTextEditor);
      }),
    ];
  }

  dispose(): void {
    this.cancel();
    this.subscriptions.forEach((subscription) => subscription.dispose());
  }

  /** An editor the user switched to (or the active one, once the server is ready). */
  private shown(editor: vscode.TextEditor | undefined): void {
    this.cancel();
    this.rest = editor && restOf(editor);
    this.editedSinceMove = false;
    if (editor) {
      this.notify(editor);
    }
  }

  /** A selection change: a move that is not typing starts the wait for the cursor to rest. */
  private moved(editor: vscode.TextEditor): void {
    if (editor !== vscode.window.activeTextEditor) {
      return;
    }
    const previous = this.rest;
    const rest = restOf(editor);
    const typed = this.editedSinceMove || previous?.version !== rest.version;
    this.rest = rest;
    this.editedSinceMove = false;
    if (previous?.document !== rest.document || previous.position.isEqual(rest.position)) {
      return;
    }
    this.cancel();
    if (typed || !editor.selection.isEmpty) {
      return; // typing, or a selection rather than a cursor
    }
    this.timer = setTimeout(() => {
      this.timer = undefined;
      const now = restOf(editor);
      const still = this.rest;
      const resting =
        still?.document === now.document &&
        still.version === now.version &&
        still.position.isEqual(now.position);
      if (resting && editor === vscode.window.activeTextEditor) {
        this.notify(editor);
      }
    }, this.target.settings().idleMs);
  }

  /** An edit: no rest notification for the move it brings. */
  private edited(event: vscode.TextDocumentChangeEvent): void {
    const editor = vscode.window.activeTextEditor;
    if (event.contentChanges.length === 0 || editor?.document !== event.document) {
      return;
    }
    this.cancel();
    this.editedSinceMove = true;
  }

  private cancel(): void {
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
  }

  private notify(editor: vscode.TextEditor): void {
    const client = this.target.readyClient();
    const settings = this.target.settings();
    const document = editor.document;
    const enabled =
      settings.prewarm &&
      editor.selection.isEmpty &&
      SCHEMES.includes(document.uri.scheme) &&
      languageEnabled(settings, document.languageId) &&
      inlineSuggestionsOn(document);
    if (client === undefined || !enabled) {
      return;
    }
    const uri = document.uri.toString();
    if (client.isCompleting(uri)) {
      return;
    }
    const { line, character } = editor.selection.active;
    const key = `${uri} ${document.version} ${line} ${character}`;
    if (key === this.lastSent) {
      return;
    }
    this.lastSent = key;
    const params = { textDocument: { uri }, position: { line, character } };
    client.sendNotification(CURSOR_IDLE_METHOD, params).catch(() => undefined);
  }
}

function restOf(editor: vscode.TextEditor): Rest {
  const document = editor.document;
  return { document, version: document.version, position: editor.selection.active };
}

/** Whether VS Code shows inline suggestions for the document (`editor.inlineSuggest.enabled`). */
function inlineSuggestionsOn(document: vscode.TextDocument): boolean {
  const configuration = vscode.workspace.getConfiguration("editor", document);
  return configuration.get<boolean>("inlineSuggest.enabled") !== false;
}
