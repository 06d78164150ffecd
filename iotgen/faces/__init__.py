"""Faces: what users call (the iotgen command line; iotgen_helpers.py and the notebooks live beside the package).
They build a Config and call runs.
"""
