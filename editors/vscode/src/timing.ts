/**
 * How fast the server answers and how fast the user types: the wait before asking for a
 * suggestion (the debounce) is set from both, and slow answers are shown as a "slow" state.
 *
 * Pure (no `vscode` import), so it is tested directly.
 */

/** Answers the median answer time is taken over. */
export const ANSWERS = 8;
/** Fewer answers than this tell nothing about the server yet: no "slow" state before. */
export const SLOW_MIN_ANSWERS = 4;
/** Keystroke intervals the typing pace is taken over. */
export const INTERVALS = 16;
/** How far past the usual pause between keystrokes a slow server waits. */
export const PAUSE_MARGIN = 1.5;

/** The median of `values`, or undefined for none. */
export function median(values: readonly number[]): number | undefined {
  if (values.length === 0) {
    return undefined;
  }
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

export interface DebounceBounds {
  minMs: number;
  maxMs: number;
}

/**
 * The debounce, in ms: one and a half times the shorter of the typical answer time and the
 * usual pause between keystrokes, within the bounds. Fast answers make it short; when an answer
 * takes longer than the user's pause between keystrokes, a request sent in that pause would be
 * superseded by the next keystroke before it is answered, so the wait lasts past the usual
 * pause instead. With nothing measured yet it is the shortest.
 */
export function adaptiveDebounceMs(
  answerMs: number | undefined,
  keystrokeMs: number | undefined,
  bounds: DebounceBounds,
): number {
  if (answerMs === undefined || keystrokeMs === undefined) {
    return bounds.minMs;
  }
  const wait = PAUSE_MARGIN * Math.min(answerMs, keystrokeMs);
  return Math.round(Math.max(bounds.minMs, Math.min(bounds.maxMs, wait)));
}

export interface DebounceSettings extends DebounceBounds {
  /** When false, the wait is always `minMs`. */
  adaptive: boolean;
}

/** The recent answer times and keystroke intervals. */
export class RecentTimings {
  private readonly answers: number[] = [];
  private readonly intervals: number[] = [];
  private lastKeystroke: number | undefined;

  /** Records the time from a request to its answer. */
  answered(ms: number): void {
    push(this.answers, ms, ANSWERS);
  }

  /**
   * Records a keystroke at `now` (ms). Intervals as long as `maxMs` or longer are pauses, not
   * the typing pace: a request is sent in them whatever the debounce.
   */
  keystroke(now: number, maxMs: number): void {
    if (this.lastKeystroke !== undefined && now - this.lastKeystroke < maxMs) {
      push(this.intervals, now - this.lastKeystroke, INTERVALS);
    }
    this.lastKeystroke = now;
  }

  /** The wait before an automatic request. */
  debounceMs(settings: DebounceSettings): number {
    if (!settings.adaptive) {
      return settings.minMs;
    }
    return adaptiveDebounceMs(median(this.answers), median(this.intervals), settings);
  }

  /** The median of the recent answer times, when it is over `thresholdMs`, else undefined. */
  slowMedianMs(thresholdMs: number): number | undefined {
    const middle = median(this.answers);
    if (this.answers.length < SLOW_MIN_ANSWERS || middle === undefined) {
      return undefined;
    }
    return middle > thresholdMs ? middle : undefined;
  }
}

function push(values: number[], value: number, size: number): void {
  values.push(value);
  if (values.length > size) {
    values.shift();
  }
}
