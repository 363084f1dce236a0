/**
 * A stand-in for the `vscode` module: just enough of the API for the extension, with its
 * effects recorded in `fake`. Settings default to the values package.json contributes, as in
 * VS Code. Anything else (which `vscode-languageclient` touches while loading) is a permissive
 * placeholder, see register.ts.
 */

import { readManifest } from "./paths";

export const version = "1.95.0";

export class Disposable {
  constructor(private readonly onDispose: () => void) {}

  static from(...items: { dispose(): unknown }[]): Disposable {
    return new Disposable(() => items.forEach((item) => item.dispose()));
  }

  dispose(): void {
    this.onDispose();
  }
}

export class EventEmitter<T> {
  private readonly listeners = new Set<(event: T) => void>();

  readonly event = (listener: (event: T) => void): Disposable => {
    this.listeners.add(listener);
    return new Disposable(() => this.listeners.delete(listener));
  };

  fire(event: T): void {
    for (const listener of [...this.listeners]) {
      listener(event);
    }
  }

  dispose(): void {
    this.listeners.clear();
  }
}

export enum StatusBarAlignment {
  Left = 1,
  Right = 2,
}

export class ThemeColor {
  constructor(readonly id: string) {}
}

export enum InlineCompletionTriggerKind {
  Invoke = 0,
  Automatic = 1,
}

export class Position {
  constructor(
    readonly line: number,
    readonly character: number,
  ) {}

  isEqual(other: Position): boolean {
    return this.line === other.line && this.character === other.character;
  }
}

/** An editor's document, as far as the extension reads it. */
export interface FakeDocument {
  uri: { scheme: string; toString(): string };
  languageId: string;
  version: number;
}

/** An editor with one selection. A class, not a plain object, so that register.ts hands it
 * out as it is rather than as a namespace with placeholders. */
export class FakeEditor {
  constructor(
    readonly document: FakeDocument,
    public selection: { active: Position; isEmpty: boolean },
  ) {}
}

export class FakeStatusBarItem {
  text = "";
  tooltip: string | undefined;
  name: string | undefined;
  command: string | undefined;
  backgroundColor: ThemeColor | undefined;
  visible = false;
  disposed = false;

  constructor(
    readonly alignment: StatusBarAlignment,
    readonly priority: number | undefined,
  ) {}

  show(): void {
    this.visible = true;
  }

  hide(): void {
    this.visible = false;
  }

  dispose(): void {
    this.disposed = true;
  }
}

export class FakeOutputChannel {
  readonly lines: string[] = [];
  shown = false;
  logLevel = 3;
  readonly onDidChangeLogLevel = new EventEmitter<number>().event;

  constructor(readonly name: string) {}

  append(text: string): void {
    this.lines.push(text);
  }
  appendLine(text: string): void {
    this.lines.push(text);
  }
  trace(text: string): void {
    this.lines.push(`[trace] ${text}`);
  }
  debug(text: string): void {
    this.lines.push(`[debug] ${text}`);
  }
  info(text: string): void {
    this.lines.push(`[info] ${text}`);
  }
  warn(text: string): void {
    this.lines.push(`[warn] ${text}`);
  }
  error(text: string | Error): void {
    this.lines.push(`[error] ${String(text)}`);
  }
  replace(text: string): void {
    this.lines.splice(0, this.lines.length, text);
  }
  clear(): void {
    this.lines.length = 0;
  }
  show(): void {
    this.shown = true;
  }
  hide(): void {
    this.shown = false;
  }
  dispose(): void {}
}

export interface ConfigurationChangeEvent {
  affectsConfiguration(section: string): boolean;
}

type Command = (...args: unknown[]) => unknown;

/** What the extension did to the editor, and the knobs tests turn. */
export const fake = {
  settings: new Map<string, unknown>(),
  statusItems: [] as FakeStatusBarItem[],
  outputChannels: [] as FakeOutputChannel[],
  commands: new Map<string, Command>(),
  workspaceFolders: undefined as { uri: { fsPath: string } }[] | undefined,
  configurationChanged: new EventEmitter<ConfigurationChangeEvent>(),
  activeTextEditor: undefined as FakeEditor | undefined,
  activeEditorChanged: new EventEmitter<FakeEditor | undefined>(),
  selectionChanged: new EventEmitter<{ textEditor: FakeEditor }>(),
  documentChanged: new EventEmitter<{ document: FakeDocument; contentChanges: unknown[] }>(),

  reset(): void {
    this.settings.clear();
    this.statusItems.length = 0;
    this.outputChannels.length = 0;
    this.commands.clear();
    this.workspaceFolders = undefined;
    this.configurationChanged.dispose();
    this.activeTextEditor = undefined;
    this.activeEditorChanged.dispose();
    this.selectionChanged.dispose();
    this.documentChanged.dispose();
  },

  /** Sets full keys such as `replitLsp.maxLines` and fires the change event VS Code would. */
  changeSettings(values: Record<string, unknown>): void {
    for (const [key, value] of Object.entries(values)) {
      this.settings.set(key, value);
    }
    const keys = Object.keys(values);
    this.configurationChanged.fire({
      affectsConfiguration: (section) =>
        keys.some((key) => key === section || key.startsWith(`${section}.`)),
    });
  },
};

const properties = readManifest().contributes.configuration.properties;

export const workspace = {
  getConfiguration(section?: string) {
    const full = (key: string): string => (section ? `${section}.${key}` : key);
    return {
      get<T>(key: string, defaultValue?: T): T | undefined {
        const name = full(key);
        if (fake.settings.has(name)) {
          return fake.settings.get(name) as T;
        }
        return (properties[name]?.default as T | undefined) ?? defaultValue;
      },
      has: (key: string) => fake.settings.has(full(key)) || full(key) in properties,
    };
  },
  onDidChangeConfiguration: (listener: (event: ConfigurationChangeEvent) => void) =>
    fake.configurationChanged.event(listener),
  get workspaceFolders() {
    return fake.workspaceFolders;
  },
  onDidChangeTextDocument: (
    listener: (event: { document: FakeDocument; contentChanges: unknown[] }) => void,
  ) => fake.documentChanged.event(listener),
};

export const window = {
  createStatusBarItem(alignment: StatusBarAlignment, priority?: number): FakeStatusBarItem {
    const item = new FakeStatusBarItem(alignment, priority);
    fake.statusItems.push(item);
    return item;
  },
  createOutputChannel(name: string): FakeOutputChannel {
    const channel = new FakeOutputChannel(name);
    fake.outputChannels.push(channel);
    return channel;
  },
  get activeTextEditor() {
    return fake.activeTextEditor;
  },
  onDidChangeActiveTextEditor: (listener: (editor: FakeEditor | undefined) => void) =>
    fake.activeEditorChanged.event(listener),
  onDidChangeTextEditorSelection: (listener: (event: { textEditor: FakeEditor }) => void) =>
    fake.selectionChanged.event(listener),
};

export const commands = {
  registerCommand(id: string, command: Command): Disposable {
    if (fake.commands.has(id)) {
      throw new Error(`command ${id} already exists`);
    }
    fake.commands.set(id, command);
    return new Disposable(() => fake.commands.delete(id));
  },
  async executeCommand(id: string, ...args: unknown[]): Promise<unknown> {
    const command = fake.commands.get(id);
    if (command === undefined) {
      throw new Error(`command ${id} not found`);
    }
    return command(...args);
  },
};

export const env = {
  appName: "Visual Studio Code",
  appRoot: "/usr/share/code",
  language: "en",
  machineId: "stub",
  sessionId: "stub",
  uiKind: 1,
};
