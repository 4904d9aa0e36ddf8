"""
ioppy-agent's setup script; the metadata lives in setup.cfg.
"""

from setuptools import setup

setup()
