"""Outputs: where record batches go (files, Event Hubs, Kafka, Delta, Iceberg, label files); third-party private APIs
behind private_api.
"""
