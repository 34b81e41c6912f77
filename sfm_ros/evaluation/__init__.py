"""Evaluation (ROS-free): depth metrics, trajectories (ATE/RPE/snippets, files), pose evaluation algorithms. Imports core, data, runtime."""
