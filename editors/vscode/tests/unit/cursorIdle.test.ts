import "../support/register";

import * as assert from "node:assert/strict";
import { afterEach, beforeEach, describe, test } from "node:test";
import type * as vscode from "vscode";
import type { ServerClient } from "../../src/controller";
import { CURSOR_IDLE_METHOD, CursorIdleNotifier } from "../../src/cursorIdle";
import { CLIENT_DEFAULTS, type ClientSettings } from "../../src/settings";
import { EventEmitter, FakeEditor, Position, fake } from "../support/vscode";

const IDLE_MS = 40;

interface Sent {
  uri: string;
  line: number;
  character: number;
}

let sent: Sent[];
let completing: boolean;
let ready: boolean;
let settings: ClientSettings;
let readyEvents: EventEmitter<void>;
let notifier: CursorIdleNotifier;

const client = {
  sendNotification: async (method: string, params: unknown) => {
    assert.equal(method, CURSOR_IDLE_METHOD);
    const { textDocument, position } = params as {
      textDocument: { uri: string };
      position: { line: number; character: number };
    };
    sent.push({ uri: textDocument.uri, ...position });
  },
  isCompleting: () => completing,
} as unknown as ServerClient;

function editor(name: string, line: number, character: number, languageId = "python"): FakeEditor {
  const uri = `file:///work/${name}`;
  return new FakeEditor(
    { uri: { scheme: "file", toString: () => uri }, languageId, version: 1 },
    { active: new Position(line, character), isEmpty: true },
  );
}

function show(shown: FakeEditor): void {
  fake.activeTextEditor = shown;
  fake.activeEditorChanged.fire(shown);
}

function move(moved: FakeEditor, line: number, character: number): void {
  moved.selection = { active: new Position(line, character), isEmpty: true };
  fake.selectionChanged.fire({ textEditor: moved });
}

/** A keystroke: the edit, then the cursor it moved, as VS Code reports them. */
function type(typed: FakeEditor): void {
  typed.document.version++;
  fake.documentChanged.fire({ document: typed.document, contentChanges: [{}] });
  const { line, character } = typed.selection.active;
  move(typed, line, character + 1);
}

const idle = () => new Promise((resolve) => setTimeout(resolve, 3 * IDLE_MS));
const at = (name: string, line: number, character: number): Sent => ({
  uri: `file:///work/${name}`,
  line,
  character,
});

beforeEach(() => {
  fake.reset();
  sent = [];
  completing = false;
  ready = true;
  settings = { ...CLIENT_DEFAULTS, idleMs: IDLE_MS };
  readyEvents = new EventEmitter<void>();
  notifier = new CursorIdleNotifier({
    readyClient: () => (ready ? client : undefined),
    onReady: readyEvents.event as unknown as vscode.Event<void>,
    settings: () => settings,
  });
});

afterEach(() => notifier.dispose());

describe("cursorIdle", () => {
  test("is sent for the editor switched to, and for the active one once the server is ready", () => {
    ready = false;
    show(editor("a.py", 3, 4));
    assert.deepEqual(sent, []);
    ready = true;
    readyEvents.fire();
    assert.deepEqual(sent, [at("a.py", 3, 4)]);
    show(editor("b.py", 0, 2));
    assert.deepEqual(sent, [at("a.py", 3, 4), at("b.py", 0, 2)]);
  });

  test("is sent once the cursor rests after a move that was not typing", async () => {
    const shown = editor("a.py", 3, 4);
    show(shown);
    move(shown, 7, 1);
    move(shown, 8, 0);
    assert.equal(sent.length, 1, "not before the cursor rests");
    await idle();
    assert.deepEqual(sent, [at("a.py", 3, 4), at("a.py", 8, 0)]);
  });

  test("is not sent for typing", async () => {
    const shown = editor("a.py", 3, 4);
    show(shown);
    move(shown, 5, 0);
    type(shown);
    type(shown);
    await idle();
    assert.deepEqual(sent, [at("a.py", 3, 4)]);
  });

  test("a move right after typing is not typing", async () => {
    const shown = editor("a.py", 3, 4);
    show(shown);
    type(shown);
    move(shown, 1, 0);
    await idle();
    assert.deepEqual(sent, [at("a.py", 3, 4), at("a.py", 1, 0)]);
  });

  test("is not sent twice in a row for the same document version and position", async () => {
    const a = editor("a.py", 3, 4);
    show(a);
    show(a);
    move(a, 2, 0);
    await idle();
    move(a, 3, 4);
    await idle();
    assert.deepEqual(sent, [at("a.py", 3, 4), at("a.py", 2, 0), at("a.py", 3, 4)]);
  });

  test("is not sent while a completion request is in flight, nor when off", () => {
    completing = true;
    show(editor("a.py", 1, 1));
    completing = false;
    show(editor("b.go", 1, 1, "go"));
    settings = { ...settings, enabledLanguages: ["python"] };
    show(editor("c.go", 1, 1, "go"));
    settings = { ...settings, prewarm: false };
    show(editor("d.py", 1, 1));
    settings = { ...settings, prewarm: true };
    fake.settings.set("editor.inlineSuggest.enabled", false);
    show(editor("e.py", 1, 1));
    assert.deepEqual(sent, [at("b.go", 1, 1)]);
  });
});
