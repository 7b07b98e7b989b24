import { describe, expect, it } from 'vitest';
import { parseShowinfo, StreamClock } from './stream-clock.js';

describe('stream clock: how late frames reach the agent by the stream timestamps', () => {
  it('pairs each frame number whichever half comes first, measuring from the quickest frame', () => {
    const delays: number[] = [];
    const clock = new StreamClock((ms) => delays.push(ms));
    // Frames every 200 ms of stream time; they arrive 50, 40, 90 and 40 ms after some fixed origin.
    clock.frameTime(0, 0);
    clock.frameArrived(0, 1050);
    clock.frameArrived(1, 1240); // the pipe ahead of stderr
    clock.frameTime(1, 0.2);
    clock.frameTime(2, 0.4);
    clock.frameArrived(2, 1490);
    clock.frameArrived(3, 1640);
    clock.frameTime(3, 0.6);
    expect(delays.map((d) => Math.round(d))).toEqual([0, 0, 50, 0]);
  });

  it('shows a backlog that grows, and starts a new baseline when the stream clock jumps back', () => {
    const delays: number[] = [];
    const clock = new StreamClock((ms) => delays.push(ms));
    for (let n = 0; n < 5; n++) {
      clock.frameTime(n, n * 0.2);
      clock.frameArrived(n, 10_000 + n * 200 + n * 30); // each frame 30 ms later than the one before
    }
    expect(delays.map((d) => Math.round(d))).toEqual([0, 30, 60, 90, 120]);
    // The source restarted its clock: the next frame is the new baseline, not a negative or huge delay.
    clock.frameTime(5, 0);
    clock.frameArrived(5, 20_000);
    expect(delays.at(-1)).toBe(0);
  });

  it('forgets halves whose partner never comes, holding at most 64', () => {
    const delays: number[] = [];
    const clock = new StreamClock((ms) => delays.push(ms));
    for (let n = 0; n < 1000; n++) clock.frameArrived(n, n);
    clock.frameTime(0, 0); // long forgotten
    clock.frameTime(999, 0.999);
    expect(delays).toHaveLength(1);
  });

  it("reads showinfo's frame lines from old and new ffmpeg, and nothing else", () => {
    expect(parseShowinfo('[Parsed_showinfo_1 @ 0x30400680] [info] n:   0 pts:      0 pts_time:0       pos:       48 fmt:yuv420p sar:1/1 s:1920x1080 i:P iskey:1 type:I')).toEqual({ n: 0, seconds: 0 });
    expect(parseShowinfo('[Parsed_showinfo_1 @ 0x55d0] [info] n:  12 pts:  30720 pts_time:2.4     duration:    512 duration_time:0.04    fmt:yuv420p cl:left sar:1/1 s:1920x1080')).toEqual({ n: 12, seconds: 2.4 });
    expect(parseShowinfo('[Parsed_showinfo_1 @ 0x3040] [info] config in time_base: 1/12800, frame_rate: 25/1')).toBeNull();
    expect(parseShowinfo('[info] Input #0, mov,mp4,m4a,3gp,3g2,mj2, from clip.mp4:')).toBeNull();
    expect(parseShowinfo('[Parsed_showinfo_1 @ 0x3040] [info] color_range:unknown color_space:unknown')).toBeNull();
  });
});
