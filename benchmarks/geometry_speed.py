"""Speed of the geometry core on this machine: projection and 3D IoU throughput.

Run: .venv/bin/python benchmarks/geometry_speed.py
Checks no target (the model and node issues set those); prints figures for the notes.
"""
import time

import numpy as np

from odd_one_out_ros.geometry import Box3D, PinholeCamera, iou_3d, look_at


def rate(fn, n_items, repeat=5):
    best = min(_timed(fn) for _ in range(repeat))
    return n_items / best, best


def _timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main():
    rng = np.random.default_rng(0)
    K = np.array([[500.0, 0, 319.5], [0, 500, 239.5], [0, 0, 1]])
    cam = PinholeCamera(K, 640, 480, look_at([1.5, 0.5, 1.2], [0, 0, 0]), np.array([-0.2, 0.05, 0.001, 0.0, 0.01]))
    pts = rng.uniform(-0.5, 0.5, (1_000_000, 3))
    r, t = rate(lambda: cam.project(pts), len(pts))
    print(f"project (plumb_bob):   {r / 1e6:6.1f} M points/s ({t * 1e3:.0f} ms for 1M)")
    uv, z = cam.project(pts[:100_000])
    r, t = rate(lambda: cam.unproject(uv, z), len(uv))
    print(f"unproject (plumb_bob): {r / 1e6:6.1f} M points/s ({t * 1e3:.0f} ms for 100k)")
    r, t = rate(lambda: cam.pixel_rays(), 640 * 480)
    print(f"pixel_rays 640x480:    {t * 1e3:6.1f} ms")
    boxes = [Box3D(rng.uniform(-0.2, 0.2, 3), rng.uniform(0.1, 0.4, 3), rng.uniform(-3, 3)) for _ in range(200)]
    pairs = list(zip(boxes[:100], boxes[100:]))
    r, t = rate(lambda: [iou_3d(a, b) for a, b in pairs], len(pairs))
    print(f"iou_3d (yaw boxes):    {r / 1e3:6.1f} k pairs/s")


if __name__ == "__main__":
    main()
