"""Base: the bottom layer, small pieces every layer may use (errors, time helpers, JSON text, random draws, the
VARIANT encoding). Imports nothing else of iotgen's.
"""
