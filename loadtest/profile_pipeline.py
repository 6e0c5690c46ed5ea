"""Where a frame's time goes: the in-process vision pipeline on rendered 1280x720 frames, per model and in all.

    .venv/bin/python loadtest/profile_pipeline.py --frames 40 [--fp32] [--threads 1]

Runs ``AlprPipeline`` with onnxruntime in this process (no Triton, no ingest) and prints, per model, calls
and milliseconds per frame, then the whole frame's p50 / p99 and frames/s on one stream. The difference
between the sum of the models and the frame is pre- and post-processing in Python (decode is not included).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict

import numpy as np
from tqdm import tqdm

from services.inference.vision.pipeline import AlprPipeline
from services.inference.vision.runner import OnnxRunner
from services.inference.vision.settings import VisionSettings
from services.simulator.render import SceneOptions, render_scene


class TimedRunner:
    def __init__(self, runner: OnnxRunner) -> None:
        self._runner = runner
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def infer(self, model: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        start = time.perf_counter()
        try:
            return self._runner.infer(model, inputs)
        finally:
            self.seconds[model] += time.perf_counter() - start
            self.calls[model] += 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    parser.add_argument("--fp32", action="store_true", help="FP32 models only (default: INT8 copies where they exist)")
    args = parser.parse_args()
    settings = VisionSettings(int8=not args.fp32)
    runner = TimedRunner(OnnxRunner.from_settings(settings, intra_op_threads=args.threads))
    pipeline = AlprPipeline(runner, settings)  # type: ignore[arg-type]
    frames = [render_scene(seed, SceneOptions(difficulty=0.4)).image for seed in range(args.frames)]
    pipeline.run(frames[0])  # sessions load on first use
    runner.seconds.clear()
    runner.calls.clear()
    latencies = []
    for frame in tqdm(frames, unit="frame"):
        start = time.perf_counter()
        pipeline.run(frame)
        latencies.append(time.perf_counter() - start)
    n = len(frames)
    for model in sorted(runner.seconds, key=runner.seconds.get, reverse=True):  # type: ignore[arg-type]
        print(f"{model:22s} {runner.calls[model] / n:5.2f} calls  {1000 * runner.seconds[model] / n:7.1f} ms/frame")
    models = sum(runner.seconds.values())
    print(f"{'python (pre/post)':22s} {'':11s} {1000 * (sum(latencies) - models) / n:7.1f} ms/frame")
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    print(
        f"frame: p50 {1000 * cuts[49]:.1f} ms, p99 {1000 * cuts[98]:.1f} ms, {n / sum(latencies):.2f} frames/s "
        f"(one stream, {args.threads} threads, {'INT8 where available' if settings.int8 else 'FP32'})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
