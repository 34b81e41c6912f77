"""ament_python package definition for sfm_ros (also a plain pip-installable package)."""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "sfm_ros"

# Console scripts: only the ones that work (checked by test/test_package.py).
ENTRY_POINTS: list[str] = [
    "sfm_bag = sfm_ros.cli.bag:main",
    "sfm_node = sfm_ros.ros.node:main",
    "sfm_lifecycle_node = sfm_ros.ros.lifecycle_node:main",
    "sfm_play = sfm_ros.ros.player:main",
    "sfm_record = sfm_ros.ros.recorder:main",
    "sfm_train = sfm_ros.cli.train:main",
    "sfm_eval = sfm_ros.cli.eval:main",
    "sfm_export = sfm_ros.cli.export:main",
]

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.rviz")),
        (f"share/{PACKAGE}/models", glob("models/*.pt") + glob("models/*.md")),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="sfm_ros developers",
    maintainer_email="sfm_ros@example.com",
    description="SfMLearner self-supervised monocular depth and ego-motion for ROS 2",
    license="BSD-3-Clause",
    tests_require=["pytest"],
    entry_points={"console_scripts": ENTRY_POINTS},
)
