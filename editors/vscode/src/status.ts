/** The status bar item: what the server is doing, how long the last completion took, and
 * whether recent completions were slow. */

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

const SLOW_ICON = "$(watch)";
const LABEL = "Replit";

/** Recent answers slower than the threshold: their median time. */
export interface SlowAnswers {
  medianMs: number;
  thresholdMs: number;
}

export class StatusView implements vscode.Disposable {
  private readonly item: vscode.StatusBarItem;
  private current: ServerState = "stopped";
  private detail = "";
  private latencyMs: number | undefined;
  private percent: number | undefined;
  private counts: SuggestionCounts | undefined;
  private slow: SlowAnswers | undefined;

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
      this.slow = undefined;
    }
    this.current = state;
    this.detail = detail;
    this.percent = state === "loading" ? percent : undefined;
    this.render();
  }

  /** Records the latency of an answered completion request, and whether recent answers
   * were slow. */
  completed(latencyMs: number, slow?: SlowAnswers): void {
    this.latencyMs = latencyMs;
    this.slow = slow;
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
    const icon = this.slow === undefined ? ICONS[this.current] : SLOW_ICON;
    const slow = this.slow === undefined ? "" : " slow";
    this.item.text = `${icon} ${LABEL}${latency}${percent}${slow}`;
    const lines = [`replit-lsp: ${this.current}`];
    if (this.detail) {
      lines.push(this.detail);
    }
    if (this.latencyMs !== undefined) {
      lines.push(`last completion: ${Math.round(this.latencyMs)} ms`);
    }
    if (this.slow !== undefined) {
      lines.push(...describeSlow(this.slow));
    }
    if (this.counts !== undefined) {
      lines.push(describeCounts(this.counts));
    }
    lines.push("Click to show the log.");
    this.item.tooltip = lines.join("\n");
    this.item.backgroundColor = this.background();
  }

  private background(): vscode.ThemeColor | undefined {
    if (this.current === "error") {
      return new vscode.ThemeColor("statusBarItem.errorBackground");
    }
    if (this.slow !== undefined) {
      return new vscode.ThemeColor("statusBarItem.warningBackground");
    }
    return undefined;
  }
}

function describeSlow(slow: SlowAnswers): string[] {
  return [
    `suggestions are slow: ${Math.round(slow.medianMs)} ms median of the last answers ` +
      `(replitLsp.slowThresholdMs: ${slow.thresholdMs} ms)`,
    'A quantized model answers faster: add "--quantization-encoding", "q4_0" to ' +
      "replitLsp.serverArgs (or use a GPU, --use-gpu, or a team server, replitLsp.backendUrl).",
  ];
}

function describeCounts(counts: SuggestionCounts): string {
  const mean =
    counts.mean_latency_ms === null ? "" : `, ${Math.round(counts.mean_latency_ms)} ms on average`;
  return (
    `suggestions: ${counts.shown} shown, ${counts.accepted} accepted, ` +
    `${counts.partially_accepted} partly accepted${mean}`
  );
}
