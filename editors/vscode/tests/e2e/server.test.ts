/**
 * The real `replit-lsp --stdio`, driven the way the extension's client drives it: the same
 * client capabilities, the settings mapped from package.json's defaults, a Python document,
 * and an inline completion request once the model is loaded.
 *
 * Then the extension itself, with its real client, starts the same server from its settings.
 *
 * The server command is a JSON array in REPLIT_LSP_TEST_CMD (tests/test_vscode.py sets it to
 * a small random checkpoint); without it the test is skipped.
 */

import "../support/register";

import * as assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { after, before, describe, test } from "node:test";
import {
  createProtocolConnection,
  type InitializeResult,
  InlineCompletionRequest,
  InlineCompletionTriggerKind,
  type LogMessageParams,
  type Position,
  type ProtocolConnection,
  type ShowMessageParams,
  StreamMessageReader,
  StreamMessageWriter,
} from "vscode-languageserver-protocol/node";
import { STATUS_METHOD, type ServerStatus } from "../../src/controller";
import { activate, deactivate } from "../../src/extension";
import { serverConfiguration } from "../../src/settings";
import { extensionClientCapabilities } from "../support/clientCapabilities";
import { readManifest } from "../support/paths";
import { fake } from "../support/vscode";

const COMMAND_VARIABLE = "REPLIT_LSP_TEST_CMD";
const LOAD_TIMEOUT_MS = 240_000;
const REQUEST_TIMEOUT_MS = 60_000;
const URI = "file:///workspace/fib.py";

// The cursor lines hold an astral character, two UTF-16 code units: a server counting code
// points would put the cursor past the line's end and answer with another range.
const DOCUMENT = [
  "import os",
  "",
  "",
  "def fibonacci(n):",
  '    """Return the n-th Fibonacci number 🐇."""',
  "    if n < 2:",
  "        return n",
  "    return fibonacci(n - 1) + fibonacci(n - 2)",
  "",
  "",
  "def greet(name):",
  '    message = "hello 🐇 " + name',
  "    ",
  "",
  "",
  "def main():",
  '    label = "🐇"; print(',
].join("\n");

/** Candidate cursors: the end of each listed line (a random model may stop at once at some). */
const CURSOR_LINES = [12, 16, 11, 7, 5, 3];

function endOfLine(line: number): Position {
  return { line, character: DOCUMENT.split("\n")[line]!.length };
}

/** package.json's defaults, as the extension reads them from an untouched configuration. */
function defaultSettings(): (key: string) => unknown {
  const properties = readManifest().contributes.configuration.properties;
  return (key) => properties[`replitLsp.${key}`]?.default;
}

