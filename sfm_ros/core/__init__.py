"""The learning core (ROS-free): geometry and SE(3), the networks, the model, losses, options, checkpoints, device and precision policy. Imports nothing else of sfm_ros."""
