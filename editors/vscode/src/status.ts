/** The status bar item: what the server is doing, and how long the last completion took. */

import * as vscode from "vscode";
import type { SuggestionCounts } from "./controller";

export type ServerState = "starting" | "loading" | "ready" | "error" | "stopped";

const ICONS: Record<ServerState, string> = {
  starting: "$(sync~spin)",
  loading: "$(sync~spin)",
  ready: "$(check)",
  error: "$(error)",
  stopped: "$(circle-slash)",
};

const LABEL = "Replit";

export class StatusView implements vscode.Disposable {
  private readonly item: vscode.StatusBarItem;
  private current: ServerState = "stopped";
  private detail = "";
  private latencyMs: number | undefined;
  private percent: number | undefined;
  private counts: SuggestionCounts | undefined;

  constructor(showOutputCommand: string) {
    this.item = vscode.window.createStatusBarItem(vscode.StatusBarAlignment.Right, 100);
    this.item.name = "Replit LSP";
    this.item.command = showOutputCommand;
    this.render();
    this.item.show();
  }

  get state(): ServerState {
    return this.current;
  }

  /**
   * Moves to `state`; `detail` is shown in the tooltip (the server's last message), and
   * `percent`, where loading knows it, next to the label.
   */
  set(state: ServerState, detail = "", percent?: number): void {
    if (state !== "ready") {
      this.latencyMs = undefined;
    }
    this.current = state;
    this.detail = detail;
    this.percent = state === "loading" ? percent : undefined;
    this.render();
  }

  /** Records the latency of an answered completion request. */
  completed(latencyMs: number): void {
    this.latencyMs = latencyMs;
    this.render();
  }

  /** Records what became of the server's suggestions, for the tooltip. */
  counted(counts: SuggestionCounts | undefined): void {
    this.counts = counts;
    this.render();
  }

  dispose(): void {
    this.item.dispose();
  }

  private render(): void {
    const latency = this.latencyMs === undefined ? "" : ` ${Math.round(this.latencyMs)} ms`;
    const percent = this.percent === undefined ? "" : ` ${this.percent}%`;
    this.item.text = `${ICONS[this.current]} ${LABEL}${latency}${percent}`;
    const lines = [`replit-lsp: ${this.current}`];
    if (this.detail) {
      lines.push(this.detail);
    }
    if (this.latencyMs !== undefined) {
      lines.push(`last completion: ${Math.round(this.latencyMs)} ms`);
    }
    if (this.counts !== undefined) {
      lines.push(describeCounts(this.counts));
    }
    lines.push("Click to show the log.");
    this.item.tooltip = lines.join("\n");
    this.item.backgroundColor =
      this.current === "error" ? new vscode.ThemeColor("statusBarItem.errorBackground") : undefined;
  }
}

function describeCounts(counts: SuggestionCounts): string {
  const mean =
    counts.mean_latency_ms === null ? "" : `, ${Math.round(counts.mean_latency_ms)} ms on average`;
  return (
    `suggestions: ${counts.shown} shown, ${counts.accepted} accepted, ` +
    `${counts.partially_accepted} partly accepted${mean}`
  );
}
