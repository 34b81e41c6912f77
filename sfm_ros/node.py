"""``python -m sfm_ros.node``: the ROS 2 node's entry point (the node lives in :mod:`sfm_ros.ros.node`)."""
import sys

from sfm_ros.ros.node import main

if __name__ == "__main__":
    sys.exit(main())
