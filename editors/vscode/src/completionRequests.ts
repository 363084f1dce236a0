/**
 * How the client sends inline completion requests: VS Code asks at each keystroke and cancels
 * the previous request; a request asked for while typing waits out the debounce first and is
 * never sent if it is cancelled meanwhile. Each answered request's time is reported, and the
 * requests in flight are counted per document.
 */

import * as vscode from "vscode";
import type { Middleware } from "vscode-languageclient/node";

type Provide = NonNullable<Middleware["provideInlineCompletionItems"]>;

export interface CompletionTiming {
  /** The wait before sending a request VS Code made while the user typed. */
  debounceMs: () => number;
  /** Reports the time an answered request took, and the id of the suggestion it brought (the
   * argument of the item's acceptance command). */
  onCompletion: (latencyMs: number, suggestionId: string | undefined) => void;
}

export class CompletionRequests {
  /** Requests waiting for their answer, per document URI. */
  private readonly inFlight = new Map<string, number>();

  constructor(private readonly timing: CompletionTiming) {}

  /** Whether a request for the document waits for its answer. */
  isCompleting(uri: string): boolean {
    return this.inFlight.has(uri);
  }

  /** The `provideInlineCompletionItems` middleware. */
  readonly provide: Provide = async (document, position, context, token, next) => {
    const automatic = context.triggerKind === vscode.InlineCompletionTriggerKind.Automatic;
    if (automatic && !(await pause(this.timing.debounceMs(), token))) {
      return undefined;
    }
    const uri = document.uri.toString();
    this.inFlight.set(uri, (this.inFlight.get(uri) ?? 0) + 1);
    const started = performance.now();
    try {
      const result = await next(document, position, context, token);
      if (!token.isCancellationRequested) {
        const items = Array.isArray(result) ? result : (result?.items ?? []);
        const id: unknown = items[0]?.command?.arguments?.[0];
        this.timing.onCompletion(
          performance.now() - started,
          typeof id === "string" ? id : undefined,
        );
      }
      return result;
    } finally {
      const left = (this.inFlight.get(uri) ?? 1) - 1;
      if (left > 0) {
        this.inFlight.set(uri, left);
      } else {
        this.inFlight.delete(uri);
      }
    }
  };
}

/** Waits `ms`; false as soon as `token` is cancelled (then nothing is to be sent). */
function pause(ms: number, token: vscode.CancellationToken): Promise<boolean> {
  if (token.isCancellationRequested) {
    return Promise.resolve(false);
  }
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      subscription.dispose();
      resolve(true);
    }, ms);
    const subscription = token.onCancellationRequested(() => {
      clearTimeout(timer);
      subscription.dispose();
      resolve(false);
    });
  });
}
