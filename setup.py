"""Package discovery for the build (everything else is in pyproject.toml).

The Hydra configs stay in the top-level ``conf/`` (their one copy); the build ships them inside
the package as ``nnlab/conf``, which pyproject.toml's own discovery cannot express: it finds the
packages on disk and cannot add one mapped from elsewhere. ``hydra_plugins`` is a namespace
package (no ``__init__.py``): Hydra scans it for plugins, so it is found as a namespace too,
which also keeps an editable install's plugin visible to that scan.
"""

from setuptools import find_namespace_packages, setup

PACKAGES = find_namespace_packages(
    include=["nnlab", "nnlab.*", "hydra_plugins", "hydra_plugins.*"],
    exclude=["*.__pycache__", "nnlab.datasets"],  # datasets/ is package data of nnlab
)

setup(packages=[*PACKAGES, "nnlab.conf"], package_dir={"nnlab.conf": "conf"})
