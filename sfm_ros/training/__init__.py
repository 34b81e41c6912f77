"""Training (ROS-free): a run's set-up (options, inputs, budget, run folder), the loop (DDP, AMP, checkpoints), two-view priors, online adaptation, collapse monitor. Imports core, data, runtime."""
