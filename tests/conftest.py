"""Shared fixtures. ROS tests get their own ROS_DOMAIN_ID and stay on loopback."""
from __future__ import annotations

import os

import pytest

from odd_one_out_ros.env import apply_ros_env_defaults

apply_ros_env_defaults()
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"  # tests never leave loopback


@pytest.fixture
def ros_domain(monkeypatch) -> int:
    """A ROS_DOMAIN_ID for this test process (0..101), also exported for child processes."""
    domain = 20 + os.getpid() % 80
    monkeypatch.setenv("ROS_DOMAIN_ID", str(domain))
    return domain


@pytest.fixture
def rng():
    import numpy as np

    return np.random.default_rng(12345)


def small_toys(out, scenes: int, seed: int):
    """`scenes` generated training scenes of 3-4 toys, 6 views of 64 px, in `out` (the training tests' data)."""
    from odd_one_out_ros.synth.generate import generate
    from odd_one_out_ros.synth.scene import GeneratorConfig

    generate(GeneratorConfig(kind="toys", views=6, size=64, objects=(3, 4)), scenes, out, seed, split="train",
             progress=False)
    return out
