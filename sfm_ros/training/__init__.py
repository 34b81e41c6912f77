"""Training (ROS-free): the loop (DDP, AMP, checkpoints), two-view priors, online adaptation, collapse monitor. Imports core, data, runtime."""
