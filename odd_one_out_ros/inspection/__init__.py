"""The non-ROS logic of the detector and the simulated rig. Pure: no rclpy or message imports.

- report.py: the versioned JSON report of one inspection, validation, comparison, matching to truth
- gather.py: rig-mode synchronised sets and moving-camera view selection
- poses.py: camera poses from a static rig file, an AprilTag board, or a pose topic
- audit.py: the JSONL audit log and the per-inspection view bags (mcap) that `odd-one-out replay` reads
- guard.py: non-finite model outputs (a NaN volume, NaN scores) as errors instead of an empty tray
- overlay.py: boxes drawn on the views
- sim.py: generated scenes seen by a fixed rig or an orbiting camera (the sim_rig node's engine)

The nodes in odd_one_out_ros/ros/ only convert messages and call these.
"""
