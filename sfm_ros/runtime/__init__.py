"""Run-time estimation (ROS-free): inference and export backends, pose refinement, odometry, metric scale, the node's per-frame pipeline, depth colouring. Imports core and data."""
