import * as assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ANSWERS, adaptiveDebounceMs, median, RecentTimings } from "../../src/timing";

const BOUNDS = { minMs: 75, maxMs: 1000 };
const wait = (answerMs?: number, keystrokeMs?: number): number =>
  adaptiveDebounceMs(answerMs, keystrokeMs, BOUNDS);

describe("adaptiveDebounceMs", () => {
  test("is the shortest before anything is measured", () => {
    assert.equal(wait(), 75);
    assert.equal(wait(undefined, 150), 75);
    assert.equal(wait(200, undefined), 75);
  });

  test("is the shortest while answers come much faster than the user types", () => {
    assert.equal(wait(20, 150), 75);
  });

  test("waits past the usual pause between keystrokes when answers are slow", () => {
    const slow = wait(2000, 150);
    assert.ok(slow > 150 && slow < 1000, `${slow}`);
    assert.ok(wait(2000, 300) > slow, "a slower typist pauses longer");
    assert.equal(wait(600, 150), slow, "any answer slower than the typing waits the same");
    assert.ok(wait(100, 150) < slow, "answers about as fast as typing wait less");
  });

  test("never waits less for slower answers", () => {
    let previous = 0;
    for (const answerMs of [10, 50, 100, 150, 300, 1000]) {
      const current = wait(answerMs, 200);
      assert.ok(current >= previous, `${answerMs} ms answers wait ${current} ms`);
      previous = current;
    }
  });

  test("stays within the bounds", () => {
    assert.equal(wait(5000, 5000), 1000);
    assert.equal(wait(1, 1), 75);
    assert.equal(adaptiveDebounceMs(5000, 5000, { minMs: 10, maxMs: 400 }), 400);
  });
});

describe("median", () => {
  test("of odd and even counts, unsorted", () => {
    assert.equal(median([]), undefined);
    assert.equal(median([3, 1, 2]), 2);
    assert.equal(median([4, 1, 3, 2]), 2.5);
  });
});

describe("RecentTimings", () => {
  const adaptive = { adaptive: true, ...BOUNDS };

  test("adapts the debounce to the answers and the keystrokes it recorded", () => {
    const timings = new RecentTimings();
    assert.equal(timings.debounceMs(adaptive), 75);
    for (let i = 0; i < ANSWERS; i++) {
      timings.answered(2000);
    }
    [0, 200, 400, 600].forEach((now) => timings.keystroke(now, BOUNDS.maxMs));
    assert.equal(timings.debounceMs(adaptive), 300);
    assert.equal(timings.debounceMs({ ...adaptive, adaptive: false }), 75);
  });

  test("does not take a pause as long as the longest wait for the typing pace", () => {
    const timings = new RecentTimings();
    for (let i = 0; i < ANSWERS; i++) {
      timings.answered(2000);
    }
    [0, 200, 5000, 5200].forEach((now) => timings.keystroke(now, BOUNDS.maxMs));
    assert.equal(timings.debounceMs(adaptive), 300);
  });

  test("is slow when the median of the last answers is over the threshold", () => {
    const timings = new RecentTimings();
    [2000, 2000, 2000].forEach((ms) => timings.answered(ms));
    assert.equal(timings.slowMedianMs(1500), undefined, "too few answers to tell");
    timings.answered(1800);
    assert.equal(timings.slowMedianMs(1500), 2000);
    assert.equal(timings.slowMedianMs(2500), undefined);
    [100, 100, 100].forEach((ms) => timings.answered(ms));
    assert.equal(timings.slowMedianMs(1500), 1800, "most of the last answers were slow");
    timings.answered(100);
    assert.equal(timings.slowMedianMs(1500), undefined, "half of them were fast");
    [3000, 3000, 3000, 3000, 3000].forEach((ms) => timings.answered(ms));
    assert.equal(timings.slowMedianMs(1500), 3000, `only the last ${ANSWERS} count`);
  });
});
