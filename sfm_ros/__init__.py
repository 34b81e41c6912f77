"""sfm_ros: SfMLearner (Zhou et al., CVPR 2017) depth and ego-motion for ROS 2."""

__version__ = "0.1.0"
