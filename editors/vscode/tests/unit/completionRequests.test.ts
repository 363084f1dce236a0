import "../support/register";

import * as assert from "node:assert/strict";
import { describe, test } from "node:test";
import type * as vscode from "vscode";
import { CompletionRequests } from "../../src/completionRequests";
import { EventEmitter, InlineCompletionTriggerKind, Position } from "../support/vscode";

/** A cancellation token the test cancels. */
class Token {
  isCancellationRequested = false;
  private readonly cancelled = new EventEmitter<void>();
  readonly onCancellationRequested = this.cancelled.event;

  cancel(): void {
    this.isCancellationRequested = true;
    this.cancelled.fire();
  }
}

const URI = "file:///work/main.py";
const DOCUMENT = { uri: { toString: () => URI } } as unknown as vscode.TextDocument;
const ITEMS = [{ insertText: "x", command: { title: "", command: "accept", arguments: ["7"] } }];

interface Sent {
  token: Token;
  at: number;
}

function setUp(debounceMs: number) {
  const answered: [number, string | undefined][] = [];
  const sent: Sent[] = [];
  const requests = new CompletionRequests({
    debounceMs: () => debounceMs,
    onCompletion: (latencyMs, id) => answered.push([latencyMs, id]),
  });
  let answer: () => void = () => undefined;
  const next = (_d: unknown, _p: unknown, _c: unknown, token: vscode.CancellationToken) => {
    sent.push({ token: token as unknown as Token, at: Date.now() });
    assert.ok(requests.isCompleting(URI), "in flight while the server computes");
    return new Promise<typeof ITEMS>((resolve) => {
      answer = () => resolve(ITEMS);
    });
  };
  const provide = (kind: InlineCompletionTriggerKind, token: Token) =>
    requests.provide(
      DOCUMENT,
      new Position(0, 3) as unknown as vscode.Position,
      { triggerKind: kind, selectedCompletionInfo: undefined } as vscode.InlineCompletionContext,
      token as unknown as vscode.CancellationToken,
      next as never,
    );
  return { requests, answered, sent, provide, answer: () => answer() };
}

describe("CompletionRequests", () => {
  test("sends a request made while typing once the debounce has passed", async () => {
    const { requests, answered, sent, provide, answer } = setUp(80);
    const token = new Token();
    const started = Date.now();
    const result = provide(InlineCompletionTriggerKind.Automatic, token);
    await new Promise((resolve) => setTimeout(resolve, 40));
    assert.equal(sent.length, 0, "not before the debounce");
    assert.ok(!requests.isCompleting(URI));
    await new Promise((resolve) => setTimeout(resolve, 80));
    assert.equal(sent.length, 1);
    assert.ok(sent[0]!.at - started >= 75);
    assert.equal(sent[0]!.token, token, "VS Code's token goes with it, to cancel it");
    answer();
    assert.deepEqual(await result, ITEMS);
    assert.equal(answered.length, 1);
    assert.equal(answered[0]![1], "7");
    assert.ok(!requests.isCompleting(URI));
  });

  test("never sends a request cancelled during the debounce", async () => {
    const { requests, answered, sent, provide } = setUp(60_000);
    const token = new Token();
    const result = provide(InlineCompletionTriggerKind.Automatic, token);
    token.cancel();
    assert.equal(await result, undefined);
    assert.equal(sent.length, 0);
    assert.equal(answered.length, 0);
    assert.ok(!requests.isCompleting(URI));
  });

  test("sends a request the user asked for at once", async () => {
    const { sent, provide, answer } = setUp(60_000);
    const result = provide(InlineCompletionTriggerKind.Invoke, new Token());
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(sent.length, 1);
    answer();
    assert.deepEqual(await result, ITEMS);
  });

  test("reports no answer time for a request cancelled after it was sent", async () => {
    const { requests, answered, sent, provide, answer } = setUp(0);
    const token = new Token();
    const result = provide(InlineCompletionTriggerKind.Automatic, token);
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(sent.length, 1);
    token.cancel();
    answer();
    await result;
    assert.equal(answered.length, 0);
    assert.ok(!requests.isCompleting(URI));
  });
});