function serverCommandFromEnvironment(): string[] | undefined {
  const raw = process.env[COMMAND_VARIABLE];
  if (!raw) {
    return undefined;
  }
  const command: unknown = JSON.parse(raw);
  assert.ok(
    Array.isArray(command) && command.length > 0 && command.every((p) => typeof p === "string"),
    `${COMMAND_VARIABLE} must be a JSON array of strings`,
  );
  return command as string[];
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

interface Progress {
  token: string | number;
  value: { kind: string; message?: string };
}

class ServerSession {
  readonly logs: LogMessageParams[] = [];
  readonly shown: ShowMessageParams[] = [];
  readonly progress: Progress[] = [];
  stderr = "";
  readonly exited: Promise<number | null>;

  private constructor(
    readonly process: ChildProcess,
    readonly connection: ProtocolConnection,
  ) {
    this.exited = new Promise((resolve) => process.once("exit", (code) => resolve(code)));
    process.stderr!.on("data", (chunk: Buffer) => {
      this.stderr += chunk.toString();
    });
    connection.onNotification("window/logMessage", (params: LogMessageParams) => {
      this.logs.push(params);
    });
    connection.onNotification("window/showMessage", (params: ShowMessageParams) => {
      this.shown.push(params);
    });
    connection.onNotification("$/progress", (params: Progress) => {
      this.progress.push(params);
    });
    // Requests VS Code answers: progress tokens, dynamic registrations, configuration pulls.
    connection.onRequest("window/workDoneProgress/create", () => null);
    connection.onRequest("client/registerCapability", () => null);
    connection.onRequest("workspace/configuration", (params: { items: unknown[] }) =>
      params.items.map(() => null),
    );
    connection.listen();
  }

  static start(command: string[]): ServerSession {
    const [program, ...args] = command;
    const child = spawn(program!, args, { stdio: ["pipe", "pipe", "pipe"] });
    const connection = createProtocolConnection(
      new StreamMessageReader(child.stdout!),
      new StreamMessageWriter(child.stdin!),
    );
    return new ServerSession(child, connection);
  }

  async waitUntilLoaded(): Promise<ServerStatus> {
    const deadline = Date.now() + LOAD_TIMEOUT_MS;
    for (;;) {
      const status = await this.connection.sendRequest<ServerStatus>(STATUS_METHOD, {});
      if (status.state !== "idle" && status.state !== "loading") {
        return status;
      }
      assert.ok(Date.now() < deadline, `the model did not load: ${status.message}`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }

  warnings(): string[] {
    return this.logs.filter((log) => log.type <= 2).map((log) => log.message);
  }
}

const command = serverCommandFromEnvironment();

describe(
  "replit-lsp --stdio with the extension's client capabilities",
  {
    skip: command === undefined ? `${COMMAND_VARIABLE} is not set` : false,
  },
  () => {
    let session: ServerSession;
    let initialized: InitializeResult;

    before(async () => {
      session = ServerSession.start(command!);
      const capabilities = extensionClientCapabilities();
      assert.deepEqual(capabilities.general?.positionEncodings, ["utf-16"]);
      assert.ok(capabilities.textDocument?.inlineCompletion, "the client offers inline completion");
      initialized = await withTimeout(
        session.connection.sendRequest("initialize", {
          processId: process.pid,
          clientInfo: { name: "Visual Studio Code", version: "1.95.0" },
          rootUri: null,
          workspaceFolders: null,
          capabilities,
          initializationOptions: serverConfiguration(defaultSettings()),
        }),
        30_000,
        `initialize\n${session.stderr}`,
      );
      await session.connection.sendNotification("initialized", {});
    });

    after(async () => {
      if (session === undefined) {
        return;
      }
      try {
        await withTimeout(session.connection.sendRequest("shutdown"), 10_000, "shutdown");
        await session.connection.sendNotification("exit");
        await withTimeout(session.exited, 10_000, "exit");
      } finally {
        session.connection.dispose();
        session.process.kill();
      }
    });

    test("advertises inline completion in UTF-16 positions", () => {
      assert.ok(initialized.capabilities.inlineCompletionProvider);
      const encoding = initialized.capabilities.positionEncoding;
      assert.ok(encoding === undefined || encoding === "utf-16", `position encoding ${encoding}`);
    });

    test(
      "loads the model, reporting progress, and accepts every setting",
      { timeout: LOAD_TIMEOUT_MS + 10_000 },
      async () => {
        const status = await session.waitUntilLoaded();
        assert.equal(status.state, "ready", `${status.message}\n${session.stderr}`);
        assert.equal(status.pid, session.process.pid);

        // The same object the extension sends when a setting changes.
        const changed = serverConfiguration((key) =>
          key === "maxNewTokens" ? 24 : defaultSettings()(key),
        );
        await session.connection.sendNotification("workspace/didChangeConfiguration", {
          settings: changed,
        });
        await session.connection.sendRequest<ServerStatus>(STATUS_METHOD, {});

        const kinds = session.progress.map((report) => report.value.kind);
        assert.equal(kinds[0], "begin");
        assert.equal(kinds.at(-1), "end");
        assert.ok(session.logs.some((log) => log.message.includes("model ready")));
        assert.deepEqual(session.warnings(), [], "the server warned about the settings");
      },
    );

    test(
      "completes a Python document with an item at the cursor",
      { timeout: REQUEST_TIMEOUT_MS * CURSOR_LINES.length },
      async () => {
        await session.connection.sendNotification("textDocument/didOpen", {
          textDocument: { uri: URI, languageId: "python", version: 1, text: DOCUMENT },
        });
        const answered: string[] = [];
        for (const line of CURSOR_LINES) {
          const position = endOfLine(line);
          const result = await withTimeout(
            session.connection.sendRequest(InlineCompletionRequest.type, {
              textDocument: { uri: URI },
              position,
              context: { triggerKind: InlineCompletionTriggerKind.Automatic },
            }),
            REQUEST_TIMEOUT_MS,
            `inline completion at line ${line}`,
          );
          assert.ok(result !== null && !Array.isArray(result), "an InlineCompletionList");
          assert.ok(result.items.length <= 1);
          for (const item of result.items) {
            assert.equal(typeof item.insertText, "string");
            assert.notEqual(item.insertText, "");
            assert.deepEqual(item.range, { start: position, end: position }, `line ${line}`);
            answered.push(item.insertText as string);
          }
        }
        assert.ok(answered.length > 0, "every completion came back empty");
      },
    );
  },
);

/** The extension's launch settings that reproduce `command`, if they can. */
function launchSettingsFor(command: string[]): Record<string, unknown> | undefined {
  const [program, ...rest] = command;
  if (rest[0] === "-m" && rest[1] === "lsp_server.cli" && rest[2] === "--stdio") {
    return { "replitLsp.pythonPath": program, "replitLsp.serverArgs": rest.slice(3) };
  }
  if (rest[0] === "--stdio") {
    return { "replitLsp.serverPath": program, "replitLsp.serverArgs": rest.slice(1) };
  }
  return undefined;
}

const launch = command === undefined ? undefined : launchSettingsFor(command);

describe(
  "the extension with its real language client",
  {
    skip: launch === undefined ? `${COMMAND_VARIABLE} is not a replit-lsp --stdio command` : false,
  },
  () => {
    test(
      "starts the server from its settings, shows ready, and stops it",
      { timeout: LOAD_TIMEOUT_MS + 10_000 },
      async () => {
        fake.reset();
        for (const [key, value] of Object.entries(launch!)) {
          fake.settings.set(key, value);
        }
        const context = { subscriptions: [] as { dispose(): unknown }[] };
        activate(context as unknown as Parameters<typeof activate>[0]);
        const item = fake.statusItems[0]!;
        try {
          const deadline = Date.now() + LOAD_TIMEOUT_MS;
          while (!item.text.startsWith("$(check)") && !item.text.startsWith("$(error)")) {
            assert.ok(Date.now() < deadline, `still "${item.text}"`);
            await new Promise((resolve) => setTimeout(resolve, 50));
          }
          const log = fake.outputChannels[0]!.lines.join("\n");
          assert.equal(item.text, "$(check) Replit", `${item.tooltip}\n${log}`);
          assert.match(log, /model ready/);
        } finally {
          await deactivate();
          context.subscriptions.forEach((subscription) => subscription.dispose());
        }
        assert.equal(item.text, "$(circle-slash) Replit");
      },
    );
  },
);
