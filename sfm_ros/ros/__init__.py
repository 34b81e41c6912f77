"""The ROS 2 layer: the node, message building, bag player and recorder. The only modules that import rclpy; library code below never imports them."""
